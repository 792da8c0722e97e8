//! Direct evaluation of simple expressions over JSON: field paths, literals,
//! comparisons, `in`, `&&`, `||`, `!`, `? :`, `has()`, `size()`, integer
//! arithmetic, object and list literals, `map`, `filter`, `all` and
//! `exists` (not nested) and `sum()`, read straight from the record's
//! `serde_json::Value` instead of converting it to CEL first.
//!
//! Converting a record to CEL costs as much as the record is large and
//! allocates for every field; a filter such as `value.type == 'paid'`
//! reads one field of it. An expression made only of the forms above is
//! compiled a second time into a [`Node`] tree, and evaluated directly.
//! Whenever the direct evaluation meets anything whose result it does not
//! know to be CEL's (a missing field, which CEL reports as an error;
//! operands of different types; an integer overflow; a double in
//! arithmetic), it gives up and the expression runs in CEL as before, so
//! the two always agree: a test in `expr` holds the answers of the direct
//! path against CEL's. Of the evaluation budget, the steps are counted
//! (past `max_steps`, CEL decides) but not the clock: a direct evaluation
//! does no more than a step's work per element, over data already in
//! memory.

use std::cell::Cell;

use cel::common::ast::{
    operators as op, ComprehensionExpr, EntryExpr, Expr as Ast, IdedExpr, LiteralValue,
};
use serde_json::{Map, Number, Value};

use super::bind::{self, Bind, Num};

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
    /// `list.map(x, f)`, `.filter(x, p)`, `.all(x, p)` or `.exists(x, p)`:
    /// the body evaluated for each element, bound to `x`.
    Loop(Macro, Box<Node>, String, Box<Node>),
    /// `sum(list)` of ints (eddy's function).
    Sum(Box<Node>),
}

/// Which comprehension a [`Node::Loop`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Macro {
    Map,
    Filter,
    All,
    Exists,
}

/// Whether `node` holds a comprehension (a nested one would cost the square of a
/// list's length, which the CEL path's budget watches).
fn iterates(node: &Node) -> bool {
    match node {
        Node::Loop(..) => true,
        Node::Lit(_) | Node::Double(_) | Node::Var(_) => false,
        Node::Field(a, _) | Node::Has(a, _) | Node::Not(a) | Node::Size(a) | Node::Sum(a) => {
            iterates(a)
        }
        Node::List(items) => items.iter().any(iterates),
        Node::Object(entries) => entries.iter().any(|(_, v)| iterates(v)),
        Node::And(a, b) | Node::Or(a, b) | Node::Cmp(_, a, b) | Node::In(a, b) => {
            iterates(a) || iterates(b)
        }
        Node::Arith(_, a, b) => iterates(a) || iterates(b),
        Node::Cond(c, a, b) => iterates(c) || iterates(a) || iterates(b),
    }
}

/// The accumulator the macros bind, and the function that counts a step.
const RESULT: &str = "@result";
const STEP: &str = "@step";

/// A comprehension as eddy's metered macros expand it (see `cost`), if it
/// is a `map`, `filter`, `all` or `exists` whose body holds none.
fn comprehension(c: &ComprehensionExpr) -> Option<Node> {
    if c.accu_var != RESULT || c.iter_var2.is_some() || !is_accu(&c.result) {
        return None;
    }
    let (kind, body) = match &c.accu_init.expr {
        Ast::List(l) if l.elements.is_empty() => appending(c)?,
        Ast::Literal(LiteralValue::Boolean(init)) => folding(c, *init.inner())?,
        _ => return None,
    };
    let body = compile(body)?;
    if iterates(&body) {
        return None;
    }
    Some(Node::Loop(
        kind,
        Box::new(compile(&c.iter_range)?),
        c.iter_var.clone(),
        Box::new(body),
    ))
}

/// `map` (`@step() ? @result + [f] : @result`) or `filter`
/// (`(@step() ? p : false) ? @result + [x] : @result`), looping while
/// `true`: which, and `f` or `p`.
fn appending(c: &ComprehensionExpr) -> Option<(Macro, &IdedExpr)> {
    if !matches!(&c.loop_cond.expr, Ast::Literal(LiteralValue::Boolean(b)) if *b.inner()) {
        return None;
    }
    let [guard, appended, unchanged] = call(&c.loop_step, op::CONDITIONAL)? else {
        return None;
    };
    let [accu, one] = call(appended, op::ADD)? else {
        return None;
    };
    let Ast::List(one) = &one.expr else {
        return None;
    };
    let [item] = one.elements.as_slice() else {
        return None;
    };
    if !is_accu(accu) || !is_accu(unchanged) || !one.optional_indices.is_empty() {
        return None;
    }
    if matches!(call(guard, STEP), Some([])) {
        return Some((Macro::Map, item));
    }
    let [counted, p, no] = call(guard, op::CONDITIONAL)? else {
        return None;
    };
    let is_var = matches!(&item.expr, Ast::Ident(v) if *v == c.iter_var);
    let no = matches!(&no.expr, Ast::Literal(LiteralValue::Boolean(b)) if !*b.inner());
    (matches!(call(counted, STEP), Some([])) && is_var && no).then_some((Macro::Filter, p))
}

/// `all` (from `true`, `@result && p` while not strictly false) or
/// `exists` (from `false`, `@result || p` while `!@result` is not
/// strictly false), each element counted: which, and `p`.
fn folding(c: &ComprehensionExpr, init: bool) -> Option<(Macro, &IdedExpr)> {
    let (kind, join) = match init {
        true => (Macro::All, op::LOGICAL_AND),
        false => (Macro::Exists, op::LOGICAL_OR),
    };
    let [counted, undecided, no] = call(&c.loop_cond, op::CONDITIONAL)? else {
        return None;
    };
    let [undecided] = call(undecided, op::NOT_STRICTLY_FALSE)? else {
        return None;
    };
    let undecided = match kind {
        Macro::All => is_accu(undecided),
        _ => matches!(call(undecided, op::LOGICAL_NOT), Some([a]) if is_accu(a)),
    };
    let no = matches!(&no.expr, Ast::Literal(LiteralValue::Boolean(b)) if !*b.inner());
    let [accu, p] = call(&c.loop_step, join)? else {
        return None;
    };
    (matches!(call(counted, STEP), Some([])) && undecided && no && is_accu(accu))
        .then_some((kind, p))
}

/// The arguments of `e` if it is a call of the global function `name`.
fn call<'e>(e: &'e IdedExpr, name: &str) -> Option<&'e [IdedExpr]> {
    match &e.expr {
        Ast::Call(c) if c.func_name == name && c.target.is_none() => Some(&c.args),
        _ => None,
    }
}

fn is_accu(e: &IdedExpr) -> bool {
    matches!(&e.expr, Ast::Ident(r) if r == RESULT)
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
                ("sum", None, 1) => Node::Sum(boxed(&args[0])?),
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
        Ast::Comprehension(c) => comprehension(c)?,
        Ast::List(_) | Ast::Unspecified | Ast::Struct(_) => return None,
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
    match bind::number(n) {
        Num::Int(i) => V::Int(i),
        Num::Double(f) => V::Double(f),
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

/// A variable bound by a `map`, and those bound around it.
struct Frame<'a, 'f> {
    name: &'a str,
    value: V<'a>,
    up: Option<&'f Frame<'a, 'f>>,
}

/// Evaluates `node` directly; `None` when CEL must answer instead (also
/// when its `map`s visit `max_steps` elements: CEL's budget then decides).
pub(super) fn eval(node: &Node, env: &Env<'_, '_>, max_steps: u64) -> Option<Value> {
    let steps = Cell::new(max_steps);
    Eval {
        env,
        frame: None,
        steps: &steps,
    }
    .value(node)?
    .into_json()
}

/// The evaluation of a node within the variables bound around it.
struct Eval<'a, 'e, 'f> {
    env: &'e Env<'a, 'e>,
    frame: Option<&'f Frame<'a, 'f>>,
    /// Elements `map`s may still visit.
    steps: &'e Cell<u64>,
}

impl<'a> Eval<'a, '_, '_> {
    fn get(&self, name: &str) -> Option<V<'a>> {
        let mut frame = self.frame;
        while let Some(f) = frame {
            if f.name == name {
                return Some(f.value.clone());
            }
            frame = f.up;
        }
        self.env.get(name)
    }

    fn boolean(&self, node: &'a Node) -> Option<bool> {
        match self.value(node)? {
            V::Bool(b) => Some(b),
            _ => None,
        }
    }

    fn value(&self, node: &'a Node) -> Option<V<'a>> {
        let value = |n| self.value(n);
        let boolean = |n| self.boolean(n);
        Some(match node {
            Node::Lit(l) => of_json(l),
            Node::Double(d) => V::Double(*d),
            Node::Var(name) => self.get(name)?,
            Node::Field(operand, field) => match value(operand)? {
                V::Object(m) => of_json(m.get(field)?),
                V::Map(entries) => entries.into_iter().find(|(k, _)| k == field)?.1,
                _ => return None,
            },
            Node::Has(operand, field) => match value(operand)? {
                V::Object(m) => V::Bool(m.contains_key(field)),
                V::Map(entries) => V::Bool(entries.iter().any(|(k, _)| k == field)),
                _ => return None,
            },
            Node::List(items) => V::List(items.iter().map(value).collect::<Option<_>>()?),
            Node::Object(entries) => V::Map(
                entries
                    .iter()
                    .map(|(k, v)| Some((k.as_str(), value(v)?)))
                    .collect::<Option<_>>()?,
            ),
            Node::Not(a) => V::Bool(!boolean(a)?),
            // `false && x` is false and `true || x` true even where x fails.
            Node::And(a, b) => V::Bool(boolean(a)? && boolean(b)?),
            Node::Or(a, b) => V::Bool(boolean(a)? || boolean(b)?),
            Node::Cond(c, a, b) => {
                if boolean(c)? {
                    value(a)?
                } else {
                    value(b)?
                }
            }
            Node::Cmp(cmp, a, b) => {
                let (a, b) = (value(a)?, value(b)?);
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
                let needle = value(needle)?;
                V::Bool(any_equal(&needle, elements(value(haystack)?)?)?)
            }
            Node::Arith(op, a, b) => match (value(a)?, value(b)?) {
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
            Node::Size(a) => V::Int(match value(a)? {
                V::Str(s) => s.chars().count(),
                V::String(s) => s.chars().count(),
                V::Array(a) => a.len(),
                V::Object(m) => m.len(),
                V::List(l) => l.len(),
                V::Map(m) => m.len(),
                _ => return None,
            } as i64),
            Node::Loop(kind, range, name, body) => {
                let mut out = Vec::new();
                for item in elements(value(range)?)? {
                    let left = self.steps.get().checked_sub(1).filter(|l| *l > 0)?;
                    self.steps.set(left);
                    let frame = Frame {
                        name,
                        value: item,
                        up: self.frame,
                    };
                    let inner = Eval {
                        env: self.env,
                        frame: Some(&frame),
                        steps: self.steps,
                    };
                    match kind {
                        Macro::Map => out.push(inner.value(body)?),
                        Macro::Filter => {
                            if inner.boolean(body)? {
                                out.push(frame.value.clone());
                            }
                        }
                        Macro::All if !inner.boolean(body)? => return Some(V::Bool(false)),
                        Macro::Exists if inner.boolean(body)? => return Some(V::Bool(true)),
                        Macro::All | Macro::Exists => {}
                    }
                }
                match kind {
                    Macro::Map | Macro::Filter => V::List(out),
                    Macro::All => V::Bool(true),
                    Macro::Exists => V::Bool(false),
                }
            }
            Node::Sum(list) => {
                let mut sum = 0i64;
                for v in elements(value(list)?)? {
                    let V::Int(i) = v else { return None };
                    sum = sum.checked_add(i)?;
                }
                V::Int(sum)
            }
        })
    }
}

/// The elements of a list: a JSON array's read in place, a built list's
/// moved out.
enum Elements<'a> {
    Array(std::slice::Iter<'a, Value>),
    List(std::vec::IntoIter<V<'a>>),
}

impl<'a> Iterator for Elements<'a> {
    type Item = V<'a>;

    fn next(&mut self) -> Option<V<'a>> {
        match self {
            Elements::Array(items) => items.next().map(of_json),
            Elements::List(items) => items.next(),
        }
    }
}

/// The elements of `v` if it is a list.
fn elements(v: V<'_>) -> Option<Elements<'_>> {
    match v {
        V::Array(items) => Some(Elements::Array(items.iter())),
        V::List(items) => Some(Elements::List(items.into_iter())),
        _ => None,
    }
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
