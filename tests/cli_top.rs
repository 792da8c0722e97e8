//! `eddy top --config FILE`: a running worker's live numbers in the
//! terminal, asked at the file's HTTP port: every node with the records it
//! took in (a file's sink is drawn under its generated name).

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cluster, unique};
use eddy::testing::free_addr;

const RECORDS: usize = 50;

/// `eddy top --config file --once`: node name -> (records/s, total).
fn top(file: &str) -> (String, HashMap<String, (String, String)>) {
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["top", "--config", file, "--once"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes = text
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            match cols[..] {
                [name, rate, total, _] if name != "node" && l.starts_with("  ") => {
                    Some((name.to_owned(), (rate.to_owned(), total.to_owned())))
                }
                _ => None,
            }
        })
        .collect();
    (text, nodes)
}

#[test]
fn top_shows_every_node_of_a_running_worker_with_its_counts() {
    let c = cluster();
    let u = unique("top");
    let (input, output) = (format!("in-{u}"), format!("out-{u}"));
    c.create_topic(&input, 2);
    c.create_topic(&output, 2);
    c.create_topic(&format!("top-{u}-dlq"), 1);
    let port = free_addr().port();
    let file = std::env::temp_dir().join(format!("{u}.toml"));
    std::fs::write(
        &file,
        format!(
            r#"
[application]
id = "top"
http_port = {port}
commit_interval = "200ms"

[topics.in]

[topics.out]

[nodes.in]
op = "source"
topic = "in"

[nodes.double]
op = "map"
input = "in"
value = "value.qty * 2"

[nodes.out]
op = "sink"
input = "double"
topic = "out"
"#
        ),
    )
    .unwrap();
    let mut worker = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["run", "--config", file.to_str().unwrap()])
        .args(["--brokers", &c.bootstrap, "--suffix", &u])
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let records: Vec<_> = (0..RECORDS)
        .map(|i| {
            (
                Some(format!("k{i}").into_bytes()),
                Some(format!(r#"{{"qty":{i}}}"#).into_bytes()),
            )
        })
        .collect();
    c.produce(&input, &records);
    let out = c.consume_count(
        &output,
        RECORDS,
        Duration::from_secs(60),
        Duration::from_millis(300),
    );
    assert_eq!(out.len(), RECORDS);

    let file = file.to_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (text, nodes) = loop {
        let (text, nodes) = top(file);
        let sink = nodes.iter().find(|(n, _)| n.starts_with("KSTREAM-SINK-"));
        if sink.is_some_and(|(_, n)| n.1 == RECORDS.to_string()) {
            break (text, nodes);
        }
        assert!(Instant::now() < deadline, "{text}");
    };
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(text.contains(&format!("top-{u}  2 tasks")), "{text}");
    assert_eq!(nodes.len(), 3, "{text}");
    assert!(
        nodes.contains_key("in") && nodes.contains_key("double"),
        "{text}"
    );
    for (node, (rate, total)) in &nodes {
        assert_eq!(*total, RECORDS.to_string(), "{node}: {text}");
        assert_eq!(rate, "0", "idle: no records per second: {text}");
    }
}
