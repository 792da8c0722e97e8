//! `eddy top`: the status page's live numbers in the terminal, read from a
//! running worker's `/status.json`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::CliError;
use crate::config::{Overrides, Pipeline, Registry};

/// Arguments of `top`.
#[derive(clap::Args)]
pub struct TopArgs {
    /// The application's topology file: the worker is asked at its
    /// `application.http_port` on this machine.
    #[arg(long, required_unless_present = "http")]
    config: Option<PathBuf>,
    /// The worker's HTTP address instead (HOST:PORT).
    #[arg(long, conflicts_with = "config")]
    http: Option<String>,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1)]
    interval: u64,
    /// Prints one report (rates over one interval) and exits.
    #[arg(long)]
    once: bool,
}

/// How long a request to the worker may take.
const TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn run(args: TopArgs, registry: &Registry) -> Result<(), CliError> {
    let addr = address(&args, registry)?;
    let interval = Duration::from_secs(args.interval.max(1));
    let mut previous = fetch(addr)?;
    loop {
        std::thread::sleep(interval);
        let now = fetch(addr)?;
        let report = render(addr, &previous, &now);
        let mut out = std::io::stdout().lock();
        if args.once {
            let _ = out.write_all(report.as_bytes());
            return Ok(());
        }
        // Clears the screen and homes the cursor, then the report.
        let _ = write!(out, "\x1b[2J\x1b[H{report}");
        let _ = out.flush();
        previous = now;
    }
}

/// The worker's address: `--http`, or the file's HTTP port on this host.
fn address(args: &TopArgs, registry: &Registry) -> Result<SocketAddr, CliError> {
    if let Some(http) = &args.http {
        return http
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| CliError::Usage(format!("--http {http}: not a HOST:PORT address")));
    }
    let file = args
        .config
        .as_ref()
        .expect("clap requires --config or --http");
    let p = Pipeline::load_with(file, registry, &Overrides::default())?;
    let port = p.config.http_addr.map(|a| a.port()).ok_or_else(|| {
        CliError::Usage(format!(
            "{}: application.http_port is not set; give the worker's --http address",
            file.display()
        ))
    })?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// `GET /status.json` of the worker at `addr`.
fn fetch(addr: SocketAddr) -> Result<Value, CliError> {
    let failed =
        |e: &dyn std::fmt::Display| CliError::Usage(format!("http://{addr}/status.json: {e}"));
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| failed(&e))?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(|e| failed(&e))?;
    write!(
        s,
        "GET /status.json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| failed(&e))?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).map_err(|e| failed(&e))?;
    let reply = String::from_utf8_lossy(&reply);
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .ok_or_else(|| failed(&"no HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or_default();
        return Err(failed(&status));
    }
    serde_json::from_str(body).map_err(|e| failed(&e))
}

/// A number for a narrow column.
fn num(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.1}G", x / 1e9),
        x if x >= 1e6 => format!("{:.1}M", x / 1e6),
        x if x >= 1e4 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

/// The elements of the array `v[key]` (none if it is not one).
fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v[key].as_array().into_iter().flatten()
}

/// The report of `now`, rates since `before`.
fn render(addr: SocketAddr, before: &Value, now: &Value) -> String {
    let seconds = (now["time_ms"].as_f64().unwrap_or(0.0)
        - before["time_ms"].as_f64().unwrap_or(0.0))
        / 1000.0;
    let rate = |now: f64, then: Option<f64>| match then {
        Some(t) if seconds > 0.0 => ((now - t) / seconds).max(0.0),
        _ => 0.0,
    };
    let mut out = String::new();
    let _ = writeln!(out, "eddy top  http://{addr}/");
    for app in items(now, "applications") {
        let name = app["application"].as_str().unwrap_or_default();
        let old = items(before, "applications").find(|a| a["application"] == name);
        let lag: f64 = items(app, "lag").filter_map(|l| l["lag"].as_f64()).sum();
        let tasks = items(app, "tasks").count();
        let _ = writeln!(out, "\n{name}  {tasks} tasks  lag {}", num(lag));
        let _ = writeln!(
            out,
            "  {:<40} {:>10} {:>10} {:>9}",
            "node", "records/s", "total", "µs/record"
        );
        for sub in items(&app["topology"], "subtopologies") {
            for node in items(sub, "nodes") {
                let node_name = node["name"].as_str().unwrap_or_default();
                let total = node["records"].as_f64().unwrap_or(0.0);
                let then = old.and_then(|a| {
                    items(&a["topology"], "subtopologies")
                        .flat_map(|s| items(s, "nodes"))
                        .find(|n| n["name"] == node_name)
                        .and_then(|n| n["records"].as_f64())
                });
                let latency = node["latency_us"]
                    .as_f64()
                    .map_or_else(|| "-".to_owned(), |us| format!("{us:.1}"));
                let _ = writeln!(
                    out,
                    "  {:<40} {:>10} {:>10} {:>9}",
                    node_name,
                    num(rate(total, then)),
                    num(total),
                    latency
                );
            }
        }
        let stores: Vec<&Value> = items(app, "stores").collect();
        if !stores.is_empty() {
            let _ = writeln!(
                out,
                "  {:<32} {:>6} {:>10} {:>10} {:>8}",
                "store", "task", "keys", "bytes", "restored"
            );
            for s in stores {
                let (restored, left) = (
                    s["restored"].as_f64().unwrap_or(0.0),
                    s["remaining"].as_f64().unwrap_or(0.0),
                );
                let done = if restored + left > 0.0 {
                    restored / (restored + left) * 100.0
                } else {
                    100.0
                };
                let _ = writeln!(
                    out,
                    "  {:<32} {:>6} {:>10} {:>10} {:>7.0}%",
                    s["store"].as_str().unwrap_or_default(),
                    s["task"].as_str().unwrap_or_default(),
                    num(s["keys"].as_f64().unwrap_or(0.0)),
                    num(s["bytes"].as_f64().unwrap_or(0.0)),
                    done
                );
            }
        }
        for s in items(app, "sagas") {
            let _ = writeln!(
                out,
                "  saga {} {:<20} {:>10}",
                s["saga"].as_str().unwrap_or_default(),
                s["state"].as_str().unwrap_or_default(),
                num(s["instances"].as_f64().unwrap_or(0.0))
            );
        }
    }
    out
}
