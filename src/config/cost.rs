//! The cost budget of expressions.
//!
//! CEL has no loops other than its comprehension macros (`map`, `filter`,
//! `all`, `exists`, `exists_one`), and the `cel` crate cannot interrupt an
//! evaluation, so eddy expands those macros itself: each one built here is
//! the standard expansion plus a call of the internal function `@step`
//! before each element (`@` names cannot be written in an expression).
//! `@step` counts the elements visited during one evaluation and looks at
//! the clock; past the [`Budget`] it fails, and so does every later `@step`
//! of that evaluation, which makes every enclosing comprehension stop at its
//! next element. The evaluation then fails with the reason, whatever the
//! expression made of the error on the way out (`true || error` is `true`
//! in CEL). Between two steps an evaluation only does work bounded by the
//! expression's size and the data it holds, so the budget is never overrun
//! by more than one element's work.
//!
//! The step counter makes the limit deterministic (the same record always
//! fails at the same place); the clock catches elements that are costly
//! each, and a slow machine.

use std::cell::Cell;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use cel::common::ast::{
    operators, CallExpr, ComprehensionExpr, Expr, IdedExpr, ListExpr, LiteralValue,
};
use cel::common::types::CelBool;
use cel::common::value::CowVal;
use cel::parser::{Macro, MacroExprHelper, ParseError};
use cel::{Env, ExecutionError};

/// Limits on the cost of evaluating one expression, set per file under
/// `[expressions]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Comprehensions over record data nested deeper than this are refused
    /// when the file is loaded (`max_nesting`, default 2): their cost grows
    /// as a list's length to the power of the nesting.
    pub max_nesting: usize,
    /// Comprehension steps (elements visited, over all comprehensions) one
    /// evaluation may take (`max_steps`, default 100 000).
    pub max_steps: u64,
    /// Wall-clock time one evaluation may take (`timeout`, default 100 ms).
    pub timeout: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_nesting: 2,
            max_steps: 100_000,
            timeout: Duration::from_millis(100),
        }
    }
}

/// The name of the step function the macros call.
const STEP: &str = "@step";

/// The environment expressions are compiled and evaluated in: the standard
/// library, with the comprehension macros metered.
pub(super) fn env() -> Arc<Env> {
    static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
        let mut env = Env::default().with_stdlib();
        let macros = [
            Macro::global(operators::HAS, 1, has),
            Macro::receiver(operators::MAP, 2, map),
            Macro::receiver(operators::MAP, 3, map),
            Macro::receiver(operators::FILTER, 2, filter),
            Macro::receiver(operators::ALL, 2, all),
            Macro::receiver(operators::EXISTS, 2, exists),
            Macro::receiver(operators::EXISTS_ONE, 2, exists_one),
            Macro::receiver("existsOne", 2, exists_one),
        ];
        for m in macros {
            env.add_macro(m).expect("each macro is added once");
        }
        env.add_overload(STEP, "eddy_step", Vec::new(), step)
            .expect("@step is declared once");
        Arc::new(env)
    });
    ENV.clone()
}

/// Why an evaluation was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exceeded {
    /// More steps than the budget's.
    Steps(u64),
    /// Longer than the budget's timeout.
    Time(Duration),
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exceeded::Steps(n) => write!(
                f,
                "needs more than {n} comprehension steps (expressions.max_steps)"
            ),
            Exceeded::Time(t) => write!(
                f,
                "ran longer than {} (expressions.timeout)",
                humantime::format_duration(*t)
            ),
        }
    }
}

/// The state of the evaluation running on this thread.
#[derive(Clone, Copy)]
struct Meter {
    steps: u64,
    max_steps: u64,
    started: Option<Instant>,
    timeout: Duration,
    exceeded: Option<Exceeded>,
}

impl Meter {
    /// No evaluation running: steps are not limited.
    const IDLE: Meter = Meter {
        steps: 0,
        max_steps: u64::MAX,
        started: None,
        timeout: Duration::MAX,
        exceeded: None,
    };
}

thread_local! {
    static METER: Cell<Meter> = const { Cell::new(Meter::IDLE) };
}

/// The clock is read every this many steps (and at the first).
const CLOCK_EVERY: u64 = 16;

/// Runs `evaluate` under `budget`; returns its result and, if the budget
/// was exceeded, why (the result is then meaningless).
pub(super) fn metered<R>(budget: &Budget, evaluate: impl FnOnce() -> R) -> (R, Option<Exceeded>) {
    METER.with(|m| {
        m.set(Meter {
            steps: 0,
            max_steps: budget.max_steps,
            started: None,
            timeout: budget.timeout,
            exceeded: None,
        })
    });
    let result = evaluate();
    let exceeded = METER.with(|m| m.replace(Meter::IDLE)).exceeded;
    (result, exceeded)
}

/// `@step()`: counts one step of the running evaluation; fails once the
/// budget is spent.
fn step<'b, 'v>(_: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    static TRUE: CelBool = CelBool::TRUE;
    METER.with(|cell| {
        let mut m = cell.get();
        if m.exceeded.is_none() {
            m.steps += 1;
            if m.steps > m.max_steps {
                m.exceeded = Some(Exceeded::Steps(m.max_steps));
            } else if m.steps % CLOCK_EVERY == 1 {
                let now = Instant::now();
                let started = *m.started.get_or_insert(now);
                if now.duration_since(started) > m.timeout {
                    m.exceeded = Some(Exceeded::Time(m.timeout));
                }
            }
            cell.set(m);
        }
        match m.exceeded {
            None => Ok(CowVal::Borrowed(&TRUE)),
            Some(e) => Err(ExecutionError::function_error(
                "expression budget",
                e.to_string(),
            )),
        }
    })
}

// The expansions: the standard ones (`target.map(x, f)` is a comprehension
// over `target` appending `[f]` to `@result`, and so on) with `@step()`
// first in each iteration.

const ACCU: &str = "@result";

/// Builds the nodes of one expansion.
struct Build<'h, 'a>(&'h mut MacroExprHelper<'a>);

impl Build<'_, '_> {
    fn node(&mut self, expr: Expr) -> IdedExpr {
        self.0.next_expr(expr)
    }

    fn call(&mut self, func: &str, args: Vec<IdedExpr>) -> IdedExpr {
        self.node(Expr::Call(CallExpr {
            func_name: func.to_owned(),
            target: None,
            args,
        }))
    }

    fn accu(&mut self) -> IdedExpr {
        self.node(Expr::Ident(ACCU.to_owned()))
    }

    fn bool(&mut self, b: bool) -> IdedExpr {
        self.node(Expr::Literal(LiteralValue::Boolean(b.into())))
    }

    fn int(&mut self, i: i64) -> IdedExpr {
        self.node(Expr::Literal(LiteralValue::Int(i.into())))
    }

    fn list(&mut self, elements: Vec<IdedExpr>) -> IdedExpr {
        self.node(Expr::List(ListExpr::new(elements)))
    }

    fn step(&mut self) -> IdedExpr {
        self.call(STEP, Vec::new())
    }

    /// `c ? a : b`.
    fn cond(&mut self, c: IdedExpr, a: IdedExpr, b: IdedExpr) -> IdedExpr {
        self.call(operators::CONDITIONAL, vec![c, a, b])
    }

    /// `@step() ? p : false`: `p`, counted.
    fn counted(&mut self, p: IdedExpr) -> IdedExpr {
        let (step, no) = (self.step(), self.bool(false));
        self.cond(step, p, no)
    }

    /// `guard ? @result + [item] : @result`, the shape the crate builds a
    /// list for in place (no copy of the accumulator per element).
    fn append_if(&mut self, guard: IdedExpr, item: IdedExpr) -> IdedExpr {
        let (accu, items) = (self.accu(), self.list(vec![item]));
        let appended = self.call(operators::ADD, vec![accu, items]);
        let unchanged = self.accu();
        self.cond(guard, appended, unchanged)
    }

    fn comprehension(&mut self, parts: Loop) -> IdedExpr {
        let Loop {
            range,
            var,
            init,
            cond,
            step,
            result,
        } = parts;
        self.node(Expr::Comprehension(Box::new(ComprehensionExpr {
            iter_range: range,
            iter_var: var,
            iter_var2: None,
            accu_var: ACCU.to_owned(),
            accu_init: init,
            loop_cond: cond,
            loop_step: step,
            result,
        })))
    }
}

/// The parts of a CEL comprehension: over `range` with `var`, the
/// accumulator starts at `init` and takes `step` while `cond` holds; the
/// value is `result`.
struct Loop {
    range: IdedExpr,
    var: String,
    init: IdedExpr,
    cond: IdedExpr,
    step: IdedExpr,
    result: IdedExpr,
}

type Expansion = Result<Option<IdedExpr>, ParseError>;

/// The target and the iteration variable of `target.m(x, ...)`.
fn parts(
    h: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Result<(IdedExpr, String), ParseError> {
    let var = args.remove(0);
    let name = match var.expr {
        Expr::Ident(name) => name,
        _ => return Err(h.new_error(var.id, "argument must be a simple name")),
    };
    Ok((target.take().expect("a receiver macro has a target"), name))
}

/// `has(a.f)`: whether `a` has the field `f`.
fn has(
    h: &mut MacroExprHelper<'_>,
    _: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Expansion {
    let arg = args.remove(0);
    match arg.expr {
        Expr::Select(mut select) => {
            select.test = true;
            Ok(Some(h.next_expr(Expr::Select(select))))
        }
        _ => Err(h.new_error(arg.id, "invalid argument to has() macro")),
    }
}

/// `r.map(x, f)` and `r.map(x, p, f)`.
fn map(
    h: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Expansion {
    let f = args.pop().expect("two or three arguments");
    let p = (args.len() == 2).then(|| args.pop().expect("three arguments"));
    let (range, var) = parts(h, target, args)?;
    let mut b = Build(h);
    let guard = match p {
        Some(p) => b.counted(p),
        None => b.step(),
    };
    let (init, cond) = (b.list(Vec::new()), b.bool(true));
    let step = b.append_if(guard, f);
    let result = b.accu();
    Ok(Some(b.comprehension(Loop {
        range,
        var,
        init,
        cond,
        step,
        result,
    })))
}

/// `r.filter(x, p)`.
fn filter(
    h: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Expansion {
    let p = args.pop().expect("two arguments");
    let (range, var) = parts(h, target, args)?;
    let mut b = Build(h);
    let guard = b.counted(p);
    let item = b.node(Expr::Ident(var.clone()));
    let (init, cond) = (b.list(Vec::new()), b.bool(true));
    let step = b.append_if(guard, item);
    let result = b.accu();
    Ok(Some(b.comprehension(Loop {
        range,
        var,
        init,
        cond,
        step,
        result,
    })))
}

/// `r.all(x, p)` (`conjunction` true) and `r.exists(x, p)` (false): fold
/// `@result && p` (or `||`) from `true` (or `false`) while the result is
/// not decided.
fn fold(
    h: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
    conjunction: bool,
) -> Expansion {
    let p = args.pop().expect("two arguments");
    let (range, var) = parts(h, target, args)?;
    let mut b = Build(h);
    let init = b.bool(conjunction);
    let accu = b.accu();
    let undecided = if conjunction {
        accu
    } else {
        b.call(operators::LOGICAL_NOT, vec![accu])
    };
    let undecided = b.call(operators::NOT_STRICTLY_FALSE, vec![undecided]);
    let cond = b.counted(undecided);
    let accu = b.accu();
    let op = if conjunction {
        operators::LOGICAL_AND
    } else {
        operators::LOGICAL_OR
    };
    let step = b.call(op, vec![accu, p]);
    let result = b.accu();
    Ok(Some(b.comprehension(Loop {
        range,
        var,
        init,
        cond,
        step,
        result,
    })))
}

fn all(
    h: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Expansion {
    fold(h, target, args, true)
}

fn exists(
    h: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Expansion {
    fold(h, target, args, false)
}

/// `r.exists_one(x, p)`: counts the elements where `p` holds.
fn exists_one(
    h: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Expansion {
    let p = args.pop().expect("two arguments");
    let (range, var) = parts(h, target, args)?;
    let mut b = Build(h);
    let init = b.int(0);
    let cond = b.step();
    let (accu, one) = (b.accu(), b.int(1));
    let counted = b.call(operators::ADD, vec![accu, one]);
    let unchanged = b.accu();
    let step = b.cond(p, counted, unchanged);
    let (accu, one) = (b.accu(), b.int(1));
    let result = b.call(operators::EQUALS, vec![accu, one]);
    Ok(Some(b.comprehension(Loop {
        range,
        var,
        init,
        cond,
        step,
        result,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cel::{Context, Value};

    fn eval(source: &str, budget: &Budget) -> (Result<Value, ExecutionError>, Option<Exceeded>) {
        let program = env().compile(source).unwrap();
        let ctx = Context::with_env(env());
        metered(budget, || program.execute(&ctx))
    }

    #[test]
    fn metered_macros_give_the_standard_results() {
        let b = Budget::default();
        for (source, want) in [
            ("[1, 2, 3].map(x, x * 2)", Value::from(vec![2i64, 4, 6])),
            (
                "[1, 2, 3].map(x, x > 1, x * 10)",
                Value::from(vec![20i64, 30]),
            ),
            (
                "[1, 2, 3].filter(x, x % 2 == 1)",
                Value::from(vec![1i64, 3]),
            ),
            ("[1, 2, 3].all(x, x > 0)", Value::Bool(true)),
            ("[1, 2, 3].all(x, x > 1)", Value::Bool(false)),
            ("[].all(x, x > 1)", Value::Bool(true)),
            ("[1, 2, 3].exists(x, x == 2)", Value::Bool(true)),
            ("[1, 2, 3].exists(x, x == 5)", Value::Bool(false)),
            ("[1, 2, 3].exists_one(x, x > 2)", Value::Bool(true)),
            ("[1, 2, 3].existsOne(x, x > 1)", Value::Bool(false)),
            ("{'a': 1}.map(k, k + '!')", Value::from(vec!["a!"])),
            ("has({'a': 1}.a) && !has({'a': 1}.b)", Value::Bool(true)),
            // An error an element decides away, as in standard CEL.
            ("[0, 1].exists(x, 1 / x == 1)", Value::Bool(true)),
        ] {
            assert_eq!(eval(source, &b), (Ok(want), None), "{source}");
        }
    }

    #[test]
    fn steps_past_the_budget_stop_the_evaluation() {
        let b = Budget {
            max_steps: 10,
            ..Budget::default()
        };
        // 4 steps outside, 3 inside each: 16.
        let nested = "[1, 2, 3, 4].map(x, [1, 2, 3].map(y, x * y))";
        let (result, exceeded) = eval(nested, &b);
        assert_eq!(exceeded, Some(Exceeded::Steps(10)));
        assert!(result.is_err());
        let b16 = Budget {
            max_steps: 16,
            ..Budget::default()
        };
        assert_eq!(eval(nested, &b16).1, None);
        // An expression that decides the error away is stopped all the same.
        let (result, exceeded) = eval(&format!("size({nested}) > 0 || true"), &b);
        assert_eq!(
            (result, exceeded),
            (Ok(Value::Bool(true)), Some(Exceeded::Steps(10)))
        );
        // Each evaluation starts afresh.
        assert_eq!(eval(nested, &b16).1, None);
    }

    #[test]
    fn the_clock_stops_a_long_evaluation() {
        let b = Budget {
            max_steps: u64::MAX,
            timeout: Duration::from_millis(20),
            ..Budget::default()
        };
        let started = Instant::now();
        let (_, exceeded) = eval(
            "[1,2,3,4,5,6,7,8,9,10].map(a, [1,2,3,4,5,6,7,8,9,10].map(b, [1,2,3,4,5,6,7,8,9,10].map(c, [1,2,3,4,5,6,7,8,9,10].map(d, [1,2,3,4,5,6,7,8,9,10].map(e, [1,2,3,4,5,6,7,8,9,10].map(f, a + b + c + d + e + f))))))",
            &b,
        );
        assert_eq!(exceeded, Some(Exceeded::Time(Duration::from_millis(20))));
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
}
