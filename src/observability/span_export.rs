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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use prometheus::IntCounter;
use prost::bytes::Bytes;

use super::otlp::{self, Kind, Request, SpanFields, Value};
use super::{Metrics, TraceContext};
use crate::runtime::TaskId;
use crate::topology::{TopicRef, TopicTable};

/// Spans queued for export at most (about: hops are queued in batches of
/// up to [`HOP_BATCH`]); more are dropped (and counted).
pub const SPAN_QUEUE: usize = 8192;
/// A task hands the exporter its hops' spans in batches of this many at
/// most (once per batch of records), not one by one.
pub(crate) const HOP_BATCH: usize = 256;
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
    Hops(Vec<HopSpan>),
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
        let url: hyper::Uri = traces_url(endpoint)?
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| SpanExportError::Start(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SpanExportError::Start(e.to_string()))?;
        let (queue, received) = sync_channel(SPAN_QUEUE / HOP_BATCH);
        let shared = Arc::new(Shared {
            closing: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let (exported, dropped, failed) = metrics.span_counters();
        let export = Export {
            client: Client::builder(TokioExecutor::new()).build_http(),
            url,
            service: service.to_owned(),
            runtime,
            exported,
            failed,
            last_warning: None,
            request: Request::default(),
            topics: None,
            hops: HashMap::new(),
            attributes: Vec::new(),
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

    /// Queues hops' spans for export (or drops and counts them).
    pub(crate) fn record_hops(&self, hops: Vec<HopSpan>) {
        self.send(Message::Hops(hops));
    }

    fn send(&self, message: Message) {
        match self.queue.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => {
                self.dropped.inc_by(match m {
                    Message::Hops(hops) => hops.len() as u64,
                    _ => 1,
                })
            }
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
    client: Client<HttpConnector, Full<Bytes>>,
    url: hyper::Uri,
    service: String,
    runtime: tokio::runtime::Runtime,
    exported: IntCounter,
    failed: IntCounter,
    last_warning: Option<Instant>,
    /// The spans of the next request.
    request: Request,
    /// The worker's topics.
    topics: Option<Arc<TopicTable>>,
    /// What every hop of a task reading a topic has in common.
    hops: HashMap<(TopicRef, TaskId), HopNames>,
    /// A span's own attributes, encoded.
    attributes: Vec<u8>,
}

/// A hop's span name and the attributes it shares with every hop of its
/// task and topic, encoded.
struct HopNames {
    span: String,
    attributes: Vec<u8>,
}

impl Export {
    fn run(mut self, received: &Receiver<Message>, shared: &Shared) {
        let mut due = None;
        loop {
            let message = match due {
                None => received.recv().ok(),
                Some(at) => match received.recv_timeout(at - Instant::now().min(at)) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => {
                        if !self.send(received, shared) {
                            return;
                        }
                        due = None;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                },
            };
            match message {
                Some(Message::Hops(hops)) => {
                    for hop in &hops {
                        self.push_hop(hop);
                    }
                }
                Some(Message::Span(span)) => self.push_span(&span),
                Some(Message::Topics(topics)) => {
                    self.topics = Some(topics);
                    continue;
                }
                Some(Message::Close) | None => {
                    self.send(received, shared);
                    return;
                }
            }
            if due.is_none() {
                due = Some(Instant::now() + BATCH_DELAY);
            }
            if self.request.len() >= MAX_BATCH {
                if !self.send(received, shared) {
                    return;
                }
                due = None;
            }
        }
    }

    /// Exports the spans encoded so far; whether to go on. A failure while
    /// closing drops what is still queued (counted) and stops, so that
    /// closing does not wait on a dead collector once per batch.
    fn send(&mut self, received: &Receiver<Message>, shared: &Shared) -> bool {
        let n = self.request.len() as u64;
        if n == 0 {
            return true;
        }
        let body = self.request.take(&self.service);
        match self.runtime.block_on(post(&self.client, &self.url, body)) {
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

    fn push_hop(&mut self, hop: &HopSpan) {
        let topics = &self.topics;
        let names = self.hops.entry((hop.topic, hop.task)).or_insert_with(|| {
            let topic = topics.as_ref().map_or("?", |t| t.name(hop.topic));
            let mut attributes = Vec::new();
            // A task reads the same partition of each of its topics.
            for (key, value) in [
                ("messaging.system", "kafka"),
                ("messaging.destination.name", topic),
                (
                    "messaging.destination.partition.id",
                    &hop.partition.to_string(),
                ),
                ("eddy.task", &hop.task.to_string()),
            ] {
                otlp::span_attribute(&mut attributes, key, Value::Str(value));
            }
            HopNames {
                span: format!("process {topic}"),
                attributes,
            }
        });
        self.attributes.clear();
        otlp::span_attribute(
            &mut self.attributes,
            "messaging.kafka.offset",
            Value::Int(hop.offset),
        );
        self.request.push(&SpanFields {
            context: hop.context,
            parent: hop.parent,
            name: &names.span,
            kind: Kind::Consumer,
            time: (nanos(hop.start), nanos(hop.end)),
            attributes: (&names.attributes, &self.attributes),
        });
    }

    fn push_span(&mut self, span: &Span) {
        self.attributes.clear();
        for (key, value) in &span.attributes {
            otlp::span_attribute(&mut self.attributes, key, Value::Str(value));
        }
        self.request.push(&SpanFields {
            context: span.context,
            parent: span.parent,
            name: &span.name,
            kind: match span.kind {
                SpanKind::Server => Kind::Server,
                SpanKind::Consumer => Kind::Consumer,
                SpanKind::Internal => Kind::Internal,
            },
            time: (nanos(span.start), nanos(span.end)),
            attributes: (&[], &self.attributes),
        });
    }
}

/// Nanoseconds since the epoch (0 before it).
fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Posts an OTLP request body; any answer but a 2xx is a failure.
async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &hyper::Uri,
    body: Vec<u8>,
) -> Result<(), String> {
    let request = hyper::Request::post(url.clone())
        .header(hyper::header::CONTENT_TYPE, "application/x-protobuf")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(EXPORT_TIMEOUT, async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        // Read the answer so that the connection can be used again.
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        match status.is_success() {
            true => Ok(()),
            false => Err(format!(
                "the collector answered {status}: {}",
                String::from_utf8_lossy(&body.to_bytes())
            )),
        }
    })
    .await;
    answer.unwrap_or_else(|_| Err(format!("no answer in {EXPORT_TIMEOUT:?}")))
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
