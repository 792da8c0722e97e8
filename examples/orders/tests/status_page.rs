//! A running `eddy demo` as an operator sees it: every metric the Grafana
//! dashboard (`deploy/grafana/eddy.json`) queries is exported on its
//! `/metrics`, and its status page, opened in headless Chromium (Debian's
//! `chromium`, driven over the DevTools protocol), draws every node of the
//! three services' topologies with counts that move as orders are posted.
//! The page's screenshot is saved to `docs/status-page.png`.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";

/// One HTTP/1.1 request; the status and the body.
fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let (status, _, body) = common::exchange(addr, method, path, "", body);
    (status, body)
}

/// The demo, serving once its first orders have their outcomes.
struct Demo {
    child: Child,
    http: SocketAddr,
}

impl Demo {
    fn start() -> Demo {
        let http = common::free_addr();
        let child = common::demo_command(
            http,
            &common::unique("status"),
            &["--count", "60", "--rate", "200"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let mut demo = Demo { child, http };
        let out = BufReader::new(demo.child.stdout.take().unwrap());
        let mut seen = Vec::new();
        for line in out.lines().map_while(Result::ok) {
            let summary = line.starts_with("  GET /orders/");
            seen.push(line);
            if summary {
                return demo;
            }
        }
        panic!("the demo ended without its summary: {seen:#?}");
    }

    fn get(&self, path: &str) -> String {
        let (status, body) = request(self.http, "GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    fn post_order(&self) {
        let order = json!({"user_id": "u-status", "items": [{"product_id": "product-1", "qty": 1, "unit_price": 300}]});
        let (status, body) = request(self.http, "POST", "/orders", Some(&order));
        assert_eq!(status, 202, "{body}");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The metric names the dashboard's queries read (a histogram's by its
/// family name).
fn dashboard_metrics(exported: &str) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/eddy.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    let templated = &dashboard["templating"]["list"][1]["definition"];
    exprs.push(templated.as_str().unwrap().to_owned());
    let mut names = BTreeSet::new();
    for expr in &exprs {
        for (i, _) in expr.match_indices("eddy_") {
            let name: String = expr[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| exported.contains(&format!("# TYPE {f} histogram")))
                .map_or(name.clone(), str::to_owned);
            names.insert(family);
        }
    }
    names
}

/// Whether `/metrics` text has a sample of `family`.
fn has_sample(exported: &str, family: &str) -> bool {
    exported.lines().any(|l| {
        !l.starts_with('#')
            && l.strip_prefix(family).is_some_and(|rest| {
                rest.starts_with('{') || rest.starts_with(' ') || rest.starts_with("_bucket{")
            })
    })
}

/// Headless Chromium driven over the DevTools protocol: one page, its
/// WebSocket, and the browser process (killed when dropped).
struct Chromium {
    process: Child,
    page: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
    profile: PathBuf,
}

impl Chromium {
    /// Starts Chromium headless with a fresh profile, as a closed network
    /// needs it (no background connections), and connects to its page.
    fn start() -> Chromium {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: scripts/setup.sh --kafka installs Debian's chromium"
        );
        let profile = std::env::temp_dir().join(common::unique("chromium-profile"));
        let mut process = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--window-size=1500,2300",
                "--remote-debugging-port=0",
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let stderr = BufReader::new(process.stderr.take().unwrap());
        let mut port = None;
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ws://") {
                port = url.split('/').next().map(str::to_owned);
                break;
            }
        }
        let devtools: SocketAddr = port.expect("Chromium's DevTools address").parse().unwrap();
        let targets = devtools_targets(devtools);
        let url = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_owned();
        let stream = TcpStream::connect(devtools).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let (page, _) = tungstenite::client(url.as_str(), stream).unwrap();
        Chromium {
            process,
            page,
            next_id: 0,
            profile,
        }
    }

    /// Calls `method` and waits for its result (events on the way are
    /// skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.page.send(tungstenite::Message::text(message)).unwrap();
        loop {
            let reply = self.page.read().unwrap();
            let Ok(text) = reply.to_text() else { continue };
            let reply: Value = serde_json::from_str(text).unwrap();
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
    }

    /// `expression` evaluated in the page, as JSON.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    fn wait_until(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.eval(expression) != json!(true) {
            assert!(Instant::now() < deadline, "{what}: not within 60 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    }
}

/// The DevTools targets (`GET /json/list`): its server keeps the
/// connection open, so the body is read by its length.
fn devtools_targets(devtools: SocketAddr) -> Value {
    let mut s = BufReader::new(TcpStream::connect(devtools).unwrap());
    write!(
        s.get_mut(),
        "GET /json/list HTTP/1.1\r\nHost: {devtools}\r\n\r\n"
    )
    .unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        s.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    s.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

#[test]
fn the_dashboard_reads_what_the_demo_exports_and_the_status_page_draws_it_live() {
    let demo = Demo::start();

    // Every metric the dashboard queries is exported. Consumer lag is a
    // sample of librdkafka's statistics, emitted every 5 s: a fast demo
    // prints its summary before the first, so wait two intervals for it.
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let exported = demo.get("/metrics");
        let wanted = dashboard_metrics(&exported);
        assert!(wanted.len() >= 25, "{wanted:?}");
        let missing: Vec<_> = wanted
            .iter()
            .filter(|m| !has_sample(&exported, m))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "queried but not exported: {missing:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // The status page draws every node of the four topologies.
    let status: Value = serde_json::from_str(&demo.get("/status.json")).unwrap();
    let apps = status["applications"].as_array().unwrap();
    assert_eq!(apps.len(), 4, "{status}");
    let mut nodes = BTreeSet::new();
    for app in apps {
        for sub in app["topology"]["subtopologies"].as_array().unwrap() {
            for node in sub["nodes"].as_array().unwrap() {
                nodes.insert(format!(
                    "{}/{}",
                    app["application"].as_str().unwrap(),
                    node["name"].as_str().unwrap()
                ));
            }
        }
    }
    let mut page = Chromium::start();
    page.navigate(&format!("http://{}/", demo.http));
    page.wait_until(
        "the topologies drawn",
        "document.querySelectorAll('section.app g.node').length > 0",
    );
    let drawn: BTreeSet<String> = serde_json::from_value(page.eval(
        "[...document.querySelectorAll('section.app g.node')].map(g => g.closest('section').dataset.application + '/' + g.dataset.node)",
    ))
    .unwrap();
    assert_eq!(drawn, nodes);
    let tables = page.eval("[...document.querySelectorAll('caption')].map(c => c.textContent)");
    for table in [
        "Tasks",
        "Lag per input partition",
        "Stores",
        "Saga instances",
    ] {
        assert!(
            tables.as_array().unwrap().iter().any(|t| t == table),
            "{table} in {tables}"
        );
    }

    // Its numbers follow the pipeline: orders posted now show up without
    // a reload.
    let records = "[...document.querySelectorAll('text.rate')].reduce((s, t) => s + Number(t.dataset.records), 0)";
    let before = page.eval(records).as_f64().unwrap();
    assert!(before > 0.0, "the first orders are counted");
    for _ in 0..5 {
        demo.post_order();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = page.eval(records).as_f64().unwrap();
        if now > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page stayed at {now} records"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let rates = page.eval("[...document.querySelectorAll('text.rate')].map(t => t.textContent)");
    assert!(
        rates
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.as_str().unwrap().contains("/s · ")),
        "{rates}"
    );

    let png = page.screenshot();
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/status-page.png");
    std::fs::write(docs, png).unwrap();
}
