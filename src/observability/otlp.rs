//! Spans encoded as an OTLP export request (protobuf), written straight
//! into one buffer per batch.
//!
//! The exporter thread shares the worker's cores, so it encodes a span
//! without building OpenTelemetry's intermediate structures (an SDK span,
//! then a protobuf struct with an allocation per id and attribute): a span
//! is a few fields appended to a buffer, and a hop's attributes that stay
//! the same for a topic and a task are encoded once and copied. The layout
//! is OTLP's `ExportTraceServiceRequest` (opentelemetry-proto's
//! `trace.proto`, field numbers below); tests decode what this writes with
//! the `opentelemetry-proto` crate.

use prost::bytes::BufMut;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

use super::TraceContext;

/// `ExportTraceServiceRequest.resource_spans`.
const REQUEST_RESOURCE_SPANS: u32 = 1;
/// `ResourceSpans.resource`, `ResourceSpans.scope_spans`.
const RESOURCE_SPANS_RESOURCE: u32 = 1;
const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
/// `Resource.attributes`.
const RESOURCE_ATTRIBUTES: u32 = 1;
/// `ScopeSpans.scope`, `ScopeSpans.spans`.
const SCOPE_SPANS_SCOPE: u32 = 1;
const SCOPE_SPANS_SPANS: u32 = 2;
/// `InstrumentationScope.name`, `.version`.
const SCOPE_NAME: u32 = 1;
const SCOPE_VERSION: u32 = 2;
/// `Span` fields.
const SPAN_TRACE_ID: u32 = 1;
const SPAN_SPAN_ID: u32 = 2;
const SPAN_PARENT_SPAN_ID: u32 = 4;
const SPAN_NAME: u32 = 5;
const SPAN_KIND: u32 = 6;
const SPAN_START: u32 = 7;
const SPAN_END: u32 = 8;
const SPAN_ATTRIBUTES: u32 = 9;
const SPAN_FLAGS: u32 = 16;
/// `KeyValue.key`, `.value`; `AnyValue.string_value`, `.int_value`.
const KEY_VALUE_KEY: u32 = 1;
const KEY_VALUE_VALUE: u32 = 2;
const ANY_VALUE_STRING: u32 = 1;
const ANY_VALUE_INT: u32 = 3;
/// `SpanFlags`: the flags say whether the parent is remote, and it is.
const FLAGS_HAS_IS_REMOTE: u32 = 0x100;
const FLAGS_IS_REMOTE: u32 = 0x200;

/// OTLP's span kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum Kind {
    Internal = 1,
    Server = 2,
    Consumer = 5,
}

/// An attribute's value.
pub(crate) enum Value<'a> {
    Str(&'a str),
    Int(i64),
}

/// Appends an attribute (a `KeyValue`) as field `field` of the message
/// being written.
pub(crate) fn attribute(buf: &mut Vec<u8>, field: u32, key: &str, value: Value<'_>) {
    let value_len = match value {
        Value::Str(s) => field_len(s.len()),
        Value::Int(i) => 1 + encoded_len_varint(i as u64),
    };
    let len = field_len(key.len()) + field_len(value_len);
    open(buf, field, len);
    bytes_field(buf, KEY_VALUE_KEY, key.as_bytes());
    open(buf, KEY_VALUE_VALUE, value_len);
    match value {
        Value::Str(s) => bytes_field(buf, ANY_VALUE_STRING, s.as_bytes()),
        Value::Int(i) => {
            encode_key(ANY_VALUE_INT, WireType::Varint, buf);
            encode_varint(i as u64, buf);
        }
    }
}

/// Appends a span's attribute.
pub(crate) fn span_attribute(buf: &mut Vec<u8>, key: &str, value: Value<'_>) {
    attribute(buf, SPAN_ATTRIBUTES, key, value);
}

/// One span's fields, its attributes already encoded (with
/// [`span_attribute`]) in two parts: one kept for many spans, one of its
/// own.
pub(crate) struct SpanFields<'a> {
    pub(crate) context: TraceContext,
    pub(crate) parent: Option<u64>,
    pub(crate) name: &'a str,
    pub(crate) kind: Kind,
    /// Start and end, nanoseconds since the epoch.
    pub(crate) time: (u64, u64),
    pub(crate) attributes: (&'a [u8], &'a [u8]),
}

/// The spans of one export request, encoded as they come.
#[derive(Default)]
pub(crate) struct Request {
    /// The `spans` fields of the request's one `ScopeSpans`.
    spans: Vec<u8>,
    count: usize,
}

impl Request {
    /// Spans added since the last [`Request::take`].
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Appends a span.
    pub(crate) fn push(&mut self, span: &SpanFields<'_>) {
        let flags = FLAGS_HAS_IS_REMOTE
            | if span.parent.is_some() {
                FLAGS_IS_REMOTE
            } else {
                0
            }
            | u32::from(span.context.sampled);
        let len = field_len(16)
            + field_len(8)
            + span.parent.map_or(0, |_| field_len(8))
            + field_len(span.name.len())
            + 1
            + encoded_len_varint(span.kind as u64)
            + 2 * (1 + 8)
            + span.attributes.0.len()
            + span.attributes.1.len()
            + 2
            + 4;
        let buf = &mut self.spans;
        open(buf, SCOPE_SPANS_SPANS, len);
        bytes_field(buf, SPAN_TRACE_ID, &span.context.trace_id.to_be_bytes());
        bytes_field(buf, SPAN_SPAN_ID, &span.context.span_id.to_be_bytes());
        if let Some(parent) = span.parent {
            bytes_field(buf, SPAN_PARENT_SPAN_ID, &parent.to_be_bytes());
        }
        bytes_field(buf, SPAN_NAME, span.name.as_bytes());
        encode_key(SPAN_KIND, WireType::Varint, buf);
        encode_varint(span.kind as u64, buf);
        encode_key(SPAN_START, WireType::SixtyFourBit, buf);
        buf.put_u64_le(span.time.0);
        encode_key(SPAN_END, WireType::SixtyFourBit, buf);
        buf.put_u64_le(span.time.1);
        buf.extend_from_slice(span.attributes.0);
        buf.extend_from_slice(span.attributes.1);
        encode_key(SPAN_FLAGS, WireType::ThirtyTwoBit, buf);
        buf.put_u32_le(flags);
        self.count += 1;
    }

    /// The request body for the spans added so far, sent by `service`
    /// (its `service.name`) through eddy's instrumentation scope; the
    /// request is empty again afterwards.
    pub(crate) fn take(&mut self, service: &str) -> Vec<u8> {
        let mut resource = Vec::with_capacity(32 + service.len());
        attribute(
            &mut resource,
            RESOURCE_ATTRIBUTES,
            "service.name",
            Value::Str(service),
        );
        let version = env!("CARGO_PKG_VERSION");
        let scope_len = field_len(4) + field_len(version.len());
        let scope_spans_len = field_len(scope_len) + self.spans.len();
        let resource_spans_len = field_len(resource.len()) + field_len(scope_spans_len);
        let mut out = Vec::with_capacity(field_len(resource_spans_len));
        open(&mut out, REQUEST_RESOURCE_SPANS, resource_spans_len);
        bytes_field(&mut out, RESOURCE_SPANS_RESOURCE, &resource);
        open(&mut out, RESOURCE_SPANS_SCOPE_SPANS, scope_spans_len);
        open(&mut out, SCOPE_SPANS_SCOPE, scope_len);
        bytes_field(&mut out, SCOPE_NAME, b"eddy");
        bytes_field(&mut out, SCOPE_VERSION, version.as_bytes());
        out.extend_from_slice(&self.spans);
        self.spans.clear();
        self.count = 0;
        out
    }
}

/// The encoded length of a length-delimited field of `len` bytes (field
/// numbers under 16 take one byte; the span's flags are counted apart).
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Starts a length-delimited field of `len` bytes.
fn open(buf: &mut Vec<u8>, field: u32, len: usize) {
    encode_key(field, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn bytes_field(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    open(buf, field, bytes.len());
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use prost::Message;

    #[test]
    fn the_request_decodes_as_otlp() {
        let mut shared = Vec::new();
        span_attribute(&mut shared, "messaging.system", Value::Str("kafka"));
        let mut own = Vec::new();
        span_attribute(&mut own, "messaging.kafka.offset", Value::Int(1 << 40));
        let context = TraceContext {
            trace_id: 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
            span_id: 0x00f0_67aa_0ba9_02b7,
            sampled: true,
        };
        let mut request = Request::default();
        let name = "process orders".repeat(20); // a length over 127
        request.push(&SpanFields {
            context,
            parent: Some(7),
            name: &name,
            kind: Kind::Consumer,
            time: (1, u64::MAX),
            attributes: (&shared, &own),
        });
        request.push(&SpanFields {
            context: TraceContext {
                sampled: false,
                ..context
            },
            parent: None,
            name: "POST /orders",
            kind: Kind::Server,
            time: (5, 6),
            attributes: (&[], &[]),
        });
        assert_eq!(request.len(), 2);
        let body = request.take("orders-api");
        assert_eq!(request.len(), 0);

        let decoded = ExportTraceServiceRequest::decode(&body[..]).unwrap();
        assert_eq!(decoded.resource_spans.len(), 1);
        let resource = &decoded.resource_spans[0];
        let service = &resource.resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
        let value = service.value.as_ref().unwrap().value.as_ref();
        assert_eq!(
            value,
            Some(&any_value::Value::StringValue("orders-api".into()))
        );
        let scope = &resource.scope_spans[0];
        let instrumentation = scope.scope.as_ref().unwrap();
        assert_eq!(instrumentation.name, "eddy");
        assert_eq!(instrumentation.version, env!("CARGO_PKG_VERSION"));
        let [hop, server] = &scope.spans[..] else {
            panic!("{:?}", scope.spans)
        };
        assert_eq!(hop.trace_id, context.trace_id.to_be_bytes());
        assert_eq!(hop.span_id, context.span_id.to_be_bytes());
        assert_eq!(hop.parent_span_id, 7u64.to_be_bytes());
        assert_eq!(hop.name, name);
        assert_eq!(hop.kind, 5);
        assert_eq!(
            (hop.start_time_unix_nano, hop.end_time_unix_nano),
            (1, u64::MAX)
        );
        assert_eq!(hop.flags, 0x301);
        let attributes: Vec<_> = hop
            .attributes
            .iter()
            .map(|a| (a.key.as_str(), a.value.clone().unwrap().value.unwrap()))
            .collect();
        assert_eq!(
            attributes,
            [
                (
                    "messaging.system",
                    any_value::Value::StringValue("kafka".into())
                ),
                (
                    "messaging.kafka.offset",
                    any_value::Value::IntValue(1 << 40)
                ),
            ]
        );
        assert!(server.parent_span_id.is_empty());
        assert_eq!((server.kind, server.flags), (2, 0x100));
        assert!(server.attributes.is_empty());
        // Taken: the next request starts empty.
        let empty = ExportTraceServiceRequest::decode(&request.take("x")[..]).unwrap();
        assert!(empty.resource_spans[0].scope_spans[0].spans.is_empty());
    }
}
