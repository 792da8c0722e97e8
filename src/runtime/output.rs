//! The records a task produced and has not yet handed to the producer.

use std::ops::Range;

use crate::observability::{TraceContext, TRACEPARENT};
use crate::processor::Headers;
use crate::security::{Signature, TopicSigning, KEY_ID, SIGNATURE};
use crate::serde::{Serde, SerdeError};
use crate::topology::TopicRef;

/// Where and when an output record goes.
#[derive(Debug)]
pub(crate) struct OutMeta {
    pub(crate) topic: TopicRef,
    /// `None` lets the producer's partitioner (murmur2 of the key) choose.
    pub(crate) partition: Option<i32>,
    pub(crate) timestamp: i64,
    pub(crate) headers: Headers,
    /// The hop that wrote the record (tracing on): its `traceparent`
    /// replaces any the headers carry when the record is written, so that
    /// carrying the context costs no allocation of its own.
    pub(crate) trace: Option<TraceContext>,
    /// The record's signature (its topic is signed): written as the
    /// `eddy-key-id` and `eddy-signature` headers, in place of any the
    /// headers carry.
    pub(crate) signature: Option<Signature>,
}

impl OutMeta {
    /// Where and when a record goes, without headers or trace.
    pub(crate) fn new(topic: TopicRef, partition: Option<i32>, timestamp: i64) -> Self {
        OutMeta {
            topic,
            partition,
            timestamp,
            headers: Headers::new(),
            trace: None,
            signature: None,
        }
    }

    /// Calls `f` with each header as written: the record's own, with the
    /// hop's `traceparent` in place of any they carry.
    pub(crate) fn each_header(&self, mut f: impl FnMut(&str, Option<&[u8]>)) {
        let trace = self.trace.map(|t| t.header_value());
        let signed = self.signature.is_some();
        for h in self.headers.iter() {
            let replaced = (trace.is_some() && h.key == TRACEPARENT)
                || (signed && (h.key == KEY_ID || h.key == SIGNATURE));
            if !replaced {
                f(&h.key, h.value.as_deref());
            }
        }
        if let Some(value) = &trace {
            f(TRACEPARENT, Some(&value[..]));
        }
        if let Some(s) = &self.signature {
            f(KEY_ID, Some(s.key_id.as_bytes()));
            f(SIGNATURE, Some(&s.hex()[..]));
        }
    }

    /// How many headers [`each_header`](Self::each_header) gives at most.
    pub(crate) fn header_count(&self) -> usize {
        self.headers.0.len()
            + usize::from(self.trace.is_some())
            + 2 * usize::from(self.signature.is_some())
    }

    /// The headers as written, owned.
    pub(crate) fn written_headers(&self) -> Headers {
        let mut out = Headers::new();
        self.each_header(|k, v| {
            out.0.push(crate::processor::Header {
                key: k.to_owned(),
                value: v.map(<[u8]>::to_vec),
            })
        });
        out
    }
}

#[derive(Debug)]
struct Slot {
    meta: OutMeta,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
}

/// One serialized output record, borrowed from the buffer.
#[derive(Debug)]
pub(crate) struct OutRecord<'a> {
    pub(crate) meta: &'a OutMeta,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
}

/// An arena of serialized output records: all keys and values share one
/// byte buffer, reused batch after batch, so producing a record costs no
/// allocation of its own.
#[derive(Debug, Default)]
pub(crate) struct OutputBuffer {
    bytes: Vec<u8>,
    slots: Vec<Slot>,
}

impl OutputBuffer {
    /// Serializes and appends a record; `None` key or value is a null. On a
    /// serialization error nothing is appended.
    pub(crate) fn push<K: 'static, V: 'static>(
        &mut self,
        meta: OutMeta,
        key: Option<(&K, &dyn Serde<K>)>,
        value: Option<(&V, &dyn Serde<V>)>,
    ) -> Result<(), SerdeError> {
        let mark = self.bytes.len();
        let result = (|| {
            let key = self.encode(key)?;
            let value = self.encode(value)?;
            Ok((key, value))
        })();
        match result {
            Ok((key, value)) => {
                self.slots.push(Slot { meta, key, value });
                Ok(())
            }
            Err(e) => {
                self.bytes.truncate(mark);
                Err(e)
            }
        }
    }

    /// Signs the record pushed last as a record of `topic`, over its bytes
    /// and headers as they will be written.
    pub(crate) fn sign_last(&mut self, topic: &str, signing: &TopicSigning) {
        let Some(slot) = self.slots.last_mut() else {
            return;
        };
        let part = |r: &Option<Range<usize>>| r.clone().map(|r| &self.bytes[r]);
        let trace = slot.meta.trace.map(|t| t.header_value());
        let headers = &slot.meta.headers;
        let header = |name: &str| match (name, &trace) {
            (TRACEPARENT, Some(t)) => Some(&t[..]),
            _ => headers.last(name),
        };
        let signature = signing.sign(topic, part(&slot.key), part(&slot.value), header);
        slot.meta.signature = signature;
    }

    /// Appends already-encoded bytes (dead-letter copies of input records).
    pub(crate) fn push_raw(&mut self, meta: OutMeta, key: Option<&[u8]>, value: Option<&[u8]>) {
        let mut copy = |data: Option<&[u8]>| {
            data.map(|d| {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(d);
                start..self.bytes.len()
            })
        };
        let key = copy(key);
        let value = copy(value);
        self.slots.push(Slot { meta, key, value });
    }

    fn encode<T: 'static>(
        &mut self,
        part: Option<(&T, &dyn Serde<T>)>,
    ) -> Result<Option<Range<usize>>, SerdeError> {
        part.map(|(v, serde)| {
            let start = self.bytes.len();
            serde.serialize(v, &mut self.bytes)?;
            Ok(start..self.bytes.len())
        })
        .transpose()
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = OutRecord<'_>> {
        self.slots.iter().map(|s| OutRecord {
            meta: &s.meta,
            key: s.key.clone().map(|r| &self.bytes[r]),
            value: s.value.clone().map(|r| &self.bytes[r]),
        })
    }

    /// Removes the records from index `from` on that `refused` picks,
    /// keeping the order of the others, and returns how many it removed.
    /// Only the records from `from` on are visited (the current record's
    /// outputs), however many the buffer holds. Their bytes stay in the
    /// arena until the next `clear`.
    pub(crate) fn remove_from(
        &mut self,
        from: usize,
        mut refused: impl FnMut(&OutMeta) -> bool,
    ) -> usize {
        let before = self.slots.len();
        let mut kept = from;
        for i in from..before {
            if !refused(&self.slots[i].meta) {
                self.slots.swap(kept, i);
                kept += 1;
            }
        }
        self.slots.truncate(kept);
        before - kept
    }

    /// Empties the buffer, keeping its capacity.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.slots.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serde::{I64Serde, StringSerde};

    fn meta() -> OutMeta {
        OutMeta::new(TopicRef(0), None, 5)
    }

    #[test]
    fn the_hop_context_replaces_the_one_a_record_carried() {
        let mut m = meta();
        m.headers
            .add("a", "1")
            .add(TRACEPARENT, "old")
            .add("b", "2");
        assert_eq!(m.written_headers(), m.headers);
        let hop = TraceContext::root(true);
        m.trace = Some(hop);
        let written = m.written_headers();
        let keys: Vec<&str> = written.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", TRACEPARENT]);
        assert_eq!(written.last(TRACEPARENT), Some(&hop.header_value()[..]));
        assert_eq!(m.header_count(), 4, "an upper bound");
    }

    #[test]
    fn records_share_one_buffer_and_nulls_stay_null() {
        let mut out = OutputBuffer::default();
        out.push(
            meta(),
            Some((&"k".to_string(), &StringSerde as _)),
            Some((&7i64, &I64Serde as _)),
        )
        .unwrap();
        out.push::<String, i64>(meta(), None, None).unwrap();
        out.push_raw(meta(), Some(b"raw"), None);
        let got: Vec<_> = out.iter().map(|r| (r.key, r.value)).collect();
        assert_eq!(
            got,
            vec![
                (Some(&b"k"[..]), Some(&7i64.to_be_bytes()[..])),
                (None, None),
                (Some(&b"raw"[..]), None)
            ]
        );
        out.clear();
        assert!(out.is_empty());
    }

    #[test]
    fn remove_from_only_looks_at_the_tail_and_keeps_order() {
        let mut out = OutputBuffer::default();
        for ts in [1, 9, 2, 9, 3, 4] {
            let mut m = meta();
            m.timestamp = ts;
            out.push_raw(m, Some(ts.to_string().as_bytes()), None);
        }
        let mut seen = Vec::new();
        let removed = out.remove_from(2, |m| {
            seen.push(m.timestamp);
            m.timestamp == 9
        });
        assert_eq!(removed, 1);
        assert_eq!(seen, [2, 9, 3, 4]);
        let keys: Vec<_> = out.iter().map(|r| r.key.unwrap().to_vec()).collect();
        assert_eq!(
            keys,
            [
                b"1".to_vec(),
                b"9".to_vec(),
                b"2".to_vec(),
                b"3".to_vec(),
                b"4".to_vec()
            ]
        );
        assert_eq!(out.remove_from(5, |_| true), 0);
        assert_eq!(out.remove_from(0, |_| true), 5);
        assert!(out.is_empty());
    }
}
