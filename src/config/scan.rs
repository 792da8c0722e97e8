//! What a compiled expression's syntax tree says before it runs: the
//! variables it reads from outside (not those its comprehensions bind), and
//! how deeply its comprehensions over record data nest, which bounds its
//! cost statically: `n` elements iterated inside `n` elements cost `n²`.

use cel::common::ast::{ComprehensionExpr, EntryExpr, Expr, IdedEntryExpr, IdedExpr};

/// The result of [`scan`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Scan {
    /// Variables read and not bound inside the expression, in order of
    /// first appearance, each once.
    pub free: Vec<String>,
    /// The deepest nesting of comprehensions whose range depends on data
    /// bound at evaluation (0 when there are none).
    pub nesting: usize,
}

/// Scans `expr`. Names listed in `constant` (such as `vars`) hold the same
/// value for every record: a comprehension over them (or over a list or map
/// literal) does not count towards the nesting, since its length is fixed
/// by the file.
pub(super) fn scan(expr: &IdedExpr, constant: &[&str]) -> Scan {
    let mut s = Scanner {
        constant,
        bound: Vec::new(),
        out: Scan::default(),
    };
    s.out.nesting = s.walk(expr);
    s.out
}

struct Scanner<'a, 'e> {
    constant: &'a [&'a str],
    /// Names bound by enclosing comprehensions, innermost last, each with
    /// whether its values depend on bound data.
    bound: Vec<(&'e str, bool)>,
    out: Scan,
}

impl<'e> Scanner<'_, 'e> {
    /// Records the free variables of `e` and returns its nesting depth.
    fn walk(&mut self, e: &'e IdedExpr) -> usize {
        match &e.expr {
            Expr::Unspecified | Expr::Literal(_) => 0,
            Expr::Ident(name) => {
                if !self.bound.iter().any(|(b, _)| b == name) && !self.out.free.contains(name) {
                    self.out.free.push(name.clone());
                }
                0
            }
            Expr::Select(s) => self.walk(&s.operand),
            Expr::Call(c) => {
                let target = c.target.as_deref().map_or(0, |t| self.walk(t));
                c.args.iter().map(|a| self.walk(a)).fold(target, usize::max)
            }
            Expr::List(l) => l.elements.iter().map(|x| self.walk(x)).max().unwrap_or(0),
            Expr::Map(m) => self.entries(&m.entries),
            Expr::Struct(s) => self.entries(&s.entries),
            Expr::Comprehension(c) => self.comprehension(c),
        }
    }

    /// The deepest nesting in the entries of a map or struct literal.
    fn entries(&mut self, entries: &'e [IdedEntryExpr]) -> usize {
        entries
            .iter()
            .map(|entry| match &entry.expr {
                EntryExpr::MapEntry(me) => self.walk(&me.key).max(self.walk(&me.value)),
                EntryExpr::StructField(f) => self.walk(&f.value),
            })
            .max()
            .unwrap_or(0)
    }

    fn comprehension(&mut self, c: &'e ComprehensionExpr) -> usize {
        let outside = self.walk(&c.iter_range).max(self.walk(&c.accu_init));
        let data = self.depends_on_data(&c.iter_range);
        let literal = matches!(c.iter_range.expr, Expr::List(_) | Expr::Map(_));
        let depth = self.bound.len();
        self.bound.push((&c.iter_var, data));
        if let Some(v2) = &c.iter_var2 {
            self.bound.push((v2, data));
        }
        self.bound.push((&c.accu_var, true));
        let inside = [&c.loop_cond, &c.loop_step, &c.result]
            .into_iter()
            .map(|x| self.walk(x))
            .max()
            .unwrap_or(0);
        self.bound.truncate(depth);
        outside.max(inside + usize::from(data && !literal))
    }

    /// Whether `e` reads anything that varies from record to record: a free
    /// variable not listed as constant, or a name bound over such data.
    fn depends_on_data(&self, e: &IdedExpr) -> bool {
        let mut inner = Scanner {
            constant: self.constant,
            bound: Vec::new(),
            out: Scan::default(),
        };
        inner.walk(e);
        inner.out.free.iter().any(
            |name| match self.bound.iter().rev().find(|(b, _)| b == name) {
                Some((_, data)) => *data,
                None => !self.constant.contains(&name.as_str()),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(source: &str) -> Scan {
        let program = super::super::cost::env().compile(source).unwrap();
        scan(program.expression(), &["vars"])
    }

    #[test]
    fn finds_free_variables_not_those_comprehensions_bind() {
        let s = of("value.items.map(i, i.qty * vars.k) + [key, value.x]");
        assert_eq!(s.free, ["value", "vars", "key"]);
        let s = of("value.items.all(i, i.ok) && has(value.y) && items.exists(items, items > 0)");
        assert_eq!(s.free, ["value", "items"]);
    }

    #[test]
    fn counts_nesting_over_record_data() {
        assert_eq!(of("value.a + 1").nesting, 0);
        assert_eq!(of("value.items.map(i, i.qty)").nesting, 1);
        // Chained, not nested: linear.
        assert_eq!(
            of("value.items.filter(i, i.ok).map(i, i.qty).exists(q, q > 1)").nesting,
            1
        );
        assert_eq!(
            of("value.items.map(i, value.items.map(j, i.qty * j.qty))").nesting,
            2
        );
        assert_eq!(
            of("value.items.map(i, value.items.map(j, value.items.exists(k, k == i)))").nesting,
            3
        );
        // The iteration variable of an outer comprehension over data is data.
        assert_eq!(of("value.lists.map(l, l.map(x, x + 1))").nesting, 2);
        // Over constants or literals: fixed cost.
        assert_eq!(
            of("vars.codes.map(c, value.items.map(i, i.code == c))").nesting,
            1
        );
        assert_eq!(
            of("[1, 2, 3].map(n, value.items.map(i, i.qty * n))").nesting,
            1
        );
        assert_eq!(of("vars.a.map(x, vars.b.map(y, x + y))").nesting, 0);
        // A range that is itself a nested comprehension keeps its depth.
        assert_eq!(
            of("value.items.map(i, value.items.map(j, j)).map(l, size(l))").nesting,
            2
        );
    }
}
