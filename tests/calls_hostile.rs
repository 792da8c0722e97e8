//! A call operator in a running worker against a hostile service: answers
//! of malformed JSON, a redirect loop, a 10 MB body and no answer at all
//! each fail their own record with a clear reason in the dead-letter topic,
//! while the records of other keys are answered at once, not after the
//! hung calls' timeouts.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use eddy::config::{Overrides, Pipeline, Registry};
use eddy::runtime::dlq_headers;
use serde_json::Value;

use common::{cluster, unique};

/// The paths, by what they do: `ok` answers JSON at once.
const PATHS: [&str; 5] = ["ok", "bad", "redirect", "huge", "never"];

fn service() -> std::net::SocketAddr {
    let router = Router::new()
        .route("/ok", post(|| async { r#"{"fine": true}"# }))
        .route("/bad", post(|| async { "{\"fine\": tru" }))
        .route(
            "/redirect",
            post(|| async {
                (
                    axum::http::StatusCode::TEMPORARY_REDIRECT,
                    [("location", "/redirect")],
                    "",
                )
            }),
        )
        .route("/huge", post(|| async { "x".repeat(10 << 20) }))
        .route(
            "/never",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                ""
            }),
        );
    common::serve(router)
}

const FILE: &str = r#"
[application]
id = "hostile-calls"
commit_interval = "200ms"

[vars]
base = "http://unset"

[topics.in]
[topics.out]

[nodes.in]
op = "source"
topic = "in"

[nodes.called]
op = "call"
input = "in"
url = "vars.base + '/' + value.path"
body = "value"
response = "{'key': key, 'fine': body.fine}"
timeout = "3s"
attempts = 2
backoff = "10ms"
max_answer_bytes = 1048576
breaker_failures = 1000

[nodes.to-out]
op = "sink"
input = "called"
topic = "out"
"#;

#[test]
fn hostile_answers_fail_their_own_records_and_stall_no_other_key() {
    let c = cluster();
    let u = unique("hostile-calls");
    for t in ["in", "out"] {
        c.create_topic(&format!("{t}-{u}"), 2);
    }
    // Four keys per path, interleaved.
    let records: Vec<(String, String, i64)> = (0..20)
        .map(|i| {
            let path = PATHS[i % PATHS.len()];
            (format!("k{i}"), format!(r#"{{"path": "{path}"}}"#), 1)
        })
        .collect();
    let addr = service();
    let mut overrides = Overrides {
        suffix: Some(u.clone()),
        ..Overrides::default()
    };
    overrides
        .vars
        .insert("base".into(), format!("http://{addr}").into());
    let mut p = Pipeline::parse_with(
        FILE,
        Path::new("hostile.toml"),
        &Registry::new(),
        &overrides,
    )
    .unwrap();
    if !c.is_embedded() {
        p.config.bootstrap_servers = Some(c.bootstrap.clone());
    }
    p.config.state_dir = std::env::temp_dir().join(&u);
    p.config.embedded_partitions = 2;
    let mut streams = p.into_streams();
    if let Some(e) = c.embedded() {
        streams = streams.embedded_cluster(e);
    }
    let w = streams.start().unwrap();
    let mut out = c.reader(&format!("out-{u}"));
    let mut dead = c.reader(&format!("hostile-calls-{u}-dlq"));
    c.produce_at(&format!("in-{u}"), &records);
    let sent = Instant::now();
    assert!(out.read_until(Duration::from_secs(60), |r| r.len() >= 4));
    // The good keys are answered while the hung calls still wait: a
    // never-answering call takes two tries of 3 s.
    let answered = sent.elapsed();
    dead.read_until(Duration::ZERO, |_| false);
    let hung = |r: &eddy::testing::Consumed| {
        r.header(dlq_headers::MESSAGE)
            .is_some_and(|m| m.contains("timeout"))
    };
    assert!(
        !dead.records.iter().any(hung),
        "a timed-out call came before the good keys' answers ({answered:?})"
    );
    let mut got: Vec<Value> = out
        .records
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap()).unwrap())
        .collect();
    got.sort_by_key(|v| v["key"].as_str().unwrap()[1..].parse::<u32>().unwrap());
    let keys: Vec<&str> = got.iter().map(|v| v["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["k0", "k5", "k10", "k15"]);
    assert!(got.iter().all(|v| v["fine"] == true));
    // Every other record dead-lettered once, with its reason.
    assert!(dead.read_until(Duration::from_secs(60), |r| r.len() >= 16));
    dead.read_until(Duration::from_secs(1), |_| false);
    let reasons: BTreeMap<String, String> = dead
        .records
        .iter()
        .map(|r| {
            assert_eq!(r.header(dlq_headers::EXCEPTION).as_deref(), Some("call"));
            (
                String::from_utf8(r.key.clone().unwrap()).unwrap(),
                r.header(dlq_headers::MESSAGE).unwrap(),
            )
        })
        .collect();
    assert_eq!(dead.records.len(), 16);
    for (i, path) in PATHS.iter().enumerate().skip(1) {
        let expected = match *path {
            "bad" => "call called failed: bad_answer: answer 200: the answer is not JSON: EOF while parsing a value at line 1 column 12",
            "redirect" => "call called failed: redirect: a redirect (307 Temporary Redirect) to /redirect, not followed",
            "huge" => "call called failed: too_large: an answer over 1048576 bytes",
            _ => "call called failed: timeout: no answer within 3s (after 2 tries)",
        };
        for k in (i..20).step_by(PATHS.len()) {
            assert_eq!(reasons[&format!("k{k}")], expected, "k{k}");
        }
    }
    assert_eq!(out.records.len(), 4);
    w.close().unwrap();
}
