//! From a parsed topology file to the builder's graph: settings, schemas,
//! node order (refusing unknown inputs and cycles), then one builder call
//! per node.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

mod call;
mod nodes;
mod secrets;
mod stateful;

use nodes::Compiler;
pub(in crate::config) use secrets::Secrets;

use super::cost::Budget;
use super::model::{self, File, Node, OnError};
use super::read::{read_text, MAX_FILE_BYTES};
use super::registry::Registry;
use crate::kafka::StreamsConfig;
use crate::observability::{traces_url, SpanExportError};
use crate::runtime::{ErrorPolicy, TaskIdle};
use crate::serde::JsonSerde;
use crate::topology::{KStream, KTable, StreamsBuilder, Topology};

/// A refusal: (field path, reason).
pub(super) type Fail = (String, String);

/// What a file compiles to.
pub(super) type Compiled = (
    Topology,
    StreamsConfig,
    Vec<String>,
    Vec<(String, Option<String>)>,
);

pub(super) fn fail<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, Fail> {
    Err((field.into(), reason.into()))
}

fn duration(field: &str, text: &str) -> Result<Duration, Fail> {
    humantime::parse_duration(text)
        .map_err(|e| (field.to_owned(), format!("bad duration {text:?}: {e}")))
}

/// The `[expressions]` budget.
fn budget(e: &model::Expressions) -> Result<Budget, Fail> {
    let mut budget = Budget::default();
    if let Some(n) = e.max_nesting {
        budget.max_nesting = n;
    }
    if let Some(n) = e.max_steps {
        if n == 0 {
            return fail("expressions.max_steps", "must be at least 1");
        }
        budget.max_steps = n;
    }
    if let Some(t) = &e.timeout {
        let t = duration("expressions.timeout", t)?;
        if t.is_zero() {
            return fail("expressions.timeout", "must be more than 0");
        }
        budget.timeout = t;
    }
    Ok(budget)
}

type JsonStream = KStream<String, Value>;
type JsonTable = KTable<String, Value>;

/// A node's output.
#[derive(Clone)]
enum Out {
    Stream(JsonStream),
    Table(JsonTable),
}

fn json() -> JsonSerde<Value> {
    JsonSerde::new()
}

impl Out {
    fn stream(&self) -> JsonStream {
        match self {
            Out::Stream(s) => s.clone(),
            Out::Table(t) => t.to_stream().flat_map_values(|v: Option<Value>| v),
        }
    }
}

/// A topic declared under `[topics]`.
struct Topic {
    name: String,
    schema: Option<(Arc<jsonschema::Validator>, String)>,
    timestamp_field: Option<String>,
}

pub(super) fn compile(
    file: &File,
    registry: &Registry,
    secrets: Secrets<'_>,
) -> Result<Compiled, Fail> {
    let base = secrets.base;
    let mut config = settings(&file.application)?;
    if let Some(security) = secrets::security(&file.kafka, &secrets)? {
        config = config
            .security(&security)
            .map_err(|e| (e.setting, e.reason))?;
    }
    let vars =
        Arc::new(serde_json::to_value(&file.vars).map_err(|e| ("vars".to_owned(), e.to_string()))?);
    let mut topics = BTreeMap::new();
    for (name, t) in &file.topics {
        let compiled = topic(name, t, base)?;
        for group in &t.upstream {
            if group.trim().is_empty() {
                return fail(
                    format!("topics.{name}.upstream"),
                    "must not name an empty group",
                );
            }
            if *group == file.application.id {
                return fail(
                    format!("topics.{name}.upstream"),
                    "names this application itself; list the other applications that write the topic",
                );
            }
            config = config.upstream(&compiled.name, group);
        }
        topics.insert(name.as_str(), compiled);
    }
    if let Some(settings) = &file.http_auth {
        config.http_auth = Some(secrets::http_auth(settings, &secrets)?);
    }
    let signing = secrets::signing(file, &secrets)?;
    for (name, signing) in signing {
        config = config.signing(&topics[name].name, signing);
    }
    let order = order(&file.nodes)?;
    let budget = budget(&file.expressions)?;
    let mut c = Compiler {
        budget,
        builder: StreamsBuilder::new(),
        outputs: HashMap::new(),
        topics,
        vars,
        registry,
        read_by: HashMap::new(),
        queryable: Vec::new(),
        secrets,
    };
    for name in order {
        let out = c.node(name, &file.nodes[name])?;
        if let Some(out) = out {
            c.outputs.insert(name, out);
        }
    }
    let topic_names = c.topics.values().map(|t| t.name.clone()).collect();
    let queryable = std::mem::take(&mut c.queryable);
    let topology = c
        .builder
        .build()
        .map_err(|e| ("nodes".to_owned(), e.to_string()))?;
    Ok((topology, config, topic_names, queryable))
}

fn settings(app: &model::Application) -> Result<StreamsConfig, Fail> {
    if app.id.trim().is_empty() {
        return fail("application.id", "must not be empty");
    }
    let mut config = StreamsConfig::new(&app.id);
    match app.brokers.as_deref() {
        None | Some("embedded") => {}
        Some("") => {
            return fail(
                "application.brokers",
                "must not be empty (or say \"embedded\")",
            )
        }
        Some(b) => config = config.bootstrap_servers(b),
    }
    if let Some(g) = app.guarantee {
        config = config.guarantee(g);
    }
    if let Some(p) = app.group_protocol {
        config = config.group_protocol(p);
    }
    if let Some(s) = app.static_membership {
        config.static_membership = s;
    }
    if let Some(n) = app.standby_replicas {
        config.num_standby_replicas = n;
    }
    if let Some(a) = &app.application_server {
        if !(a.starts_with("http://") || a.starts_with("https://")) {
            return fail(
                "application.application_server",
                "must be an http:// or https:// address",
            );
        }
        config.application_server = Some(a.clone());
    }
    if let Some(n) = app.threads {
        if n == 0 {
            return fail("application.threads", "must be at least 1");
        }
        config = config.num_stream_threads(n);
    }
    if let Some(dir) = &app.state_dir {
        config = config.state_dir(dir);
    }
    if let Some(mb) = app.memory_budget_mb {
        config.rocks.memory_budget = mb << 20;
    }
    if let Some(port) = app.http_port {
        config = config.http_addr(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Some(t) = &app.dead_letter_topic {
        config = config.dead_letter_topic(t);
    }
    if app.on_error == Some(OnError::Fail) {
        config = config.on_error(ErrorPolicy::Fail);
    }
    if let Some(i) = &app.commit_interval {
        config = config.commit_interval(duration("application.commit_interval", i)?);
    }
    if let Some(idle) = &app.max_task_idle {
        config.max_task_idle = match idle.as_str() {
            "never" => TaskIdle::Never,
            d => TaskIdle::Wait(duration("application.max_task_idle", d)?),
        };
    }
    if let Some(bound) = &app.max_future_timestamp {
        config.max_future_timestamp = match bound.as_str() {
            "none" => None,
            d => Some(duration("application.max_future_timestamp", d)?),
        };
    }
    if let Some(stall) = &app.upstream_stall {
        config.upstream_stall = duration("application.upstream_stall", stall)?;
    }
    if let Some(ratio) = app.trace_sample_ratio {
        if !(0.0..=1.0).contains(&ratio) {
            return fail(
                "application.trace_sample_ratio",
                format!("{ratio} is not a ratio between 0 and 1"),
            );
        }
        config = config.trace_sampling(ratio);
    }
    if let Some(endpoint) = &app.otlp_endpoint {
        if let Err(SpanExportError::Endpoint { reason, .. }) = traces_url(endpoint) {
            return fail(
                "application.otlp_endpoint",
                format!("{endpoint:?}: {reason}"),
            );
        }
        config = config.otlp_endpoint(endpoint);
    }
    if let Some(on) = app.node_metrics {
        config = config.node_metrics(on);
    }
    if let Some(p) = app.partitions {
        if p < 1 {
            return fail("application.partitions", "must be at least 1");
        }
        config.embedded_partitions = p;
    }
    Ok(config)
}

fn topic(name: &str, t: &model::Topic, base: &Path) -> Result<Topic, Fail> {
    let field = format!("topics.{name}.schema");
    let schema = match &t.schema {
        None => None,
        Some(path) => {
            let full = base.join(path);
            let text = read_text(&full, MAX_FILE_BYTES).map_err(|e| {
                (
                    field.clone(),
                    format!("cannot read {}: {e}", full.display()),
                )
            })?;
            let value: Value = serde_json::from_str(&text).map_err(|e| {
                (
                    field.clone(),
                    format!("{} is not JSON: {e}", full.display()),
                )
            })?;
            let validator = jsonschema::options()
                .with_retriever(Unfetched)
                .build(&value)
                .map_err(|e| {
                    (
                        field.clone(),
                        format!("{} is not a valid JSON Schema: {e}", full.display()),
                    )
                })?;
            Some((Arc::new(validator), path.display().to_string()))
        }
    };
    Ok(Topic {
        name: t.name.clone().unwrap_or_else(|| name.to_owned()),
        schema,
        timestamp_field: t.timestamp_field.clone(),
    })
}

/// Refuses every schema a `$ref` names outside the file: eddy reads no
/// other file and no URL for a schema.
struct Unfetched;

impl jsonschema::Retrieve for Unfetched {
    fn retrieve(
        &self,
        _: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err("eddy does not fetch schemas: a $ref must point into the same file (for example \"#/$defs/item\")".into())
    }
}

/// Nodes in an order where inputs come first; unknown inputs and cycles
/// are refused.
fn order(nodes: &BTreeMap<String, Node>) -> Result<Vec<&str>, Fail> {
    if nodes.is_empty() {
        return fail("nodes", "no nodes: a topology needs at least a source");
    }
    for (name, node) in nodes {
        for (field, input) in node.inputs() {
            if !nodes.contains_key(input) {
                return fail(
                    format!("nodes.{name}.{field}"),
                    format!("unknown node {input:?}"),
                );
            }
            if let Some(Node::Sink { .. }) = nodes.get(input) {
                return fail(
                    format!("nodes.{name}.{field}"),
                    format!("node {input:?} is a sink; it has no output to read"),
                );
            }
        }
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        nodes: &'a BTreeMap<String, Node>,
        marks: &mut HashMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
        out: &mut Vec<&'a str>,
    ) -> Result<(), Fail> {
        match marks.get(name).copied().unwrap_or(Mark::New) {
            Mark::Done => return Ok(()),
            Mark::Open => {
                let start = path.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle: Vec<&str> = path[start..].to_vec();
                cycle.push(name);
                return fail(
                    format!("nodes.{name}"),
                    format!("cycle: {}", cycle.join(" -> ")),
                );
            }
            Mark::New => {}
        }
        marks.insert(name, Mark::Open);
        path.push(name);
        for (_, input) in nodes[name].inputs() {
            let (input, _) = nodes.get_key_value(input).expect("checked above");
            visit(input, nodes, marks, path, out)?;
        }
        path.pop();
        marks.insert(name, Mark::Done);
        out.push(name);
        Ok(())
    }
    let mut marks = HashMap::new();
    let mut out = Vec::new();
    for name in nodes.keys() {
        visit(name, nodes, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}
