//! W3C trace context carried in Kafka record headers.
//!
//! A record's `traceparent` header (W3C Trace Context, version 00:
//! `00-<trace id, 32 hex>-<span id, 16 hex>-<flags, 2 hex>`) says which
//! trace it belongs to and which span wrote it. With tracing on, each
//! source of a task makes the processing of a record one hop: a span with
//! a new id in the record's trace (or the root of a new trace, when the
//! record carries no valid context). Every record the hop writes (any
//! sink, whatever operator made it: joins and aggregations write in the
//! hop of the record that triggered them) carries the hop's context in
//! place of the one it came with, so the next hop that reads it (another
//! service, or this one after a repartition topic) has the hop's span as
//! its parent. Operators see headers as the record was read; the sink
//! writes the hop's `traceparent`, so carrying it costs no allocation. A
//! malformed header is ignored, as the specification asks: the record
//! starts a new trace. With tracing off, headers pass untouched and nothing
//! is done per record.

use std::time::SystemTime;

use super::span_export::HOP_BATCH;
use super::{HopSpan, Span, SpanKind, Spans};
use crate::processor::Headers;
use crate::runtime::TaskId;
use crate::topology::TopicRef;

/// The header that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";
/// The header that carries vendor-specific trace state, dropped with an
/// invalid `traceparent`.
pub const TRACESTATE: &str = "tracestate";

/// A position in a trace: the trace, the span, and whether it is sampled.
///
/// ```
/// use eddy::observability::TraceContext;
/// let header = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let ctx = TraceContext::parse(header).unwrap();
/// assert_eq!(ctx.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
/// assert_eq!(ctx.span_id, 0x00f067aa0ba902b7);
/// assert!(ctx.sampled);
/// assert_eq!(&ctx.header_value()[..], &header[..]);
/// assert_eq!(TraceContext::parse(b"00-not-a-context"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace (never 0).
    pub trace_id: u128,
    /// The span that wrote the record (never 0).
    pub span_id: u64,
    /// The `sampled` flag: whether the spans of this trace are recorded.
    pub sampled: bool,
}

impl TraceContext {
    /// Parses a `traceparent` value; `None` if it is not a valid one.
    /// Versions after 00 are read by their first four fields, as the
    /// specification asks of a version 00 reader.
    pub fn parse(value: &[u8]) -> Option<TraceContext> {
        let version = hex(value.get(0..2)?)?;
        let valid_length = match version {
            0 => value.len() == 55,
            0xff => false,
            _ => value.len() == 55 || (value.len() > 55 && value[55] == b'-'),
        };
        if !valid_length || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id = hex(&value[3..35])?;
        let span_id = u64::try_from(hex(&value[36..52])?).ok()?;
        let flags = hex(&value[53..55])?;
        (trace_id != 0 && span_id != 0).then_some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The root of a new trace.
    pub fn root(sampled: bool) -> TraceContext {
        TraceContext {
            trace_id: nonzero(|| fastrand::u128(..)),
            span_id: nonzero(|| fastrand::u64(..)),
            sampled,
        }
    }

    /// A new span of the same trace, with the same sampling decision.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            span_id: nonzero(|| fastrand::u64(..)),
            ..*self
        }
    }

    /// The trace id as 32 lower-case hex digits, as logs and tools show it.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The span id as 16 lower-case hex digits.
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// The context as a version 00 `traceparent` value.
    pub fn header_value(&self) -> [u8; 55] {
        let mut out = [b'-'; 55];
        out[..2].copy_from_slice(b"00");
        write_hex(&mut out[3..35], &self.trace_id.to_be_bytes());
        write_hex(&mut out[36..52], &self.span_id.to_be_bytes());
        out[53..].copy_from_slice(if self.sampled { b"01" } else { b"00" });
        out
    }
}

/// A random id that is not 0 (an id of 0 is invalid): drawn again in the
/// one case in 2^64 or more that it is. Unlike a range, costs no division.
fn nonzero<T: PartialEq + Default>(draw: impl Fn() -> T) -> T {
    loop {
        let id = draw();
        if id != T::default() {
            return id;
        }
    }
}

/// Lower-case hex digits (as the specification requires) as a number.
fn hex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(n << 4 | u128::from(v))
    })
}

/// Writes `bytes` as two lower-case hex digits each.
fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// Makes each record a source reads a hop of its trace (one per task).
pub(crate) struct Tracer {
    sample_ratio: f64,
    /// Where the spans of sampled hops go, when spans are exported.
    pub(crate) spans: Option<Spans>,
    /// Finished hops not handed to the exporter yet.
    finished: Vec<HopSpan>,
}

/// A hop being processed.
pub(crate) struct Hop {
    /// The hop's own context.
    pub(crate) context: TraceContext,
    /// The span that wrote the record, if it carried a valid context.
    pub(crate) parent: Option<u64>,
    /// When the hop started, if its span is exported.
    pub(crate) start: Option<SystemTime>,
}

impl Tracer {
    /// New traces are sampled at `sample_ratio` (0 to 1); a continued
    /// trace keeps its caller's decision. Sampled hops are recorded to
    /// `spans`, if given.
    pub(crate) fn new(sample_ratio: f64, spans: Option<Spans>) -> Self {
        Tracer {
            sample_ratio,
            spans,
            finished: Vec::new(),
        }
    }

    /// The hop that processes a record with `headers`: a new span in the
    /// record's trace, or the root of a new trace when it has no valid
    /// `traceparent` (an invalid one is dropped, with its `tracestate`).
    /// What the hop writes carries its `traceparent` in place of the
    /// record's (sinks write it: no header is made here).
    pub(crate) fn hop(&self, headers: &mut Headers) -> Hop {
        let parent = headers.last(TRACEPARENT).map(TraceContext::parse);
        let (context, parent) = match parent {
            Some(Some(parent)) => (parent.child(), Some(parent.span_id)),
            invalid_or_none => {
                if invalid_or_none.is_some() {
                    headers
                        .0
                        .retain(|h| h.key != TRACESTATE && h.key != TRACEPARENT);
                }
                let sampled = match self.sample_ratio {
                    r if r >= 1.0 => true,
                    r if r <= 0.0 => false,
                    r => fastrand::f64() < r,
                };
                (TraceContext::root(sampled), None)
            }
        };
        self.begin(context, parent)
    }

    /// A timer's span, firing for what the record with `parent` (a
    /// `traceparent` value) last changed: a child of that record's span,
    /// whose context is added to `headers`. `None` (and nothing added) if
    /// `parent` is not a valid context.
    pub(crate) fn timer(&self, parent: &[u8], headers: &mut Headers) -> Option<Hop> {
        let parent = TraceContext::parse(parent)?;
        let context = parent.child();
        headers.add(TRACEPARENT, context.header_value().to_vec());
        Some(self.begin(context, Some(parent.span_id)))
    }

    /// A hop of `context`, timed if its span is exported.
    fn begin(&self, context: TraceContext, parent: Option<u64>) -> Hop {
        let start = (context.sampled && self.spans.is_some()).then(SystemTime::now);
        Hop {
            context,
            parent,
            start,
        }
    }

    /// Ends a timer's span named `name`, queued for export with
    /// `attributes`.
    pub(crate) fn finish_timer(
        &self,
        hop: Hop,
        name: &'static str,
        attributes: impl FnOnce() -> Vec<(&'static str, String)>,
    ) {
        if let (Some(spans), Some(start)) = (&self.spans, hop.start) {
            spans.record(Span {
                context: hop.context,
                parent: hop.parent,
                name: name.into(),
                kind: SpanKind::Internal,
                start,
                end: SystemTime::now(),
                attributes: attributes(),
            });
        }
    }

    /// Ends a hop of task `task` that processed the record at `offset` of
    /// `topic`'s `partition`: its span is queued for export with the next
    /// [`Tracer::flush`].
    pub(crate) fn finish(
        &mut self,
        hop: Hop,
        task: TaskId,
        (topic, partition, offset): (TopicRef, i32, i64),
    ) {
        if let (Some(spans), Some(start)) = (&self.spans, hop.start) {
            self.finished.push(HopSpan {
                context: hop.context,
                parent: hop.parent,
                start,
                end: SystemTime::now(),
                topic,
                partition,
                offset,
                task,
            });
            if self.finished.len() >= HOP_BATCH {
                spans.record_hops(std::mem::take(&mut self.finished));
            }
        }
    }

    /// Hands the hops finished so far to the exporter (once per batch of
    /// records, and when the task goes).
    pub(crate) fn flush(&mut self) {
        if let (Some(spans), false) = (&self.spans, self.finished.is_empty()) {
            spans.record_hops(std::mem::take(&mut self.finished));
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_what_the_specification_allows_and_nothing_else() {
        let ctx = TraceContext::parse(VALID).unwrap();
        assert_eq!(ctx.header_value(), *VALID);
        let unsampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!TraceContext::parse(unsampled).unwrap().sampled);
        // A later version: its first four fields, and what follows a dash.
        let later = b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-comes";
        assert_eq!(TraceContext::parse(later).unwrap().trace_id, ctx.trace_id);
        for bad in [
            &b""[..],
            b"00",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01".as_bytes(),
        ] {
            assert_eq!(
                TraceContext::parse(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_hop_continues_the_trace_with_a_new_span_or_starts_one() {
        let tracer = Tracer::new(1.0, None);
        let parent = TraceContext::parse(VALID).unwrap();
        let mut headers = Headers::new();
        headers
            .add("other", "x")
            .add(TRACEPARENT, VALID)
            .add(TRACESTATE, "k=v");
        let before = headers.clone();
        let hop = tracer.hop(&mut headers);
        assert_eq!(hop.parent, Some(parent.span_id));
        let hop = hop.context;
        assert_eq!((hop.trace_id, hop.sampled), (parent.trace_id, true));
        assert_ne!(hop.span_id, parent.span_id);
        // The headers stay as read: sinks write the hop's context.
        assert_eq!(headers, before);

        // No context, or a malformed one: a new trace (the malformed
        // context and its state dropped).
        let mut headers = Headers::new();
        headers
            .add(TRACEPARENT, "garbage")
            .add(TRACESTATE, "k=v")
            .add("other", "x");
        let root = tracer.hop(&mut headers);
        assert_eq!(root.parent, None);
        assert_ne!(root.context.trace_id, parent.trace_id);
        assert!(root.context.sampled);
        let keys: Vec<&str> = headers.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys, ["other"]);

        // New traces follow the ratio; a continued one keeps its flag.
        let never = Tracer::new(0.0, None);
        assert!(!never.hop(&mut Headers::new()).context.sampled);
        let mut headers = Headers::new();
        headers.add(TRACEPARENT, VALID);
        assert!(never.hop(&mut headers).context.sampled);
    }
}
