//! Expressions over hostile values: what the contract accepts computes
//! (integral floats are ints), what cannot be computed is an error naming
//! the expression and the reason (overflow included), nothing panics, and
//! an expression whose cost explodes with a record's list is stopped by its
//! budget and the record dead-lettered, the next one on its key processed.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eddy::config::{Bind, Expr, Pipeline};
use eddy::processor::Headers;
use eddy::runtime::dlq_headers;
use eddy::testing::{DriverConfig, TopologyTestDriver};
use serde_json::{json, Map, Value};

const T0: i64 = 1_700_000_000_000;

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// Every expression of the order pipeline's topology files: (file and
/// field, source).
fn pipeline_expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for file in [
        "payment.toml",
        "inventory.toml",
        "order-saga.toml",
        "notification.toml",
    ] {
        let text = std::fs::read_to_string(config_dir().join(file)).unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        for (name, node) in doc["nodes"].as_table().unwrap() {
            let node = node.as_table().unwrap();
            let mut add = |field: String, v: &toml::Value| {
                out.push((
                    format!("{file}: nodes.{name}.{field}"),
                    v.as_str().unwrap().to_owned(),
                ))
            };
            // A saga's `initial` is a state, an aggregate's an expression.
            let saga = node["op"].as_str() == Some("saga");
            for key in [
                "expr",
                "value",
                "key",
                "items",
                "initial",
                "aggregator",
                "part",
                "parts",
                "url",
                "body",
                "idempotency_key",
                "response",
                "on_failure",
            ] {
                if let Some(v) = node.get(key).filter(|_| !(saga && key == "initial")) {
                    add(key.to_owned(), v);
                }
            }
            for list in ["transitions", "timeouts"] {
                for (i, t) in node
                    .get(list)
                    .and_then(|l| l.as_array())
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    for (j, e) in t
                        .get("emit")
                        .and_then(|e| e.as_array())
                        .into_iter()
                        .flatten()
                        .enumerate()
                    {
                        add(format!("{list}[{i}].emit[{j}]"), e);
                    }
                }
            }
            if let Some(v) = node.get("summary").and_then(|s| s.get("value")) {
                add("summary.value".to_owned(), v);
            }
        }
    }
    out
}

/// Every name any of those expressions may read.
const NAMES: &[&str] = &[
    "key",
    "value",
    "timestamp",
    "item",
    "index",
    "left",
    "right",
    "agg",
    "event",
    "events",
    "state",
    "from",
    "reason",
    "history",
    "status",
    "body",
    "detail",
];

fn vars() -> Value {
    json!({"gateway_url": "http://127.0.0.1:8181", "webhook_url": "http://127.0.0.1:8182", "manual_users": []})
}

/// Evaluates `e` with every name bound to `v` (or, for the saga's
/// `events`, a map of event types to `v`).
fn eval_over(e: &Expr, v: &Value) -> Result<Value, String> {
    let mut events = Map::new();
    for t in ["order_created", "payment_successful", "stock_reserved"] {
        events.insert(t.to_owned(), v.clone());
    }
    let history = Map::new();
    e.eval(
        &vars(),
        &[
            ("key", Bind::Str("order-1")),
            ("value", Bind::Json(v)),
            ("timestamp", Bind::Int(T0)),
            ("item", Bind::Json(v)),
            ("index", Bind::Int(0)),
            ("left", Bind::Json(v)),
            ("right", Bind::Json(v)),
            ("agg", Bind::Json(v)),
            ("event", Bind::Json(v)),
            ("events", Bind::Object(&events)),
            ("state", Bind::Str("awaiting_stock")),
            ("from", Bind::Str("awaiting_payment")),
            ("reason", Bind::Null),
            ("history", Bind::Object(&history)),
            ("status", Bind::Int(200)),
            ("body", Bind::Json(v)),
            ("detail", Bind::Str("timeout")),
        ],
    )
    .map_err(|e| e.to_string())
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!([inner]))
}

/// Values that try every corner: numbers beyond any range, floats where
/// ints are expected, strings that look like numbers, wrong types, deep
/// nesting, long strings and lists, each as a whole value and in an order's
/// line (the field the expressions compute with).
fn hostile_values() -> Vec<Value> {
    let odd: Vec<Value> = vec![
        json!(1.0),
        json!(2e3),
        json!(-0.0),
        json!(0.5),
        json!(1e300),
        json!(-1e300),
        json!(f64::MAX),
        json!(f64::MIN_POSITIVE),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(9_223_372_036_854_775_808.0_f64),
        json!("NaN"),
        json!("Infinity"),
        json!("-0"),
        json!("1"),
        json!(""),
        json!(null),
        json!(true),
        json!([]),
        json!({}),
        json!("x".repeat(1 << 20)),
        nested(120),
    ];
    let mut values = odd.clone();
    for x in &odd {
        let line = json!({"product_id": "p1", "qty": x, "unit_price": x, "line": x, "ok": x});
        values.push(json!({
            "type": "order_created", "order_id": "order-1", "user_id": x, "amount": x,
            "items": [line.clone()],
            "answers": [line.clone()], "lines": x, "released": [line], "missing": x, "qty": x,
            "created_at": x,
        }));
        values.push(json!({"type": x, "items": x, "answers": x, "released": x, "lines": 1}));
    }
    let line = |qty: i64, price: i64| json!({"product_id": "p", "qty": qty, "unit_price": price, "line": 0, "ok": true});
    for items in [
        vec![line(3037000500, 3037000500)],
        vec![
            line(1, 5_000_000_000_000_000_000),
            line(1, 5_000_000_000_000_000_000),
        ],
    ] {
        values.push(json!({"type": "order_created", "order_id": "order-1", "items": items, "answers": items, "released": items, "lines": 1}));
    }
    let many: Vec<Value> = (0..3_000)
        .map(|i| json!({"product_id": format!("p{i}"), "qty": i64::MAX - i, "unit_price": 2, "line": i, "ok": i % 2 == 0}))
        .collect();
    values.push(json!({"type": "stock_unavailable", "items": many, "answers": many, "released": many, "lines": 3_000}));
    values
}

#[test]
fn the_pipelines_expressions_give_a_value_or_an_error_naming_them_for_any_value() {
    let exprs = pipeline_expressions();
    assert!(exprs.len() >= 25, "{}", exprs.len());
    let values = hostile_values();
    let mut outcomes = BTreeSet::new();
    for (field, source) in &exprs {
        let e = Expr::compile(source, NAMES).unwrap_or_else(|e| panic!("{field}: {e}"));
        for v in &values {
            let started = Instant::now();
            let got = std::panic::catch_unwind(|| eval_over(&e, v))
                .unwrap_or_else(|_| panic!("{field} panicked over {}", short(v)));
            if let Err(reason) = &got {
                assert!(
                    reason.contains(&format!("{source:?}")),
                    "{field}: the error does not name the expression: {reason}"
                );
                // A dead letter's header, not a copy of the record.
                assert!(
                    reason.len() < 1100 + source.len(),
                    "{field}: {} bytes",
                    reason.len()
                );
                outcomes.insert(reason.replace(&format!("{source:?}"), "EXPR"));
            }
            // Generous for a debug build on a busy machine: this is about
            // hanging, the budget tests are about time.
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{field} took {:?} over {}",
                started.elapsed(),
                short(v)
            );
        }
    }
    // The failures include the overflows, said as such.
    for want in [
        "EXPR failed: integer overflow: 3037000500 * 3037000500 is beyond the 64-bit integer range",
        "EXPR gave a non-finite number inf",
        "EXPR failed: Error executing function 'sum': integer overflow: the sum is beyond the 64-bit integer range",
    ] {
        assert!(outcomes.contains(want), "no {want:?} in {:#?}", outcomes.iter().map(|o| short(&json!(o))).collect::<Vec<_>>());
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        format!("{}... ({} bytes)", &s[..200], s.len())
    } else {
        s
    }
}

/// The payment service's amount, from `config/payment.toml`.
fn amount_expr() -> Expr {
    let (_, source) = pipeline_expressions()
        .into_iter()
        .find(|(f, _)| f == "payment.toml: nodes.priced.value")
        .unwrap();
    Expr::compile(&source, &["key", "value", "timestamp"]).unwrap()
}

fn amount_of(items: Value) -> Result<Value, String> {
    amount_expr()
        .eval(
            &vars(),
            &[("value", Bind::Json(&json!({ "items": items })))],
        )
        .map_err(|e| e.to_string())
}

#[test]
fn integral_floats_compute_as_ints_and_overflow_is_an_error() {
    let line =
        |qty: Value, price: Value| json!([{"product_id": "p", "qty": qty, "unit_price": price}]);
    assert_eq!(
        amount_of(line(json!(1.0), json!(250))),
        Ok(json!({"amount": 250}))
    );
    assert_eq!(
        amount_of(line(json!(2e3), json!(3))),
        Ok(json!({"amount": 6000}))
    );
    assert_eq!(
        amount_of(line(json!(3), json!(1.5e3))),
        Ok(json!({"amount": 4500}))
    );
    assert_eq!(
        amount_of(line(json!(-0.0), json!(7))),
        Ok(json!({"amount": 0}))
    );
    // The result is an int too: no "250.0" downstream.
    assert_eq!(
        serde_json::to_string(&amount_of(line(json!(1.0), json!(250.0))).unwrap()).unwrap(),
        r#"{"amount":250}"#
    );
    let source = "{'amount': sum(value.items.map(i, i.qty * i.unit_price))}";
    assert_eq!(
        amount_of(line(json!(1), json!(1e300))),
        Err(format!("{source:?} failed: integer overflow in 1 * 1e300: 1e300 is beyond the 64-bit integer range"))
    );
    assert_eq!(
        amount_of(line(json!(i64::MAX), json!(2))),
        Err(format!("{source:?} failed: integer overflow: 9223372036854775807 * 2 is beyond the 64-bit integer range"))
    );
    assert_eq!(
        amount_of(line(json!(u64::MAX), json!(1))),
        Err(format!("{source:?} failed: integer overflow in 1.8446744073709552e19 * 1: 1.8446744073709552e19 is beyond the 64-bit integer range"))
    );
    assert_eq!(
        amount_of(json!([
            {"product_id": "p", "qty": 1, "unit_price": i64::MAX},
            {"product_id": "q", "qty": 1, "unit_price": 1}
        ])),
        Err(format!("{source:?} failed: Error executing function 'sum': integer overflow: the sum is beyond the 64-bit integer range"))
    );
    // Not integral: CEL does not mix doubles and ints.
    assert_eq!(
        amount_of(line(json!(0.5), json!(2))),
        Err(format!(
            "{source:?} failed: Unsupported binary operator 'mul': Float(0.5), Int(2)"
        ))
    );
    assert_eq!(
        amount_of(line(json!("1"), json!(2))),
        Err(format!(
            "{source:?} failed: Unsupported binary operator 'mul': String(\"1\"), Int(2)"
        ))
    );
}

// ---- the test driver ----

struct Service {
    driver: TopologyTestDriver,
    app: String,
}

impl Service {
    fn of(p: Pipeline) -> Service {
        let app = p.config.application_id.clone();
        let cfg = DriverConfig {
            application_id: app.clone(),
            ..DriverConfig::default()
        };
        Service {
            driver: TopologyTestDriver::with_config(p.topology, cfg),
            app,
        }
    }

    fn pipe(&mut self, topic: &str, key: &str, value: &str) {
        self.driver
            .pipe_raw(
                topic,
                None,
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                T0,
                Headers::default(),
            )
            .unwrap();
    }

    fn read(&mut self, topic: &str) -> Vec<(String, Value)> {
        self.driver
            .read_raw(topic)
            .into_iter()
            .map(|r| {
                (
                    String::from_utf8(r.key.unwrap()).unwrap(),
                    serde_json::from_slice(&r.value.unwrap()).unwrap(),
                )
            })
            .collect()
    }

    /// The dead letters since the last call: (key, reason).
    fn dead(&mut self) -> Vec<(String, String)> {
        self.driver
            .read_raw(&format!("{}-dlq", self.app))
            .into_iter()
            .map(|r| {
                let reason = r.headers.last(dlq_headers::MESSAGE).unwrap();
                (
                    String::from_utf8(r.key.unwrap()).unwrap(),
                    String::from_utf8(reason.to_vec()).unwrap(),
                )
            })
            .collect()
    }
}

#[test]
fn an_order_with_integral_float_quantities_is_paid_by_the_payment_service() {
    let overrides = common::with_gateway(Default::default(), &common::gateway_url());
    let p = Pipeline::load_with(
        &config_dir().join("payment.toml"),
        &eddy_orders::registry(),
        &overrides,
    )
    .unwrap();
    let mut s = Service::of(p);
    let order = r#"{"type": "order_created", "order_id": "o-1", "user_id": "u1", "created_at": 1700000000000,
        "items": [{"product_id": "p1", "qty": 1.0, "unit_price": 250}, {"product_id": "p2", "qty": 2.0, "unit_price": 1.5e3}]}"#;
    s.pipe("orders", "o-1", order);
    assert_eq!(s.dead(), []);
    assert_eq!(
        s.read("payments"),
        [(
            "o-1".to_owned(),
            json!({"type": "payment_successful", "order_id": "o-1", "amount": 3250, "gateway_ref": "gw-o-1"})
        )]
    );
}

const PRICED: &str = r#"
[application]
id = "priced"

[topics.orders]

[topics.priced]

[nodes.orders]
op = "source"
topic = "orders"

[nodes.priced]
op = "map"
input = "orders"
value = "{'amount': sum(value.items.map(i, i.qty * i.unit_price))}"

[nodes.out]
op = "sink"
input = "priced"
topic = "priced"
"#;

#[test]
fn an_overflowing_amount_is_dead_lettered_with_the_reason_and_the_key_goes_on() {
    let p = Pipeline::parse(PRICED, Path::new("priced.toml"), &eddy_orders::registry()).unwrap();
    let mut s = Service::of(p);
    s.pipe(
        "orders",
        "o-1",
        r#"{"items": [{"qty": 2, "unit_price": 1e300}]}"#,
    );
    s.pipe(
        "orders",
        "o-1",
        r#"{"items": [{"qty": 3037000500, "unit_price": 3037000500}]}"#,
    );
    s.pipe(
        "orders",
        "o-1",
        r#"{"items": [{"qty": 2, "unit_price": 21}]}"#,
    );
    let source = "{'amount': sum(value.items.map(i, i.qty * i.unit_price))}";
    assert_eq!(
        s.dead(),
        [
            ("o-1".to_owned(), format!("{source:?} failed: integer overflow in 2 * 1e300: 1e300 is beyond the 64-bit integer range")),
            ("o-1".to_owned(), format!("{source:?} failed: integer overflow: 3037000500 * 3037000500 is beyond the 64-bit integer range")),
        ]
    );
    assert_eq!(
        s.read("priced"),
        [("o-1".to_owned(), json!({"amount": 42}))]
    );
}

/// Whether an order has two lines of one product: a `filter` inside an
/// `exists` over the same list, quadratic in its length.
const DUPLICATES: &str = "{'order_id': key, 'duplicated': value.items.exists(a, value.items.filter(b, b.product_id == a.product_id).size() > 1)}";

fn duplicates_file(budget: &str) -> String {
    format!(
        r#"
[application]
id = "dups"

[expressions]
{budget}

[topics.orders]

[topics.checked]

[nodes.orders]
op = "source"
topic = "orders"

[nodes.check]
op = "map"
input = "orders"
value = "{DUPLICATES}"

[nodes.out]
op = "sink"
input = "check"
topic = "checked"
"#
    )
}

fn order_of(lines: usize) -> String {
    let items: Vec<Value> = (0..lines)
        .map(|i| json!({"product_id": format!("p{i}"), "qty": 1, "unit_price": 100}))
        .collect();
    json!({"order_id": "o-1", "items": items}).to_string()
}

#[test]
fn a_quadratic_expression_over_a_long_list_is_stopped_and_dead_lettered() {
    // Budgets that make the reason exact: steps first, then the clock.
    for (budget, reason) in [
        (
            "max_steps = 100000\ntimeout = \"1h\"",
            format!("expression budget exceeded: {DUPLICATES:?} needs more than 100000 comprehension steps (expressions.max_steps)"),
        ),
        (
            "max_steps = 1000000000\ntimeout = \"20ms\"",
            format!("expression budget exceeded: {DUPLICATES:?} ran longer than 20ms (expressions.timeout)"),
        ),
    ] {
        let file = duplicates_file(budget);
        let p = Pipeline::parse(&file, Path::new("dups.toml"), &eddy_orders::registry()).unwrap();
        let mut s = Service::of(p);
        s.pipe("orders", "o-1", &order_of(3000));
        s.pipe("orders", "o-1", &order_of(3));
        assert_eq!(s.dead(), [("o-1".to_owned(), reason)]);
        assert_eq!(
            s.read("checked"),
            [("o-1".to_owned(), json!({"order_id": "o-1", "duplicated": false}))]
        );
    }
}

#[test]
fn the_default_budget_stops_a_3000_line_quadratic_record_well_under_a_second() {
    let file = duplicates_file("");
    let p = Pipeline::parse(&file, Path::new("dups.toml"), &eddy_orders::registry()).unwrap();
    let mut s = Service::of(p);
    let big = order_of(3000);
    let started = Instant::now();
    s.pipe("orders", "o-1", &big);
    let took = started.elapsed();
    let dead = s.dead();
    assert_eq!(dead.len(), 1);
    let prefix = format!("expression budget exceeded: {DUPLICATES:?} ");
    assert!(
        [
            "needs more than 100000 comprehension steps (expressions.max_steps)",
            "ran longer than 100ms (expressions.timeout)"
        ]
        .map(|r| format!("{prefix}{r}"))
        .contains(&dead[0].1),
        "{}",
        dead[0].1
    );
    assert!(took < Duration::from_millis(700), "took {took:?}");
    // Under the budget, the same expression answers.
    s.pipe("orders", "o-2", &order_of(20));
    assert_eq!(
        s.read("checked"),
        [(
            "o-2".to_owned(),
            json!({"order_id": "o-2", "duplicated": false})
        )]
    );
}

#[test]
fn a_cubic_expression_is_refused_at_load_naming_file_field_and_reason() {
    let cubic = "value.items.map(a, value.items.map(b, value.items.filter(c, c.qty == a.qty * b.qty).size()))";
    let file = duplicates_file("").replace(DUPLICATES, cubic);
    let e = Pipeline::parse(&file, Path::new("dups.toml"), &eddy_orders::registry())
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        format!("dups.toml: nodes.check.value: bad expression {cubic:?}: 3 comprehensions over record data are nested in one another, more than 2 (expressions.max_nesting): its cost would grow as the 3rd power of a list's length")
    );
    // Allowed by a file that says so, and then bounded at run time.
    let file = duplicates_file("max_nesting = 3").replace(DUPLICATES, cubic);
    let p = Pipeline::parse(&file, Path::new("dups.toml"), &eddy_orders::registry()).unwrap();
    let mut s = Service::of(p);
    s.pipe("orders", "o-1", &order_of(200));
    assert_eq!(s.dead().len(), 1);
    s.pipe("orders", "o-1", &order_of(2));
    assert_eq!(
        s.read("checked"),
        [("o-1".to_owned(), json!([[2, 2], [2, 2]]))]
    );
}
