//! Masking personal data in JSON values: named fields are hashed (a keyed
//! HMAC-SHA256, so equal values still join and group), redacted or
//! dropped, nested paths and list items included.
//!
//! A path is dotted field names, each optionally followed by `[*]` (every
//! item of a list) or `[n]` (the item at index n): `email`,
//! `shipping_address.street`, `items[*].gift_message`, `phones[0]`. A path
//! that is not in a value (a missing field, a list that is not one, an
//! index past the end) masks nothing there; masking never fails. Rules
//! apply in the order they were added.
//!
//! - **hash**: the value becomes the 64 lower-case hex digits of
//!   HMAC-SHA256 over it (a string's UTF-8 bytes, any other value's JSON
//!   text, so that `7` and `"7"` hash alike) with the masking key. The key must stay secret: unkeyed hashes
//!   of e-mail addresses are reversed by hashing guesses.
//! - **redact**: the value becomes the string `"[redacted]"`.
//! - **drop**: the field is removed, or the list item (all of them for
//!   `[*]`).
//!
//! `null` is left as it is by hash and redact.
//!
//! ```
//! use eddy::security::Masking;
//! use serde_json::json;
//!
//! let masking = Masking::keyed(b"32 random bytes from a vault....")
//!     .unwrap()
//!     .hash("email")
//!     .unwrap()
//!     .redact("address.street")
//!     .unwrap()
//!     .drop("items[*].note")
//!     .unwrap();
//! let mut order = json!({
//!     "email": "ada@example.com",
//!     "address": {"street": "12 Analytical Row", "city": "London"},
//!     "items": [{"sku": "a", "note": "for Ada"}, {"sku": "b"}],
//! });
//! masking.apply(&mut order);
//! assert_eq!(order["email"].as_str().unwrap().len(), 64);
//! assert_eq!(order["address"], json!({"street": "[redacted]", "city": "London"}));
//! assert_eq!(order["items"], json!([{"sku": "a"}, {"sku": "b"}]));
//! ```

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::signing::hex;

/// What a redacted value becomes.
pub const REDACTED: &str = "[redacted]";

/// The shortest masking key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// A masking that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    /// A path that does not parse.
    #[error("bad path {path:?}: {reason}")]
    Path {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `hash` on a masking made without a key.
    #[error("hashing needs a key (Masking::keyed)")]
    NoKey,
    /// A key shorter than [`MIN_KEY_BYTES`].
    #[error("the key is shorter than {MIN_KEY_BYTES} bytes: use 32 random bytes or more")]
    ShortKey,
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Each,
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Hash,
    Redact,
    Drop,
}

#[derive(Debug, Clone)]
struct Rule {
    path: Vec<Step>,
    action: Action,
}

/// The fields to mask in JSON values, and the key hashes are made with.
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Masking {
    rules: Arc<Vec<Rule>>,
    key: Option<Hmac<Sha256>>,
}

impl fmt::Debug for Masking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masking")
            .field("rules", &self.rules)
            .field("keyed", &self.key.is_some())
            .finish()
    }
}

impl Masking {
    /// A masking without a key: it may redact and drop, not hash.
    pub fn new() -> Masking {
        Masking::default()
    }

    /// A masking whose hashes are keyed with `secret` (at least
    /// [`MIN_KEY_BYTES`]; 32 random bytes or more recommended).
    pub fn keyed(secret: &[u8]) -> Result<Masking, MaskError> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(MaskError::ShortKey);
        }
        Ok(Masking {
            rules: Arc::default(),
            key: Some(Hmac::new_from_slice(secret).expect("HMAC takes keys of any length")),
        })
    }

    /// Also hashes what `path` names.
    pub fn hash(self, path: &str) -> Result<Masking, MaskError> {
        if self.key.is_none() {
            return Err(MaskError::NoKey);
        }
        self.rule(path, Action::Hash)
    }

    /// Also redacts what `path` names.
    pub fn redact(self, path: &str) -> Result<Masking, MaskError> {
        self.rule(path, Action::Redact)
    }

    /// Also drops what `path` names.
    pub fn drop(self, path: &str) -> Result<Masking, MaskError> {
        self.rule(path, Action::Drop)
    }

    fn rule(mut self, path: &str, action: Action) -> Result<Masking, MaskError> {
        let path = parse(path)?;
        Arc::make_mut(&mut self.rules).push(Rule { path, action });
        Ok(self)
    }

    /// Whether it masks nothing.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Masks `value` in place.
    pub fn apply(&self, value: &mut Value) {
        for rule in self.rules.iter() {
            self.walk(value, &rule.path, rule.action);
        }
    }

    /// The hash of `value`: 64 hex digits.
    fn hash_of(&self, value: &Value) -> Value {
        let Some(key) = &self.key else {
            // `hash` refuses to add a rule without a key.
            return Value::String(REDACTED.to_owned());
        };
        let mut mac = key.clone();
        match value {
            Value::String(s) => mac.update(s.as_bytes()),
            other => mac.update(other.to_string().as_bytes()),
        }
        let digits = hex(mac.finalize().into_bytes().into());
        Value::String(digits.iter().map(|&d| char::from(d)).collect())
    }

    fn mask(&self, value: &mut Value, action: Action) {
        if value.is_null() {
            return;
        }
        *value = match action {
            Action::Hash => self.hash_of(value),
            Action::Redact | Action::Drop => Value::String(REDACTED.to_owned()),
        };
    }

    fn walk(&self, value: &mut Value, path: &[Step], action: Action) {
        let Some((step, rest)) = path.split_first() else {
            return;
        };
        let last = rest.is_empty();
        match (step, value) {
            (Step::Field(name), Value::Object(map)) => {
                if last && action == Action::Drop {
                    map.remove(name);
                } else if let Some(child) = map.get_mut(name) {
                    self.step(child, rest, action);
                }
            }
            (Step::Each, Value::Array(items)) => {
                if last && action == Action::Drop {
                    items.clear();
                } else {
                    for item in items {
                        self.step(item, rest, action);
                    }
                }
            }
            (Step::Index(i), Value::Array(items)) if *i < items.len() => {
                if last && action == Action::Drop {
                    items.remove(*i);
                } else {
                    self.step(&mut items[*i], rest, action);
                }
            }
            _ => {}
        }
    }

    /// Masks `child` if the path ends at it, or goes on into it.
    fn step(&self, child: &mut Value, rest: &[Step], action: Action) {
        if rest.is_empty() {
            self.mask(child, action);
        } else {
            self.walk(child, rest, action);
        }
    }
}

/// `a.b[*].c[0]` as steps.
fn parse(path: &str) -> Result<Vec<Step>, MaskError> {
    let bad = |reason: &str| MaskError::Path {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if path.is_empty() {
        return Err(bad("empty"));
    }
    let mut steps = Vec::new();
    for (n, segment) in path.split('.').enumerate() {
        let (name, mut brackets) = match segment.find('[') {
            Some(at) => segment.split_at(at),
            None => (segment, ""),
        };
        // Only the first segment may start with a bracket (a list value).
        let list_at_top = n == 0 && !brackets.is_empty();
        if name.is_empty() && !list_at_top {
            return Err(bad("a field name is empty"));
        }
        if name.contains(']') {
            return Err(bad("a ']' without its '['"));
        }
        if !name.is_empty() {
            steps.push(Step::Field(name.to_owned()));
        }
        while !brackets.is_empty() {
            let Some(end) = brackets.find(']') else {
                return Err(bad("a '[' without its ']'"));
            };
            let inside = &brackets[1..end];
            steps.push(match inside {
                "*" => Step::Each,
                _ => Step::Index(inside.parse().map_err(|_| {
                    bad("inside brackets: '*' or an index (a whole number from 0)")
                })?),
            });
            brackets = &brackets[end + 1..];
            if !brackets.is_empty() && !brackets.starts_with('[') {
                return Err(bad("text after ']': a field follows a '.'"));
            }
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn paths_parse_or_say_why_not() {
        assert_eq!(
            parse("a.b[*].c[2]").unwrap(),
            [
                Step::Field("a".into()),
                Step::Field("b".into()),
                Step::Each,
                Step::Field("c".into()),
                Step::Index(2)
            ]
        );
        assert_eq!(parse("[*].email").unwrap()[0], Step::Each);
        for (path, reason) in [
            ("", "empty"),
            ("a..b", "a field name is empty"),
            ("a.", "a field name is empty"),
            ("a[", "a '[' without its ']'"),
            ("a]", "a ']' without its '['"),
            ("a[x]", "inside brackets"),
            ("a[-1]", "inside brackets"),
            ("a[0]b", "text after ']'"),
            ("a.[0]", "a field name is empty"),
        ] {
            let e = parse(path).unwrap_err().to_string();
            assert!(e.contains(reason), "{path}: {e}");
        }
    }

    #[test]
    fn hashes_are_keyed_stable_and_typed_by_json_text() {
        let m = Masking::keyed(KEY).unwrap().hash("v").unwrap();
        let masked = |v: Value| {
            let mut r = json!({ "v": v });
            m.apply(&mut r);
            r["v"].clone()
        };
        let a = masked(json!("ada@example.com"));
        assert_eq!(a, masked(json!("ada@example.com")));
        assert_ne!(a, masked(json!("Ada@example.com")));
        // A string hashes its text, anything else its JSON text: an id
        // written as 7 in one topic and "7" in another still joins.
        assert_eq!(masked(json!(7)), masked(json!("7")));
        assert_ne!(masked(json!([7])), masked(json!("7")));
        assert_eq!(masked(Value::Null), Value::Null);
        let other = Masking::keyed(b"another key of 32 bytes or so...")
            .unwrap()
            .hash("v")
            .unwrap();
        let mut r = json!({"v": "ada@example.com"});
        other.apply(&mut r);
        assert_ne!(r["v"], a);
        // The HMAC-SHA256 of the string's bytes, in hex.
        let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
        mac.update(b"ada@example.com");
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(a, json!(want));
    }

    #[test]
    fn nested_fields_and_list_items() {
        let m = Masking::keyed(KEY)
            .unwrap()
            .redact("customer.address")
            .unwrap()
            .drop("customer.phone")
            .unwrap()
            .redact("items[*].note")
            .unwrap()
            .drop("tags[1]")
            .unwrap()
            .hash("contacts[*]")
            .unwrap()
            .drop("history[*]")
            .unwrap()
            .redact("absent.field")
            .unwrap()
            .redact("items[9].note")
            .unwrap();
        let mut v = json!({
            "customer": {"address": {"street": "s"}, "phone": "p", "name": "n"},
            "items": [{"note": "x", "sku": 1}, {"sku": 2}, "not an object"],
            "tags": ["a", "b", "c"],
            "contacts": ["x@y", null],
            "history": [1, 2],
        });
        m.apply(&mut v);
        assert_eq!(v["customer"], json!({"address": REDACTED, "name": "n"}));
        assert_eq!(
            v["items"],
            json!([{"note": REDACTED, "sku": 1}, {"sku": 2}, "not an object"])
        );
        assert_eq!(v["tags"], json!(["a", "c"]));
        assert_eq!(v["contacts"][0].as_str().unwrap().len(), 64);
        assert_eq!(v["contacts"][1], Value::Null);
        assert_eq!(v["history"], json!([]));
        assert!(v.get("absent").is_none());
    }

    #[test]
    fn hashing_needs_a_long_enough_key() {
        assert_eq!(Masking::new().hash("a").unwrap_err(), MaskError::NoKey);
        assert_eq!(Masking::keyed(b"short").unwrap_err(), MaskError::ShortKey);
        assert!(Masking::new().redact("a").unwrap().drop("b").is_ok());
    }
}
