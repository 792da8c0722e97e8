//! Interactive queries of a running worker's stores, through the library
//! and over HTTP.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{cluster, unique, wait_for};
use eddy::kafka::StreamsConfig;
use eddy::runtime::{KafkaStreams, Lookup};
use eddy::serde::{I64Serde, Nullable, StringSerde};
use eddy::topology::StreamsBuilder;

fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    (status, serde_json::from_str(body).unwrap())
}

#[test]
fn stores_answer_gets_and_ranges_for_the_partitions_held() {
    let c = cluster();
    let (input, output, app) = (unique("q-in"), unique("q-out"), unique("q"));
    c.create_topic(&input, 2);
    c.create_topic(&output, 2);
    if c.is_embedded() {
        c.create_topic(&format!("{app}-dlq"), 1);
        c.create_topic(&format!("{app}-counts-changelog"), 2);
        c.create_topic(&format!("{app}-members"), 1);
    }
    let records: Vec<_> = ["apple", "pear", "apple", "fig", "apple"]
        .iter()
        .map(|k| (Some(k.as_bytes().to_vec()), Some(b"x".to_vec())))
        .collect();
    c.produce(&input, &records);

    let b = StreamsBuilder::new();
    b.stream(&input, StringSerde, StringSerde)
        .group_by_key(StringSerde, StringSerde)
        .count("counts")
        .to_stream()
        .to(&output, StringSerde, Nullable(I64Serde));
    let config = StreamsConfig::new(&app)
        .bootstrap_servers(&c.bootstrap)
        .state_dir(std::env::temp_dir().join(unique("q-state")))
        .http_addr("127.0.0.1:0".parse().unwrap())
        .commit_interval(Duration::from_millis(200));
    let running = KafkaStreams::new(b.build().unwrap(), config)
        .queryable_store("counts", I64Serde)
        .start()
        .unwrap();
    let q = running.queries().clone();
    wait_for("all five records counted", Duration::from_secs(60), || {
        q.range::<String, i64>("counts", None, None, &StringSerde, &I64Serde)
            .is_ok_and(|r| r.entries.iter().map(|(_, n)| n).sum::<i64>() == 5)
    });
    let p_fig = eddy::kafka::partitioner::partition_for_key(b"fig", 2);
    assert_eq!(
        q.get("counts", &"fig".to_string(), &StringSerde, &I64Serde)
            .unwrap(),
        Lookup::Local {
            partition: p_fig,
            value: Some(1)
        }
    );
    assert!(matches!(
        q.get("counts", &"kiwi".to_string(), &StringSerde, &I64Serde)
            .unwrap(),
        Lookup::Local { value: None, .. }
    ));
    let all = q
        .range::<String, i64>("counts", None, None, &StringSerde, &I64Serde)
        .unwrap();
    let mut entries = all.entries.clone();
    entries.sort();
    assert_eq!(
        entries,
        [("apple".into(), 3), ("fig".into(), 1), ("pear".into(), 1)]
    );
    assert_eq!(all.held, [0, 1]);
    assert!(q
        .get("nope", &"a".to_string(), &StringSerde, &I64Serde)
        .is_err());

    let addr = running.http_addr().unwrap();
    let (status, body) = http_get(addr, "/stores/counts/apple");
    assert_eq!(status, 200);
    assert_eq!(body["value"], 3);
    assert_eq!(body["key"], "apple");
    let (status, body) = http_get(addr, "/stores/counts/kiwi");
    assert_eq!(status, 404);
    assert_eq!(body["error"], "no such key");
    let (status, body) = http_get(addr, "/stores/counts?from=b&to=g");
    assert_eq!(status, 200);
    assert_eq!(
        body["entries"],
        serde_json::json!([{ "key": "fig", "value": 1 }])
    );
    assert_eq!(body["held_partitions"], serde_json::json!([0, 1]));
    let (status, _) = http_get(addr, "/stores/unknown/apple");
    assert_eq!(status, 404);
    running.close().unwrap();
}

#[test]
fn joining_topics_with_different_partition_counts_is_refused_at_start() {
    let c = cluster();
    let (orders, prices, app) = (unique("co-orders"), unique("co-prices"), unique("co"));
    c.create_topic(&orders, 2);
    c.create_topic(&prices, 3);
    let b = StreamsBuilder::new();
    let table = b.table(&prices, StringSerde, I64Serde, "prices");
    b.stream(&orders, StringSerde, I64Serde)
        .join_table(&table, |q: &i64, p: &i64| q * p)
        .to(&orders, StringSerde, I64Serde);
    let config = StreamsConfig::new(&app)
        .bootstrap_servers(&c.bootstrap)
        .state_dir(std::env::temp_dir().join(unique("co-state")));
    let err = KafkaStreams::new(b.build().unwrap(), config)
        .start()
        .err()
        .expect("refused");
    let message = err.to_string();
    assert!(
        message.contains(&format!("{prices:?} (3 partitions)"))
            && message.contains(&format!("{orders:?} (2 partitions)")),
        "{message}"
    );
}

#[test]
fn a_global_table_is_restored_in_full_before_processing_starts() {
    let c = cluster();
    let (orders, products, output, app) = (
        unique("g-orders"),
        unique("g-products"),
        unique("g-out"),
        unique("g"),
    );
    c.create_topic(&orders, 2);
    c.create_topic(&products, 3);
    c.create_topic(&output, 2);
    if c.is_embedded() {
        c.create_topic(&format!("{app}-dlq"), 1);
        c.create_topic(&format!("{app}-members"), 1);
    }
    let catalogue: Vec<_> = (0..30)
        .map(|i| {
            (
                Some(format!("p{i}").into_bytes()),
                Some(format!("name{i}").into_bytes()),
            )
        })
        .collect();
    c.produce(&products, &catalogue);
    let wanted: Vec<_> = (0..30)
        .map(|i| {
            (
                Some(format!("o{i}").into_bytes()),
                Some(format!("p{i}").into_bytes()),
            )
        })
        .collect();
    c.produce(&orders, &wanted);
    let b = StreamsBuilder::new();
    let table = b.global_table(&products, StringSerde, StringSerde, "products");
    b.stream(&orders, StringSerde, StringSerde)
        .join_global(
            &table,
            |_, p: &String| p.clone(),
            |p: &String, n: &String| format!("{p}={n}"),
        )
        .to(&output, StringSerde, StringSerde);
    let config = StreamsConfig::new(&app)
        .bootstrap_servers(&c.bootstrap)
        .commit_interval(Duration::from_millis(200));
    let running = KafkaStreams::new(b.build().unwrap(), config)
        .start()
        .unwrap();
    // Every order finds its product: the table was complete before the
    // first order was processed, whatever partitions it came from.
    let out = c.consume_count(&output, 30, Duration::from_secs(60), Duration::from_secs(1));
    let mut got: Vec<String> = out.iter().map(|r| r.value_str()).collect();
    got.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("p{i}=name{i}")).collect();
    want.sort();
    assert_eq!(got, want);
    running.close().unwrap();
}
