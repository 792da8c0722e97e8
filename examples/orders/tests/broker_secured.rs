//! The order pipeline on the secured broker (`scripts/kafka/start.sh
//! --secured`, named by `EDDY_TEST_SECURED_BOOTSTRAP` and
//! `EDDY_TEST_SECURED_DIR`): each of the three services runs as a worker
//! process with its own SCRAM user over TLS and only the ACLs `eddy acls`
//! gives it, and every order gets its exact outcome; a service whose user
//! may not read its input, or may not write its output, stops with one
//! error naming the principal and the topic.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{config_file, unique, TestCluster};
use serde_json::{json, Value};

const TOPICS: [&str; 5] = ["orders", "payments", "inventory", "stock", "order-outcomes"];
const PRODUCTS: u64 = 5;
const ORDERS: u64 = 30;
/// Orders above this amount (cents) are declined by the payment service.
const AMOUNT_LIMIT: i64 = 20_000;
const PASSWORD_ENV: &str = "EDDY_TEST_KAFKA_PASSWORD";

/// The URL of this binary's gateway: payments over [`AMOUNT_LIMIT`]
/// declined, no others.
fn gateway_url() -> String {
    use eddy_orders::gateway::{Gateway, GatewayConfig};
    static GATEWAY: std::sync::OnceLock<Gateway> = std::sync::OnceLock::new();
    let g = GATEWAY.get_or_init(|| {
        let config = GatewayConfig {
            amount_limit: AMOUNT_LIMIT,
            ..GatewayConfig::default()
        };
        Gateway::start(config, "127.0.0.1:0".parse().unwrap()).unwrap()
    });
    format!("http://{}", g.addr())
}

/// `config/<file>` written to `dir` to run as `user`: payments through a
/// gateway that declines by amount only (no random share), TLS verified by the secured broker's CA,
/// SCRAM with the password in `PASSWORD_ENV`; `id`, if given, replaces the
/// application id.
fn secured_copy(c: &TestCluster, dir: &Path, file: &str, user: &str, id: Option<&str>) -> PathBuf {
    let mut text = std::fs::read_to_string(config_file(file)).unwrap().replace(
        "gateway_url = \"http://127.0.0.1:8181\"",
        &format!("gateway_url = {:?}", gateway_url()),
    );
    if let Some(id) = id {
        let line = text.lines().find(|l| l.starts_with("id = ")).unwrap();
        text = text.replace(line, &format!("id = {id:?}"));
    }
    let ca = c.secured_dir().join("tls/ca.pem");
    text.push_str(&format!(
        "\n[kafka.tls]\nca_file = {:?}\n\n[kafka.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = {user:?}\npassword_env = {PASSWORD_ENV:?}\n",
        ca.display().to_string()
    ));
    let schemas = dir.join("schemas");
    std::fs::create_dir_all(&schemas).unwrap();
    for entry in std::fs::read_dir(config_file("schemas")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), schemas.join(entry.file_name())).unwrap();
    }
    let path = dir.join(format!("{user}-{file}"));
    std::fs::write(&path, text).unwrap();
    path
}

fn eddy_orders(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eddy-orders"));
    command.args(args).env("RUST_LOG", "warn");
    command
}

/// `eddy-orders acls` for `file` (as the admin user with `--apply`).
fn acls(c: &TestCluster, file: &Path, suffix: &str, extra: &[&str]) -> Output {
    eddy_orders(&[
        "acls",
        "--config",
        file.to_str().unwrap(),
        "--suffix",
        suffix,
    ])
    .args(["--brokers", &c.bootstrap])
    .args(extra)
    .env("EDDY_ADMIN_PASSWORD", c.password("admin"))
    .output()
    .unwrap()
}

/// A worker process of `file` as `user`.
fn run(c: &TestCluster, file: &Path, suffix: &str, user: &str, state: &Path) -> Child {
    eddy_orders(&[
        "run",
        "--config",
        file.to_str().unwrap(),
        "--suffix",
        suffix,
    ])
    .args(["--brokers", &c.bootstrap, "--commit-interval-ms", "200"])
    .args(["--state-dir", state.to_str().unwrap()])
    .env(PASSWORD_ENV, c.password(user))
    .env(eddy_orders::PII_KEY_ENV, common::PII_KEY)
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

/// Waits for a worker to stop by itself: its stderr.
fn stopped(mut child: Child, within: Duration) -> String {
    let deadline = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("the worker did not stop within {within:?}:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

/// The lines of a worker's stderr that report an error.
fn error_lines(err: &str) -> Vec<&str> {
    err.lines().filter(|l| l.contains("error")).collect()
}

fn secured() -> Option<TestCluster> {
    let c = TestCluster::secured_from_env();
    if c.is_none() {
        eprintln!("skipped: EDDY_TEST_SECURED_BOOTSTRAP names no secured broker");
    }
    c
}

/// Creates the pipeline's topics (suffixed) as the admin user, seeds stock.
fn topics(c: &TestCluster, u: &str) {
    for t in TOPICS {
        c.create_topic(&format!("{t}-{u}"), 3);
    }
    let stock: Vec<_> = (0..PRODUCTS)
        .map(|p| {
            let id = format!("product-{p}");
            let v = json!({"product_id": id, "qty": 1_000_000});
            (Some(id.into_bytes()), Some(v.to_string().into_bytes()))
        })
        .collect();
    c.produce(&format!("stock-{u}"), &stock);
}

#[test]
fn each_service_runs_with_its_own_user_and_only_the_acls_eddy_gives_it() {
    let Some(c) = secured() else { return };
    let u = unique("sec");
    let dir = std::env::temp_dir().join(&u);
    topics(&c, &u);
    let services = [
        ("payment.toml", "payment"),
        ("inventory.toml", "inventory"),
        ("order-saga.toml", "orders"),
    ];
    let files: Vec<PathBuf> = services
        .iter()
        .map(|(file, user)| secured_copy(&c, &dir, file, user, None))
        .collect();

    // What `eddy acls` prints for the payment service: its input, its
    // output, its internal topics, its group and its restore consumers'.
    let printed = acls(&c, &files[0], &u, &[]);
    let printed = String::from_utf8(printed.stdout).unwrap();
    let principal = "--allow-principal User:payment";
    for line in [
        format!("{principal} --topic orders-{u} --operation Read --operation Describe"),
        format!("{principal} --topic payments-{u} --operation Write --operation Describe --operation DescribeConfigs"),
        format!("{principal} --topic payment-service-{u}- --resource-pattern-type prefixed --operation Create --operation Read --operation Write --operation Describe --operation DescribeConfigs"),
        format!("{principal} --group payment-service-{u} --operation Read --operation Describe"),
        format!("{principal} --group payment-service-{u}- --resource-pattern-type prefixed --operation Read --operation Describe"),
    ] {
        assert!(printed.lines().any(|l| l.ends_with(&line)), "{line}\nnot in:\n{printed}");
    }
    assert_eq!(printed.lines().count(), 5, "{printed}");

    for file in &files {
        let applied = acls(&c, file, &u, &["--apply", "--admin-user", "admin"]);
        assert!(applied.status.success(), "{applied:?}");
    }
    let workers: Vec<Child> = files
        .iter()
        .zip(services)
        .map(|(file, (_, user))| run(&c, file, &u, user, &dir.join(format!("state-{user}"))))
        .collect();

    let base = 1_700_000_000_000;
    let mut expected = BTreeMap::new();
    let mut orders = Vec::new();
    for i in 0..ORDERS {
        let o = eddy_orders::order_created(11, i, PRODUCTS, base + i as i64);
        let id = o["order_id"].as_str().unwrap().to_owned();
        let outcome = match common::amount(&o) > AMOUNT_LIMIT {
            true => json!({"type": "order_cancelled", "order_id": id, "reason": "payment_failed"}),
            false => json!({"type": "order_completed", "order_id": id}),
        };
        expected.insert(id.clone(), vec![outcome]);
        orders.push((Some(id.into_bytes()), Some(o.to_string().into_bytes())));
    }
    c.produce(&format!("orders-{u}"), &orders);
    let outcomes = c.consume_count(
        &format!("order-outcomes-{u}"),
        ORDERS as usize,
        Duration::from_secs(180),
        Duration::from_secs(3),
    );
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let mut got: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in &outcomes {
        let v: Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        got.entry(String::from_utf8(r.key.clone().unwrap()).unwrap())
            .or_default()
            .push(v);
    }
    assert_eq!(got, expected);
    let kinds: Vec<bool> = expected
        .values()
        .map(|v| v[0]["type"] == "order_completed")
        .collect();
    assert!(
        kinds.contains(&true) && kinds.contains(&false),
        "both outcomes occur"
    );
}

#[test]
fn a_service_not_granted_its_topics_stops_naming_the_topic_and_the_principal() {
    let Some(c) = secured() else { return };
    let u = unique("denied");
    let dir = std::env::temp_dir().join(&u);
    topics(&c, &u);

    // alice has no ACLs: the payment service may not read its input.
    let file = secured_copy(&c, &dir, "payment.toml", "alice", None);
    let err = stopped(
        run(&c, &file, &u, "alice", &dir.join("a")),
        Duration::from_secs(60),
    );
    let expected = format!(
        "eddy-orders: error: not authorized: User:alice may not read topic \"orders-{u}\" (grant what `eddy acls` prints for this application)"
    );
    assert_eq!(error_lines(&err), [expected]);

    // bob has the inventory service's ACLs (it reads orders and payments,
    // writes inventory) and runs the payment service under the inventory
    // service's id: it reads orders, and may not write payments.
    let inventory = secured_copy(&c, &dir, "inventory.toml", "bob", None);
    let applied = acls(&c, &inventory, &u, &["--apply", "--admin-user", "admin"]);
    assert!(applied.status.success(), "{applied:?}");
    let file = secured_copy(&c, &dir, "payment.toml", "bob", Some("inventory-service"));
    let worker = run(&c, &file, &u, "bob", &dir.join("b"));
    let order = eddy_orders::order_created(12, 0, PRODUCTS, 1_700_000_000_000);
    let id = order["order_id"].as_str().unwrap().to_owned();
    c.produce(
        &format!("orders-{u}"),
        &[(Some(id.into_bytes()), Some(order.to_string().into_bytes()))],
    );
    let err = stopped(worker, Duration::from_secs(60));
    let expected = format!(
        "eddy-orders: error: not authorized: User:bob may not write topic \"payments-{u}\" (grant what `eddy acls` prints for this application)"
    );
    assert_eq!(error_lines(&err), [expected]);
}
