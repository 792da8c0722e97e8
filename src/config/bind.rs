//! What expressions read: the values bound to their names, and the rule by
//! which a JSON number becomes a CEL `int` or `double` (shared by the CEL
//! conversion and the direct evaluation, which must agree).

use serde_json::{Map, Number, Value};

/// A value an expression reads, converted to CEL once, when bound.
#[derive(Debug, Clone, Copy)]
pub enum Bind<'a> {
    /// A JSON value.
    Json(&'a Value),
    /// A JSON object.
    Object(&'a Map<String, Value>),
    /// A string.
    Str(&'a str),
    /// An integer.
    Int(i64),
    /// `null`.
    Null,
}

/// The smallest double beyond the 64-bit integer range (2^63).
pub(super) const I64_END: f64 = 9_223_372_036_854_775_808.0;

/// A JSON number as an expression sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Num {
    Int(i64),
    Double(f64),
}

/// A number with an integral value within the 64-bit range is an `int`,
/// however it is written (`2`, `2.0`, `2e3`), as JSON Schema's `integer`
/// counts it, so arithmetic with ints and int literals works; other
/// numbers are `double`s.
pub(super) fn number(n: &Number) -> Num {
    match n.as_i64() {
        Some(i) => Num::Int(i),
        None => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() == 0.0 && (-I64_END..I64_END).contains(&f) {
                Num::Int(f as i64)
            } else {
                Num::Double(f)
            }
        }
    }
}
