//! Spans exported to an OpenTelemetry collector (OTLP over HTTP).
//!
//! The stream threads never wait for the collector: a finished span is put
//! on a bounded queue (a `try_send`, no allocation for a hop) and an
//! exporter thread of its own batches the queue into OTLP requests. When
//! the queue is full (the collector is slow or unreachable) a span is
//! dropped and counted (`eddy_trace_spans_dropped_total{reason="queue_full"}`),
//! and a batch the collector refused or did not answer is counted as
//! `reason="export_failed"`; processing goes on at its own pace either way.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind as OtelKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use opentelemetry_sdk::Resource;
use prometheus::IntCounter;

use super::{Metrics, TraceContext};
use crate::runtime::TaskId;
use crate::topology::{TopicRef, TopicTable};

/// Spans queued for export at most; more are dropped (and counted).
pub const SPAN_QUEUE: usize = 8192;
/// Spans sent in one OTLP request at most.
const MAX_BATCH: usize = 512;
/// How long a span waits for its batch to fill before it is sent anyway.
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// How long one OTLP request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Failed exports are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Why span export could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpanExportError {
    /// The endpoint is not an `http://` URL.
    #[error("otlp_endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The exporter or its thread could not be made.
    #[error("starting the span exporter: {0}")]
    Start(String),
}

/// What a span stands for, as OpenTelemetry's span kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Handling a request (an HTTP route).
    Server,
    /// Processing a record read from a topic.
    Consumer,
    /// Work inside a service, such as a timer firing.
    Internal,
}

/// A finished span, recorded with [`Spans::record`].
#[derive(Debug, Clone)]
pub struct Span {
    /// The span's own context (its trace and id).
    pub context: TraceContext,
    /// The id of its parent span in the same trace, if any.
    pub parent: Option<u64>,
    /// What it did, such as `POST /orders`.
    pub name: Cow<'static, str>,
    /// Its kind.
    pub kind: SpanKind,
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// Attributes, as OpenTelemetry string attributes.
    pub attributes: Vec<(&'static str, String)>,
}

impl Span {
    /// A span that starts at `start` and has not ended yet (its `end` is
    /// `start`: set it when it ends), without attributes.
    pub fn new(
        context: TraceContext,
        parent: Option<u64>,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        start: SystemTime,
    ) -> Span {
        Span {
            context,
            parent,
            name: name.into(),
            kind,
            start,
            end: start,
            attributes: Vec::new(),
        }
    }
}

/// A source's hop: processing one record of a topic in a task.
pub(crate) struct HopSpan {
    pub(crate) context: TraceContext,
    pub(crate) parent: Option<u64>,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
    pub(crate) topic: TopicRef,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) task: TaskId,
}

enum Message {
    /// The names of the topics hops refer to (sent once, first).
    Topics(Arc<TopicTable>),
    Hop(HopSpan),
    Span(Box<Span>),
    Close,
}

/// The span queue of a worker (or any service): cheap to clone, one
/// exporter thread behind all clones.
///
/// ```no_run
/// use std::time::SystemTime;
/// use eddy::observability::{Metrics, Span, SpanKind, Spans, TraceContext};
/// let metrics = Metrics::new();
/// let spans = Spans::start("http://127.0.0.1:4318", "orders-api", &metrics).unwrap();
/// let now = SystemTime::now();
/// spans.record(Span {
///     context: TraceContext::root(true),
///     parent: None,
///     name: "POST /orders".into(),
///     kind: SpanKind::Server,
///     start: now,
///     end: now,
///     attributes: vec![("http.route", "/orders".to_owned())],
/// });
/// spans.close(); // sends what is queued, then stops the exporter
/// ```
#[derive(Clone)]
pub struct Spans {
    queue: SyncSender<Message>,
    dropped: IntCounter,
    shared: Arc<Shared>,
}

struct Shared {
    closing: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Spans {
    /// Starts exporting to the collector at `endpoint`: a base URL such as
    /// `http://localhost:4318`, to which `/v1/traces` is added (as for
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`), or the full URL of the traces route
    /// when it has a path. Spans carry `service` as their `service.name`.
    pub fn start(
        endpoint: &str,
        service: &str,
        metrics: &Metrics,
    ) -> Result<Spans, SpanExportError> {
        let url = traces_url(endpoint)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SpanExportError::Start(e.to_string()))?;
        let mut exporter = {
            let _in_runtime = runtime.enter();
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(url)
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|e| SpanExportError::Start(e.to_string()))?
        };
        exporter.set_resource(
            &Resource::builder_empty()
                .with_service_name(service.to_owned())
                .build(),
        );
        let (queue, received) = sync_channel(SPAN_QUEUE);
        let shared = Arc::new(Shared {
            closing: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let (exported, dropped, failed) = metrics.span_counters();
        let export = Export {
            exporter,
            runtime,
            exported,
            failed,
            scope: InstrumentationScope::builder("eddy")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            last_warning: None,
            topics: None,
            names: HashMap::new(),
            tasks: HashMap::new(),
        };
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("eddy-span-export".into())
                .spawn(move || export.run(&received, &shared))
                .map_err(|e| SpanExportError::Start(e.to_string()))?
        };
        *shared.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        Ok(Spans {
            queue,
            dropped,
            shared,
        })
    }

    /// Queues a finished span for export; drops it (and counts it) if the
    /// queue is full or the exporter has stopped.
    pub fn record(&self, span: Span) {
        self.send(Message::Span(Box::new(span)));
    }

    /// Names the topics of the hops recorded from now on.
    pub(crate) fn name_topics(&self, topics: Arc<TopicTable>) {
        let _ = self.queue.send(Message::Topics(topics));
    }

    pub(crate) fn record_hop(&self, hop: HopSpan) {
        self.send(Message::Hop(hop));
    }

    fn send(&self, message: Message) {
        match self.queue.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Sends the spans queued so far (one attempt; if the collector does
    /// not take them, they are dropped and counted) and stops the exporter.
    /// Spans recorded afterwards are dropped. Waits at most about two
    /// export timeouts.
    pub fn close(&self) {
        self.shared.closing.store(true, Ordering::Release);
        let thread = self
            .shared
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = self.queue.send(Message::Close);
            let _ = thread.join();
        }
    }
}

/// The URL spans are posted to, or why `endpoint` is refused.
pub(crate) fn traces_url(endpoint: &str) -> Result<String, SpanExportError> {
    let refuse = |reason: &str| SpanExportError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: hyper::Uri = endpoint
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| refuse(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(refuse(
                "https is not supported yet: send spans to a local collector over http",
            ))
        }
        _ => {
            return Err(refuse(
                "expected an http:// URL, such as http://localhost:4318",
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(refuse("the URL has no host"));
    }
    Ok(match uri.path() {
        "" | "/" => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        _ => endpoint.to_owned(),
    })
}

/// The exporter thread's side.
struct Export {
    exporter: opentelemetry_otlp::SpanExporter,
    runtime: tokio::runtime::Runtime,
    exported: IntCounter,
    failed: IntCounter,
    scope: InstrumentationScope,
    last_warning: Option<Instant>,
    /// The worker's topics.
    topics: Option<Arc<TopicTable>>,
    /// The topic name and span name of each topic read.
    names: HashMap<TopicRef, Names>,
    /// Each task's id and partition as text.
    tasks: HashMap<TaskId, (Arc<str>, Arc<str>)>,
}

struct Names {
    topic: Arc<str>,
    span: &'static str,
}

impl Export {
    fn run(mut self, received: &Receiver<Message>, shared: &Shared) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut due = None;
        loop {
            let message = match due {
                None => received.recv().ok(),
                Some(at) => match received.recv_timeout(at - Instant::now().min(at)) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => {
                        if !self.send(&mut batch, received, shared) {
                            return;
                        }
                        due = None;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                },
            };
            match message {
                Some(Message::Hop(hop)) => {
                    let data = self.hop_data(hop);
                    batch.push(data);
                }
                Some(Message::Span(span)) => batch.push(self.span_data(*span)),
                Some(Message::Topics(topics)) => {
                    self.topics = Some(topics);
                    continue;
                }
                Some(Message::Close) | None => {
                    self.send(&mut batch, received, shared);
                    return;
                }
            }
            if batch.len() == 1 {
                due = Some(Instant::now() + BATCH_DELAY);
            }
            if batch.len() >= MAX_BATCH {
                if !self.send(&mut batch, received, shared) {
                    return;
                }
                due = None;
            }
        }
    }

    /// Exports `batch`; whether to go on. A failure while closing drops
    /// what is still queued (counted) and stops, so that closing does not
    /// wait on a dead collector once per batch.
    fn send(
        &mut self,
        batch: &mut Vec<SpanData>,
        received: &Receiver<Message>,
        shared: &Shared,
    ) -> bool {
        if batch.is_empty() {
            return true;
        }
        let n = batch.len() as u64;
        match self
            .runtime
            .block_on(self.exporter.export(std::mem::take(batch)))
        {
            Ok(()) => self.exported.inc_by(n),
            Err(e) => {
                self.failed.inc_by(n);
                if self.last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    self.last_warning = Some(Instant::now());
                    tracing::warn!(spans = n, error = %e, "span export failed: spans dropped (warned at most once a minute)");
                }
                if shared.closing.load(Ordering::Acquire) {
                    let rest = received
                        .try_iter()
                        .filter(|m| !matches!(m, Message::Close))
                        .count();
                    self.failed.inc_by(rest as u64);
                    return false;
                }
            }
        }
        true
    }

    fn hop_data(&mut self, hop: HopSpan) -> SpanData {
        let topics = &self.topics;
        let names = self.names.entry(hop.topic).or_insert_with(|| {
            let topic = topics.as_ref().map_or("?", |t| t.name(hop.topic));
            Names {
                topic: Arc::from(topic),
                // One per topic a worker reads, for the worker's life.
                span: Box::leak(format!("process {topic}").into_boxed_str()),
            }
        });
        let (name, topic) = (names.span, names.topic.clone());
        // A task reads the same partition of each of its topics.
        let (task, partition) = self
            .tasks
            .entry(hop.task)
            .or_insert_with(|| {
                let partition = hop.partition.to_string();
                (Arc::from(hop.task.to_string()), Arc::from(partition))
            })
            .clone();
        let attributes = vec![
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.destination.name", topic),
            KeyValue::new("messaging.destination.partition.id", partition),
            KeyValue::new("messaging.kafka.offset", hop.offset),
            KeyValue::new("eddy.task", task),
        ];
        self.data(
            hop.context,
            hop.parent,
            Cow::Borrowed(name),
            OtelKind::Consumer,
            (hop.start, hop.end),
            attributes,
        )
    }

    fn span_data(&self, span: Span) -> SpanData {
        let attributes = span
            .attributes
            .into_iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .collect();
        let kind = match span.kind {
            SpanKind::Server => OtelKind::Server,
            SpanKind::Consumer => OtelKind::Consumer,
            SpanKind::Internal => OtelKind::Internal,
        };
        self.data(
            span.context,
            span.parent,
            span.name,
            kind,
            (span.start, span.end),
            attributes,
        )
    }

    fn data(
        &self,
        context: TraceContext,
        parent: Option<u64>,
        name: Cow<'static, str>,
        kind: OtelKind,
        (start, end): (SystemTime, SystemTime),
        attributes: Vec<KeyValue>,
    ) -> SpanData {
        let flags = match context.sampled {
            true => TraceFlags::SAMPLED,
            false => TraceFlags::default(),
        };
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes(context.trace_id.to_be_bytes()),
                SpanId::from_bytes(context.span_id.to_be_bytes()),
                flags,
                false,
                TraceState::NONE,
            ),
            parent_span_id: SpanId::from_bytes(parent.unwrap_or(0).to_be_bytes()),
            // A hop's parent wrote the record in another process or
            // another hop: remote, as W3C context read from a carrier is.
            parent_span_is_remote: parent.is_some(),
            span_kind: kind,
            name,
            start_time: start,
            end_time: end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: self.scope.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_and_completed() {
        assert_eq!(
            traces_url("http://collector:4318").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/custom/traces").unwrap(),
            "http://collector:4318/custom/traces"
        );
        for bad in [
            "collector:4318",
            "https://collector",
            "ftp://x",
            "not a url",
            "",
        ] {
            let e = traces_url(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("otlp_endpoint {bad:?}: ")), "{e}");
        }
    }
}
