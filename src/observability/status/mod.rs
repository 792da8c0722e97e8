//! The status page at `/` and the numbers it draws, `/status.json`: the
//! topologies of the workers reporting to a [`Metrics`], with live counts
//! per node, tasks, lag per input partition, stores and restores. The page
//! is one HTML file with its script and style inline, served from the
//! binary: no build step, nothing fetched from elsewhere.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use prometheus::proto::{Metric, MetricFamily};
use serde_json::{json, Value};

use super::Metrics;

/// The page: markup, style and script in one file.
const PAGE: &str = include_str!("page.html");

/// `GET /` (the page) and `GET /status.json` (its numbers).
pub(crate) fn routes(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/status.json",
            get(move || {
                let metrics = metrics.clone();
                async move { Json(status(&metrics)) }
            }),
        )
}

/// The label `name` of `m`, or "".
fn label<'a>(m: &'a Metric, name: &str) -> &'a str {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map_or("", |l| l.value())
}

/// A counter's, gauge's or histogram's count value.
fn value(m: &Metric) -> f64 {
    m.get_counter().get_value()
        + m.get_gauge().get_value()
        + m.get_histogram().get_sample_count() as f64
}

/// The series of the family `name`.
fn family<'a>(families: &'a [MetricFamily], name: &str) -> &'a [Metric] {
    families
        .iter()
        .find(|f| f.name() == name)
        .map_or(&[], |f| f.get_metric())
}

/// Sums `name`'s series by the values of the labels `keys` (the first
/// being the application).
fn sums(families: &[MetricFamily], name: &str, keys: &[&str]) -> BTreeMap<Vec<String>, f64> {
    let mut out = BTreeMap::new();
    for m in family(families, name) {
        let key: Vec<String> = keys.iter().map(|k| label(m, k).to_owned()).collect();
        *out.entry(key).or_insert(0.0) += value(m);
    }
    out
}

/// Rows of `by` (keyed by application first) for `application`, each
/// with its other keys named `keys[1..]` and its value named `field`.
fn rows(
    by: &BTreeMap<Vec<String>, f64>,
    application: &str,
    keys: &[&str],
    field: &str,
) -> Vec<Value> {
    by.iter()
        .filter(|(k, _)| k[0] == application)
        .map(|(k, v)| {
            let mut row = serde_json::Map::new();
            for (name, value) in keys[1..].iter().zip(&k[1..]) {
                row.insert((*name).to_owned(), json!(value));
            }
            row.insert(field.to_owned(), json!(v));
            Value::Object(row)
        })
        .collect()
}

/// Everything the page shows, now.
pub(crate) fn status(metrics: &Metrics) -> Value {
    let families = metrics.registry().gather();
    let f = &families[..];
    let node_records = sums(f, "eddy_node_records_total", &["application", "node"]);
    let node_seconds: BTreeMap<Vec<String>, (f64, u64)> = {
        let mut out = BTreeMap::new();
        for m in family(f, "eddy_node_process_seconds") {
            let key = vec![
                label(m, "application").to_owned(),
                label(m, "node").to_owned(),
            ];
            let e: &mut (f64, u64) = out.entry(key).or_default();
            e.0 += m.get_histogram().get_sample_sum();
            e.1 += m.get_histogram().get_sample_count();
        }
        out
    };
    let tasks = sums(
        f,
        "eddy_task_records_processed_total",
        &["application", "task"],
    );
    let lag = sums(
        f,
        "eddy_consumer_lag",
        &["application", "topic", "partition"],
    );
    let store_keys = ["application", "task", "store"];
    let keys = sums(f, "eddy_store_estimated_keys", &store_keys);
    let bytes = sums(f, "eddy_store_estimated_bytes", &store_keys);
    let restored = sums(f, "eddy_store_restored_records_total", &store_keys);
    let remaining = sums(f, "eddy_store_restore_remaining_records", &store_keys);
    let threads = sums(
        f,
        "eddy_thread_records_processed_total",
        &["application", "thread"],
    );
    let sagas = sums(f, "eddy_saga_instances", &["application", "saga", "state"]);
    let topologies = metrics.topologies();
    let applications: Vec<Value> = topologies
        .into_iter()
        .map(|(app, mut topology)| {
            for sub in topology["subtopologies"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                for node in sub["nodes"].as_array_mut().into_iter().flatten() {
                    let key = vec![app.clone(), node["name"].as_str().unwrap_or("").to_owned()];
                    node["records"] = json!(node_records.get(&key).copied().unwrap_or(0.0));
                    if let Some((sum, n)) = node_seconds.get(&key).filter(|(_, n)| *n > 0) {
                        node["latency_us"] = json!(sum / *n as f64 * 1e6);
                    }
                }
            }
            let stores: Vec<Value> = keys
                .iter()
                .filter(|(k, _)| k[0] == app)
                .map(|(k, n)| {
                    json!({
                        "task": k[1],
                        "store": k[2],
                        "keys": n,
                        "bytes": bytes.get(k).copied().unwrap_or(0.0),
                        "restored": restored.get(k).copied().unwrap_or(0.0),
                        "remaining": remaining.get(k).copied().unwrap_or(0.0),
                    })
                })
                .collect();
            json!({
                "application": app,
                "topology": topology,
                "tasks": rows(&tasks, &app, &["application", "task"], "processed"),
                "threads": rows(&threads, &app, &["application", "thread"], "processed"),
                "lag": rows(&lag, &app, &["application", "topic", "partition"], "lag"),
                "stores": stores,
                "sagas": rows(&sagas, &app, &["application", "saga", "state"], "instances"),
            })
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({ "time_ms": now, "applications": applications })
}
