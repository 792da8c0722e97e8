//! A stand-in OpenTelemetry collector for tests: it takes OTLP/HTTP span
//! exports (protobuf) and keeps what it received.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

use crate::observability::{HttpLimits, HttpServer, Metrics};

/// A span as the collector received it.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectedSpan {
    /// The `service.name` of the resource that sent it.
    pub service: String,
    /// Its trace.
    pub trace_id: u128,
    /// Its id.
    pub span_id: u64,
    /// Its parent's id, if it has one.
    pub parent: Option<u64>,
    /// Its name.
    pub name: String,
    /// Its kind, as OTLP numbers it (2 server, 5 consumer, 1 internal).
    pub kind: i32,
    /// Its string and integer attributes, as text.
    pub attributes: BTreeMap<String, String>,
    /// Start and end, in nanoseconds since the epoch.
    pub time: (u64, u64),
}

/// An OTLP/HTTP endpoint on a loopback port that records the spans sent
/// to `/v1/traces`; stopped when dropped.
pub struct OtlpCollector {
    server: HttpServer,
    spans: Arc<Received>,
}

#[derive(Default)]
struct Received {
    /// Whether requests are only counted, not decoded and kept.
    discard: bool,
    spans: Mutex<Vec<CollectedSpan>>,
    requests: Mutex<(u64, u64)>,
}

impl OtlpCollector {
    /// Starts a collector on a free loopback port.
    pub fn start() -> OtlpCollector {
        Self::with(Received::default())
    }

    /// Starts a collector that takes requests without decoding or keeping
    /// them (for benchmarks: a collector's own work is not the worker's).
    pub fn discarding() -> OtlpCollector {
        Self::with(Received {
            discard: true,
            ..Received::default()
        })
    }

    fn with(received: Received) -> OtlpCollector {
        let spans = Arc::new(received);
        let routes = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(spans.clone());
        // Room for a batch of 512 spans.
        let limits = HttpLimits {
            max_body_bytes: 4 << 20,
            ..HttpLimits::default()
        };
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = HttpServer::start_with(loopback, Arc::new(Metrics::new()), routes, limits)
            .expect("a collector on a loopback port");
        OtlpCollector { server, spans }
    }

    /// The endpoint to configure (`http://127.0.0.1:<port>`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.spans
            .spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Requests and body bytes received so far.
    pub fn requests(&self) -> (u64, u64) {
        *self
            .spans
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

type Answer = ([(header::HeaderName, &'static str); 1], Vec<u8>);

async fn receive(
    State(spans): State<Arc<Received>>,
    body: Bytes,
) -> Result<Answer, (StatusCode, String)> {
    {
        let mut requests = spans.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.0 += 1;
        requests.1 += body.len() as u64;
    }
    let answer = (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    );
    if spans.discard {
        return Ok(answer);
    }
    let request = ExportTraceServiceRequest::decode(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let mut received = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .and_then(|a| text(a.value.as_ref()?.value.as_ref()?))
            .unwrap_or_default();
        for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
            let parent = (!span.parent_span_id.is_empty()).then(|| id(&span.parent_span_id) as u64);
            received.push(CollectedSpan {
                service: service.clone(),
                trace_id: id(&span.trace_id),
                span_id: id(&span.span_id) as u64,
                parent: parent.filter(|p| *p != 0),
                name: span.name,
                kind: span.kind,
                attributes: span
                    .attributes
                    .iter()
                    .filter_map(|a| Some((a.key.clone(), text(a.value.as_ref()?.value.as_ref()?)?)))
                    .collect(),
                time: (span.start_time_unix_nano, span.end_time_unix_nano),
            });
        }
    }
    spans
        .spans
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(received);
    Ok(answer)
}

fn id(bytes: &[u8]) -> u128 {
    bytes.iter().fold(0, |n, b| n << 8 | u128::from(*b))
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}
