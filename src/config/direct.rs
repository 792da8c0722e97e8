//! Direct evaluation of simple expressions over JSON: field paths, literals,
//! comparisons, `in`, `&&`, `||`, `!`, `? :`, `has()`, `size()`, integer
//! arithmetic and object and list literals, read straight from the
//! record's `serde_json::Value` instead of converting it to CEL first.
//!
//! Converting a record to CEL costs as much as the record is large and
//! allocates for every field; a filter such as `value.type == 'paid'`
//! reads one field of it. An expression made only of the forms above is
//! compiled a second time into a [`Node`] tree, and evaluated directly.
//! Whenever the direct evaluation meets anything whose result it does not
//! know to be CEL's (a missing field, which CEL reports as an error;
//! operands of different types; an integer overflow; a double in
//! arithmetic), it gives up and the expression runs in CEL as before, so
//! the two always agree: the tests below hold each answer of the direct
//! path against CEL's.

use cel::common::ast::{operators as op, EntryExpr, Expr as Ast, IdedExpr, LiteralValue};
use serde_json::{Map, Number, Value};

use super::expr::Bind;

/// The beyond-`i64` bound shared with the CEL conversion (2^63).
const I64_END: f64 = 9_223_372_036_854_775_808.0;

/// A compiled simple expression.
#[derive(Debug)]
pub(super) enum Node {
    Lit(Value),
    /// A double literal: `2.0` stays a double, where JSON's `2.0` is an int.
    Double(f64),
    Var(String),
    Field(Box<Node>, String),
    Has(Box<Node>, String),
    List(Vec<Node>),
    Object(Vec<(String, Node)>),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    Cmp(Cmp, Box<Node>, Box<Node>),
    In(Box<Node>, Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    Size(Box<Node>),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Arith {
    Add,
    Sub,
    Mul,
}

/// `e` as a [`Node`], if every part of it is a form this module knows.
pub(super) fn compile(e: &IdedExpr) -> Option<Node> {
    let boxed = |e: &IdedExpr| compile(e).map(Box::new);
    Some(match &e.expr {
        Ast::Literal(l) => Node::Lit(match l {
            LiteralValue::Null => Value::Null,
            LiteralValue::Boolean(b) => Value::Bool(*b.inner()),
            LiteralValue::Int(i) => Value::from(*i.inner()),
            LiteralValue::String(s) => Value::String(s.inner().to_owned()),
            LiteralValue::Double(d) => return Some(Node::Double(*d.inner())),
            LiteralValue::UInt(_) | LiteralValue::Bytes(_) => return None,
        }),
        Ast::Ident(name) => Node::Var(name.clone()),
        Ast::Select(s) if s.test => Node::Has(boxed(&s.operand)?, s.field.clone()),
        Ast::Select(s) => Node::Field(boxed(&s.operand)?, s.field.clone()),
        Ast::List(l) if l.optional_indices.is_empty() => {
            Node::List(l.elements.iter().map(compile).collect::<Option<_>>()?)
        }
        Ast::Map(m) => {
            let mut entries: Vec<(String, Node)> = Vec::with_capacity(m.entries.len());
            for entry in &m.entries {
                let EntryExpr::MapEntry(me) = &entry.expr else {
                    return None;
                };
                let Ast::Literal(LiteralValue::String(k)) = &me.key.expr else {
                    return None;
                };
                let k = k.inner().to_owned();
                // A repeated key is CEL's error to report.
                if me.optional || entries.iter().any(|(e, _)| *e == k) {
                    return None;
                }
                entries.push((k, compile(&me.value)?));
            }
            Node::Object(entries)
        }
        Ast::Call(c) => {
            let args = &c.args;
            match (c.func_name.as_str(), c.target.as_deref(), args.len()) {
                (op::LOGICAL_NOT, None, 1) => Node::Not(boxed(&args[0])?),
                (op::LOGICAL_AND, None, 2) => Node::And(boxed(&args[0])?, boxed(&args[1])?),
                (op::LOGICAL_OR, None, 2) => Node::Or(boxed(&args[0])?, boxed(&args[1])?),
                (op::CONDITIONAL, None, 3) => {
                    Node::Cond(boxed(&args[0])?, boxed(&args[1])?, boxed(&args[2])?)
                }
                (op::IN, None, 2) => Node::In(boxed(&args[0])?, boxed(&args[1])?),
                ("size", None, 1) => Node::Size(boxed(&args[0])?),
                ("size", Some(t), 0) => Node::Size(Box::new(compile(t)?)),
                (name, None, 2) => {
                    let (a, b) = (boxed(&args[0])?, boxed(&args[1])?);
                    match name {
                        op::EQUALS => Node::Cmp(Cmp::Eq, a, b),
                        op::NOT_EQUALS => Node::Cmp(Cmp::Ne, a, b),
                        op::LESS => Node::Cmp(Cmp::Lt, a, b),
                        op::LESS_EQUALS => Node::Cmp(Cmp::Le, a, b),
                        op::GREATER => Node::Cmp(Cmp::Gt, a, b),
                        op::GREATER_EQUALS => Node::Cmp(Cmp::Ge, a, b),
                        op::ADD => Node::Arith(Arith::Add, a, b),
                        op::SUBSTRACT => Node::Arith(Arith::Sub, a, b),
                        op::MULTIPLY => Node::Arith(Arith::Mul, a, b),
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
        Ast::List(_) | Ast::Unspecified | Ast::Comprehension(_) | Ast::Struct(_) => return None,
    })
}

/// A value met while evaluating directly, as CEL would see it: JSON
/// numbers are already `int` or `double` by CEL's conversion rule.
#[derive(Debug, Clone)]
enum V<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(&'a str),
    String(String),
    Array(&'a [Value]),
    Object(&'a Map<String, Value>),
    List(Vec<V<'a>>),
    Map(Vec<(&'a str, V<'a>)>),
}

/// A JSON number as CEL sees it (see `to_val` in the CEL conversion).
fn number(n: &Number) -> V<'static> {
    match n.as_i64() {
        Some(i) => V::Int(i),
        None => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() == 0.0 && (-I64_END..I64_END).contains(&f) {
                V::Int(f as i64)
            } else {
                V::Double(f)
            }
        }
    }
}

fn of_json(v: &Value) -> V<'_> {
    match v {
        Value::Null => V::Null,
        Value::Bool(b) => V::Bool(*b),
        Value::Number(n) => number(n),
        Value::String(s) => V::Str(s),
        Value::Array(a) => V::Array(a),
        Value::Object(m) => V::Object(m),
    }
}

/// JSON as it comes back out of CEL: numbers converted as on the way in.
fn json_of(v: &Value) -> Option<Value> {
    Some(match v {
        Value::Number(n) => double_or_int(number(n))?,
        Value::Array(a) => Value::Array(a.iter().map(json_of).collect::<Option<_>>()?),
        Value::Object(m) => object_of(m)?,
        other => other.clone(),
    })
}

fn object_of(m: &Map<String, Value>) -> Option<Value> {
    Some(Value::Object(
        m.iter()
            .map(|(k, v)| Some((k.clone(), json_of(v)?)))
            .collect::<Option<_>>()?,
    ))
}

fn double_or_int(v: V<'_>) -> Option<Value> {
    match v {
        V::Int(i) => Some(Value::from(i)),
        V::Double(f) => Number::from_f64(f).map(Value::Number),
        _ => None,
    }
}

impl V<'_> {
    fn into_json(self) -> Option<Value> {
        Some(match self {
            V::Null => Value::Null,
            V::Bool(b) => Value::Bool(b),
            V::Int(_) | V::Double(_) => double_or_int(self)?,
            V::Str(s) => Value::String(s.to_owned()),
            V::String(s) => Value::String(s),
            V::Array(a) => Value::Array(a.iter().map(json_of).collect::<Option<_>>()?),
            V::Object(m) => object_of(m)?,
            V::List(l) => Value::Array(l.into_iter().map(V::into_json).collect::<Option<_>>()?),
            V::Map(m) => {
                let mut out = Map::new();
                for (k, v) in m {
                    out.insert(k.to_owned(), v.into_json()?);
                }
                Value::Object(out)
            }
        })
    }

    fn str(&self) -> Option<&str> {
        match self {
            V::Str(s) => Some(s),
            V::String(s) => Some(s),
            _ => None,
        }
    }

    /// Equality where CEL's answer is plain: both null, bools, ints,
    /// doubles or strings. `None` for anything else.
    fn equals(&self, other: &V<'_>) -> Option<bool> {
        match (self, other) {
            (V::Null, V::Null) => Some(true),
            (V::Bool(a), V::Bool(b)) => Some(a == b),
            (V::Int(a), V::Int(b)) => Some(a == b),
            (V::Double(a), V::Double(b)) => Some(a == b),
            _ => Some(self.str()? == other.str()?),
        }
    }

    fn order(&self, other: &V<'_>) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (V::Int(a), V::Int(b)) => Some(a.cmp(b)),
            (V::Double(a), V::Double(b)) => a.partial_cmp(b),
            _ => Some(self.str()?.cmp(other.str()?)),
        }
    }
}

/// The names an expression may read, looked up innermost first.
pub(super) struct Env<'a, 'b> {
    pub(super) vars: &'a Value,
    pub(super) layers: [&'b [(&'b str, Bind<'a>)]; 2],
}

impl<'a> Env<'a, '_> {
    fn get(&self, name: &str) -> Option<V<'a>> {
        if name == "vars" {
            return Some(of_json(self.vars));
        }
        let bind = self
            .layers
            .iter()
            .find_map(|l| l.iter().find(|(n, _)| *n == name).map(|(_, b)| *b))?;
        Some(match bind {
            Bind::Json(v) => of_json(v),
            Bind::Object(m) => V::Object(m),
            Bind::Str(s) => V::Str(s),
            Bind::Int(i) => V::Int(i),
            Bind::Null => V::Null,
        })
    }
}

/// Evaluates `node` directly; `None` when CEL must answer instead.
pub(super) fn eval(node: &Node, env: &Env<'_, '_>) -> Option<Value> {
    value(node, env)?.into_json()
}

fn boolean(node: &Node, env: &Env<'_, '_>) -> Option<bool> {
    match value(node, env)? {
        V::Bool(b) => Some(b),
        _ => None,
    }
}

fn value<'a>(node: &'a Node, env: &Env<'a, '_>) -> Option<V<'a>> {
    Some(match node {
        Node::Lit(l) => of_json(l),
        Node::Double(d) => V::Double(*d),
        Node::Var(name) => env.get(name)?,
        Node::Field(operand, field) => match value(operand, env)? {
            V::Object(m) => of_json(m.get(field)?),
            V::Map(entries) => entries.into_iter().find(|(k, _)| k == field)?.1,
            _ => return None,
        },
        Node::Has(operand, field) => match value(operand, env)? {
            V::Object(m) => V::Bool(m.contains_key(field)),
            V::Map(entries) => V::Bool(entries.iter().any(|(k, _)| k == field)),
            _ => return None,
        },
        Node::List(items) => V::List(items.iter().map(|i| value(i, env)).collect::<Option<_>>()?),
        Node::Object(entries) => V::Map(
            entries
                .iter()
                .map(|(k, v)| Some((k.as_str(), value(v, env)?)))
                .collect::<Option<_>>()?,
        ),
        Node::Not(a) => V::Bool(!boolean(a, env)?),
        // `false && x` is false and `true || x` true even where x fails.
        Node::And(a, b) => V::Bool(boolean(a, env)? && boolean(b, env)?),
        Node::Or(a, b) => V::Bool(boolean(a, env)? || boolean(b, env)?),
        Node::Cond(c, a, b) => {
            if boolean(c, env)? {
                value(a, env)?
            } else {
                value(b, env)?
            }
        }
        Node::Cmp(cmp, a, b) => {
            let (a, b) = (value(a, env)?, value(b, env)?);
            V::Bool(match cmp {
                Cmp::Eq => a.equals(&b)?,
                Cmp::Ne => !a.equals(&b)?,
                Cmp::Lt => a.order(&b)?.is_lt(),
                Cmp::Le => a.order(&b)?.is_le(),
                Cmp::Gt => a.order(&b)?.is_gt(),
                Cmp::Ge => a.order(&b)?.is_ge(),
            })
        }
        Node::In(needle, haystack) => {
            let needle = value(needle, env)?;
            let found = match value(haystack, env)? {
                V::List(items) => any_equal(&needle, items.iter().cloned())?,
                V::Array(items) => any_equal(&needle, items.iter().map(of_json))?,
                _ => return None,
            };
            V::Bool(found)
        }
        Node::Arith(op, a, b) => match (value(a, env)?, value(b, env)?) {
            (V::Int(a), V::Int(b)) => V::Int(match op {
                Arith::Add => a.checked_add(b)?,
                Arith::Sub => a.checked_sub(b)?,
                Arith::Mul => a.checked_mul(b)?,
            }),
            (a, b) if matches!(op, Arith::Add) => {
                let mut s = a.str()?.to_owned();
                s.push_str(b.str()?);
                V::String(s)
            }
            _ => return None,
        },
        Node::Size(a) => V::Int(match value(a, env)? {
            V::Str(s) => s.chars().count(),
            V::String(s) => s.chars().count(),
            V::Array(a) => a.len(),
            V::Object(m) => m.len(),
            V::List(l) => l.len(),
            V::Map(m) => m.len(),
            _ => return None,
        } as i64),
    })
}

/// Whether any of `items` equals `needle`; `None` if one of the
/// comparisons is not plain.
fn any_equal<'a>(needle: &V<'_>, items: impl Iterator<Item = V<'a>>) -> Option<bool> {
    let mut found = false;
    for item in items {
        found |= needle.equals(&item)?;
    }
    Some(found)
}
