//! Test-driver tests of stream-table and table-table joins.

use eddy::serde::{I64Serde, Nullable, StringSerde};
use eddy::testing::{TestTopic, TopologyTestDriver};
use eddy::topology::{JoinKind, StreamJoined, StreamsBuilder};

fn kv<V>(k: &str, v: V) -> (String, V) {
    (k.to_owned(), v)
}

#[test]
fn stream_table_joins_see_the_current_table_value() {
    let b = StreamsBuilder::new();
    let prices = b.table("prices", StringSerde, I64Serde, "prices");
    let orders = b.stream("orders", StringSerde, I64Serde);
    orders
        .join_table(&prices, |qty: &i64, price: &i64| format!("{qty}x{price}"))
        .to("inner", StringSerde, StringSerde);
    orders
        .left_join_table(&prices, |qty: &i64, price: Option<&i64>| match price {
            Some(p) => format!("{qty}x{p}"),
            None => format!("{qty}x?"),
        })
        .to("left", StringSerde, StringSerde);
    let mut d = TopologyTestDriver::new(b.build().unwrap());
    let price = TestTopic::new("prices", StringSerde, Nullable(I64Serde));
    let order = TestTopic::new("orders", StringSerde, I64Serde);
    d.pipe(&price, "p1".into(), Some(10), 1).unwrap();
    d.pipe(&order, "p1".into(), 2, 2).unwrap();
    d.pipe(&order, "p2".into(), 3, 3).unwrap();
    d.pipe(&price, "p1".into(), Some(12), 4).unwrap();
    d.pipe(&order, "p1".into(), 1, 5).unwrap();
    d.pipe(&price, "p1".into(), None, 6).unwrap();
    d.pipe(&order, "p1".into(), 4, 7).unwrap();
    let out = |name| TestTopic::new(name, StringSerde, StringSerde);
    let inner = d.read(&out("inner")).unwrap();
    let got: Vec<_> = inner
        .iter()
        .map(|r| (r.key.as_str(), r.value.as_str(), r.timestamp))
        .collect();
    assert_eq!(got, [("p1", "2x10", 2), ("p1", "1x12", 5)]);
    assert_eq!(
        d.read_key_values(&out("left")).unwrap(),
        [
            kv("p1", "2x10".to_string()),
            kv("p2", "3x?".to_string()),
            kv("p1", "1x12".to_string()),
            kv("p1", "4x?".to_string())
        ]
    );
}

fn render(l: Option<&i64>, r: Option<&String>) -> String {
    format!(
        "{}/{}",
        l.map_or("-".to_string(), |v| v.to_string()),
        r.map_or("-", |v| v)
    )
}

#[test]
fn table_table_joins_propagate_updates_and_tombstones() {
    let b = StreamsBuilder::new();
    let left = b.table("l", StringSerde, I64Serde, "l-store");
    let right = b.table("r", StringSerde, StringSerde, "r-store");
    for (kind, topic) in [
        (JoinKind::Inner, "inner"),
        (JoinKind::Left, "left"),
        (JoinKind::Outer, "outer"),
    ] {
        left.join_with(&right, kind, render).to_stream().to(
            topic,
            StringSerde,
            Nullable(StringSerde),
        );
    }
    left.join(&right, |l, r| format!("{l}+{r}")).to_stream().to(
        "inner-plain",
        StringSerde,
        Nullable(StringSerde),
    );
    let mut d = TopologyTestDriver::new(b.build().unwrap());
    let l = TestTopic::new("l", StringSerde, Nullable(I64Serde));
    let r = TestTopic::new("r", StringSerde, Nullable(StringSerde));
    d.pipe(&l, "a".into(), Some(1), 1).unwrap();
    d.pipe(&r, "a".into(), Some("x".into()), 2).unwrap();
    d.pipe(&r, "b".into(), Some("y".into()), 3).unwrap();
    d.pipe(&l, "a".into(), None, 4).unwrap();
    d.pipe(&r, "a".into(), None, 5).unwrap();
    let out = |name| TestTopic::new(name, StringSerde, Nullable(StringSerde));
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        d.read_key_values(&out("inner")).unwrap(),
        [kv("a", s("1/x")), kv("a", None)]
    );
    assert_eq!(
        d.read_key_values(&out("left")).unwrap(),
        [kv("a", s("1/-")), kv("a", s("1/x")), kv("a", None)]
    );
    assert_eq!(
        d.read_key_values(&out("outer")).unwrap(),
        [
            kv("a", s("1/-")),
            kv("a", s("1/x")),
            kv("b", s("-/y")),
            kv("a", s("-/x")),
            kv("a", None)
        ]
    );
    assert_eq!(
        d.read_key_values(&out("inner-plain")).unwrap(),
        [kv("a", s("1+x")), kv("a", None)]
    );
}

#[test]
fn stream_stream_joins_match_within_the_window_and_emit_unmatched_only_after_it_closes() {
    use eddy::topology::JoinWindows;
    use std::time::Duration;
    let b = StreamsBuilder::new();
    let left = b.stream("left", StringSerde, StringSerde);
    let right = b.stream("right", StringSerde, StringSerde);
    let windows = JoinWindows::of(Duration::from_millis(10), Duration::ZERO);
    let render = |l: Option<&String>, r: Option<&String>| {
        format!("{}/{}", l.map_or("-", |v| v), r.map_or("-", |v| v))
    };
    for (kind, name) in [
        (JoinKind::Inner, "inner"),
        (JoinKind::Left, "left-join"),
        (JoinKind::Outer, "outer"),
    ] {
        left.join_stream(
            &right,
            kind,
            windows,
            render,
            StreamJoined::with(name, StringSerde, StringSerde, StringSerde),
        )
        .to(name, StringSerde, StringSerde);
    }
    let mut d = TopologyTestDriver::new(b.build().unwrap());
    let (l, r) = (
        TestTopic::new("left", StringSerde, StringSerde),
        TestTopic::new("right", StringSerde, StringSerde),
    );
    d.pipe(&l, "a".into(), "L1".into(), 0).unwrap();
    d.pipe(&r, "a".into(), "R1".into(), 5).unwrap();
    d.pipe(&l, "b".into(), "Lb".into(), 1).unwrap();
    let out = |name| TestTopic::new(name, StringSerde, StringSerde);
    let read = |d: &mut TopologyTestDriver, name| -> Vec<(String, String, i64)> {
        d.read(&out(name))
            .unwrap()
            .into_iter()
            .map(|r| (r.key, r.value, r.timestamp))
            .collect()
    };
    let t = |k: &str, v: &str, ts: i64| (k.to_string(), v.to_string(), ts);
    // Lb has no partner yet, but its window is open: no early "Lb/-".
    assert_eq!(read(&mut d, "left-join"), [t("a", "L1/R1", 5)]);
    d.pipe(&r, "a".into(), "R2".into(), 20).unwrap();
    d.pipe(&l, "a".into(), "L2".into(), 25).unwrap();
    d.pipe(&r, "c".into(), "Rc".into(), 40).unwrap();
    d.pipe(&l, "d".into(), "Ld".into(), 60).unwrap();
    // Too late: its window closed at 3 + 10 < 60.
    d.pipe(&l, "a".into(), "late".into(), 3).unwrap();
    assert_eq!(
        read(&mut d, "inner"),
        [t("a", "L1/R1", 5), t("a", "L2/R2", 25)]
    );
    assert_eq!(
        read(&mut d, "left-join"),
        [t("b", "Lb/-", 1), t("a", "L2/R2", 25)]
    );
    assert_eq!(
        read(&mut d, "outer"),
        [
            t("a", "L1/R1", 5),
            t("b", "Lb/-", 1),
            t("a", "L2/R2", 25),
            t("c", "-/Rc", 40)
        ]
    );
    assert_eq!(d.late_drops(), 3);
}

#[test]
fn an_asymmetric_join_window_keeps_what_a_record_that_is_not_late_can_still_reach() {
    use eddy::topology::JoinWindows;
    let b = StreamsBuilder::new();
    let left = b.stream("left", StringSerde, StringSerde);
    let right = b.stream("right", StringSerde, StringSerde);
    // A right record joins left records up to 100 s before it, none after.
    let windows = JoinWindows {
        before: 0,
        after: 100_000,
        grace: 0,
    };
    left.join_stream(
        &right,
        JoinKind::Inner,
        windows,
        |l: Option<&String>, r: Option<&String>| format!("{}/{}", l.unwrap(), r.unwrap()),
        StreamJoined::with("j", StringSerde, StringSerde, StringSerde),
    )
    .to("out", StringSerde, StringSerde);
    let mut d = TopologyTestDriver::new(b.build().unwrap());
    let (l, r) = (
        TestTopic::new("left", StringSerde, StringSerde),
        TestTopic::new("right", StringSerde, StringSerde),
    );
    d.pipe(&l, "a".into(), "L".into(), 0).unwrap();
    d.pipe(&r, "a".into(), "R1".into(), 200_000).unwrap();
    // 100 s behind stream time: not late (max(before, after) + grace), and
    // it reaches back 100 s more, to L, which must still be kept.
    d.pipe(&r, "a".into(), "R2".into(), 100_000).unwrap();
    let out: Vec<_> = d
        .read(&TestTopic::new("out", StringSerde, StringSerde))
        .unwrap()
        .into_iter()
        .map(|r| (r.value, r.timestamp))
        .collect();
    assert_eq!(out, [("L/R2".to_string(), 100_000)]);
    assert_eq!(d.late_drops(), 0);
}

#[test]
fn a_batch_is_processed_in_timestamp_order_across_a_tasks_inputs() {
    use eddy::testing::BatchRecord;
    let build = || {
        let b = StreamsBuilder::new();
        let prices = b.table("prices", StringSerde, I64Serde, "prices");
        b.stream("orders", StringSerde, I64Serde)
            .join_table(&prices, |q: &i64, p: &i64| q * p)
            .to("totals", StringSerde, I64Serde);
        TopologyTestDriver::new(b.build().unwrap())
    };
    let record = |topic: &str, value: i64, timestamp| BatchRecord {
        topic: topic.into(),
        partition: None,
        key: Some(b"p1".to_vec()),
        value: Some(value.to_be_bytes().to_vec()),
        timestamp,
    };
    let totals = TestTopic::new("totals", StringSerde, I64Serde);
    // The price (t=10) is listed first but the order (t=5) happened first:
    // in event-time order the order finds no price yet.
    let mut d = build();
    d.pipe_batch(&[
        record("prices", 3, 10),
        record("orders", 2, 5),
        record("orders", 4, 11),
    ])
    .unwrap();
    assert_eq!(d.read_key_values(&totals).unwrap(), [kv("p1", 12)]);
    // Piped one by one, in the listed order, both orders see the price.
    let mut d = build();
    for r in [
        record("prices", 3, 10),
        record("orders", 2, 5),
        record("orders", 4, 11),
    ] {
        d.pipe_batch(&[r]).unwrap();
    }
    assert_eq!(
        d.read_key_values(&totals).unwrap(),
        [kv("p1", 6), kv("p1", 12)]
    );
}

#[test]
fn global_table_lookups_need_no_copartitioning() {
    use eddy::testing::DriverConfig;
    let b = StreamsBuilder::new();
    let products = b.global_table("products", StringSerde, StringSerde, "products");
    let orders = b.stream("orders", StringSerde, StringSerde);
    // Orders are keyed by order id; the product id is in the value.
    orders
        .join_global(
            &products,
            |_, product: &String| product.clone(),
            |p: &String, name: &String| format!("{p}={name}"),
        )
        .to("named", StringSerde, StringSerde);
    orders
        .left_join_global(
            &products,
            |_, product: &String| product.clone(),
            |p: &String, name: Option<&String>| format!("{p}={}", name.map_or("?", |n| n)),
        )
        .to("named-left", StringSerde, StringSerde);
    let config = DriverConfig::default()
        .partitions("orders", 4)
        .partitions("products", 3);
    let mut d = TopologyTestDriver::with_config(b.build().unwrap(), config);
    let products = TestTopic::new("products", StringSerde, Nullable(StringSerde));
    let orders = TestTopic::new("orders", StringSerde, StringSerde);
    d.pipe(&products, "p1".into(), Some("apple".into()), 1)
        .unwrap();
    d.pipe(&products, "p2".into(), Some("pear".into()), 2)
        .unwrap();
    for (order, product) in [("o1", "p1"), ("o2", "p2"), ("o3", "p9"), ("o4", "p1")] {
        d.pipe(&orders, order.into(), product.into(), 3).unwrap();
    }
    d.pipe(&products, "p1".into(), None, 4).unwrap();
    d.pipe(&orders, "o5".into(), "p1".into(), 5).unwrap();
    let named = TestTopic::new("named", StringSerde, StringSerde);
    let mut got = d.read_key_values(&named).unwrap();
    got.sort();
    assert_eq!(
        got,
        [
            kv("o1", "p1=apple".to_string()),
            kv("o2", "p2=pear".to_string()),
            kv("o4", "p1=apple".to_string())
        ]
    );
    let mut left = d
        .read_key_values(&TestTopic::new("named-left", StringSerde, StringSerde))
        .unwrap();
    left.sort();
    assert_eq!(
        left,
        [
            kv("o1", "p1=apple".to_string()),
            kv("o2", "p2=pear".to_string()),
            kv("o3", "p9=?".to_string()),
            kv("o4", "p1=apple".to_string()),
            kv("o5", "p1=?".to_string())
        ]
    );
}
