//! The stream-stream join's processor: one per side.
//!
//! Each side's records are kept in a window store that keeps duplicates
//! (one entry per record, under its key, timestamp and a sequence made of
//! its source offset, so a write reads nothing and a record processed again
//! after a crash replaces its own entry); a record joins the other side's
//! records within the join window. For left and outer joins, records still unmatched are kept
//! in a third store and emitted with `None` for the other side only once
//! their window and the grace period have closed, never early.

use std::sync::Arc;

use crate::processor::{
    Data, Failure, InitError, Processor, ProcessorContext, Record, OPENED_IN_INIT,
};
use crate::serde::{BytesSerde, Serde, SerdeError};
use crate::stores::{sortable, unsortable, KeyValueStore, WindowStore};
use crate::topology::{JoinKind, JoinWindows};

/// Encodes a list of values: each as a 4-byte length and its bytes.
pub(crate) struct ListSerde<V>(Arc<dyn Serde<V>>);

impl<V: 'static> Serde<Vec<V>> for ListSerde<V> {
    fn serialize(&self, values: &Vec<V>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        for v in values {
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            self.0.serialize(v, out)?;
            let len = (out.len() - at - 4) as u32;
            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        Ok(())
    }

    fn deserialize(&self, data: Option<&[u8]>) -> Result<Vec<V>, SerdeError> {
        let mut data = data.ok_or(SerdeError::UnexpectedNull)?;
        let mut out = Vec::new();
        while !data.is_empty() {
            if data.len() < 4 {
                return Err(SerdeError::Size {
                    expected: 4,
                    actual: data.len(),
                });
            }
            let len = u32::from_be_bytes(data[..4].try_into().expect("4 bytes")) as usize;
            let end = 4 + len;
            if data.len() < end {
                return Err(SerdeError::Size {
                    expected: end,
                    actual: data.len(),
                });
            }
            out.push(self.0.deserialize(Some(&data[4..end]))?);
            data = &data[end..];
        }
        Ok(out)
    }
}

/// How far behind stream time a join window store is still read: a record
/// is late past `max(before, after) + grace` behind it, and the other
/// side's records it joins may be up to `before` (or `after`) earlier
/// still.
pub(crate) fn reach(w: JoinWindows) -> i64 {
    2 * w.before.max(w.after) + w.grace
}

/// The 32-bit FNV-1a hash of a topic name: stable across versions and
/// machines, as a stored sequence must be.
pub(crate) fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

pub(crate) type Joiner<V, VO, VR> = Arc<dyn Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync>;

/// What both sides' processors share.
pub(crate) struct Shared<K, V, VO> {
    pub(crate) key: Arc<dyn Serde<K>>,
    pub(crate) this_values: Arc<dyn Serde<V>>,
    pub(crate) other_values: Arc<dyn Serde<VO>>,
    pub(crate) this_store: String,
    pub(crate) other_store: String,
    pub(crate) unmatched_store: String,
    pub(crate) windows: JoinWindows,
    pub(crate) kind: JoinKind,
}

impl<K, V, VO> Clone for Shared<K, V, VO> {
    fn clone(&self) -> Self {
        Shared {
            key: self.key.clone(),
            this_values: self.this_values.clone(),
            other_values: self.other_values.clone(),
            this_store: self.this_store.clone(),
            other_store: self.other_store.clone(),
            unmatched_store: self.unmatched_store.clone(),
            windows: self.windows,
            kind: self.kind,
        }
    }
}

/// One side of the join. `V` is this side's value, `VO` the other's; the
/// joiner always takes (left, right), so the right side flips it.
pub(crate) struct StreamJoinSide<K, V, VO, VR> {
    pub(crate) shared: Shared<K, V, VO>,
    pub(crate) joiner: Joiner<V, VO, VR>,
    /// 0 for the left stream, 1 for the right.
    pub(crate) side: u8,
    /// Whether this side's unmatched records are emitted (left: left and
    /// outer joins; right: outer joins).
    pub(crate) keep_unmatched: bool,
    /// Whether the other side's unmatched records are emitted.
    pub(crate) other_keeps_unmatched: bool,
    pub(crate) stores: Option<Stores<K, V, VO>>,
    pub(crate) expired_before: i64,
    /// The source of the last record stored (topic hash, partition,
    /// offset) and how many records before it came from the same one.
    pub(crate) last_source: Option<(u32, i32, i64)>,
    pub(crate) repeats: u32,
    /// The last source topic and its hash (hashed once per topic change).
    pub(crate) topic_hash: (String, u32),
}

pub(crate) struct Stores<K, V, VO> {
    pub(crate) this: WindowStore<K, V>,
    pub(crate) other: WindowStore<K, VO>,
    /// `ts ‖ side ‖ key` → encoded value list of that side.
    pub(crate) unmatched: KeyValueStore<Vec<u8>, Vec<u8>>,
}

impl<K: Data + PartialEq, V: Data, VO: Data, VR: Data> StreamJoinSide<K, V, VO, VR> {
    fn unmatched_key(&self, ts: i64, side: u8, key: &K) -> Result<Vec<u8>, SerdeError> {
        let mut k = sortable(ts).to_vec();
        k.push(side);
        self.shared.key.serialize(key, &mut k)?;
        Ok(k)
    }

    fn step(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K, VR>,
    ) -> Result<(), Failure> {
        let w = self.shared.windows;
        let stream_time = ctx.stream_time();
        let (lo, hi) = (w.before, w.after);
        // This record's window closes at ts + after (+ grace).
        if r.timestamp + hi.max(lo) + w.grace < stream_time {
            ctx.record_late_drop();
            return Ok(());
        }
        let sequence = self.sequence(ctx);
        let s = self.stores.as_ref().expect(OPENED_IN_INIT);
        s.this
            .put_duplicate(&r.key, r.timestamp, sequence, &r.value)?;
        let matches = s
            .other
            .fetch(&r.key, r.timestamp - lo, r.timestamp + hi + 1)?;
        let mut matched_at = None;
        for (ts, o) in &matches {
            let v = (self.joiner)(Some(&r.value), Some(o));
            ctx.forward(Record {
                key: r.key.clone(),
                value: v,
                timestamp: r.timestamp.max(*ts),
                headers: r.headers.clone(),
            });
            if self.other_keeps_unmatched && matched_at != Some(*ts) {
                let k = self.unmatched_key(*ts, 1 - self.side, &r.key)?;
                s.unmatched.delete(&k)?;
                matched_at = Some(*ts);
            }
        }
        if matches.is_empty() && self.keep_unmatched {
            let k = self.unmatched_key(r.timestamp, self.side, &r.key)?;
            let mut buf = Vec::new();
            let mut pending = match s.unmatched.get(&k)? {
                Some(b) => ListSerde(self.shared.this_values.clone()).deserialize(Some(&b))?,
                None => Vec::new(),
            };
            pending.push(r.value);
            ListSerde(self.shared.this_values.clone()).serialize(&pending, &mut buf)?;
            s.unmatched.put(&k, &buf)?;
        }
        self.emit_closed(ctx)?;
        // A record that is not late (at most max(lo, hi) + grace behind
        // stream time) fetches up to lo or hi earlier still: windows
        // starting before that can no longer join anything.
        let bound = stream_time.saturating_sub(reach(w) + 1);
        if bound >= self.expired_before.saturating_add(lo + hi + 1) {
            s.this.expire_before(bound)?;
            s.other.expire_before(bound)?;
            self.expired_before = bound;
        }
        Ok(())
    }

    /// The sequence this side's store keeps the current record under: its
    /// source offset, then its topic and partition, then how many records
    /// of the same source came before it (one input record that an
    /// upstream `flat_map` made several). Deterministic, so reprocessing a
    /// record replaces its entry rather than adding another.
    fn sequence(&mut self, ctx: &ProcessorContext<'_, K, VR>) -> u128 {
        let topic_hash = &mut self.topic_hash;
        let source = ctx.record_source().map(|s| {
            if topic_hash.0 != s.topic {
                *topic_hash = (s.topic.to_owned(), fnv1a(s.topic));
            }
            (topic_hash.1, s.partition, s.offset)
        });
        if source.is_some() && source == self.last_source {
            self.repeats = self.repeats.wrapping_add(1);
        } else {
            self.repeats = 0;
            self.last_source = source;
        }
        let (topic, partition, offset) = source.unwrap_or((0, -1, -1));
        (u128::from(u64::from_be_bytes(sortable(offset))) << 64)
            | (u128::from(topic ^ partition as u32) << 32)
            | u128::from(self.repeats)
    }

    /// Emits unmatched records (of either side) whose window and grace have
    /// closed, then forgets them.
    fn emit_closed(&self, ctx: &mut ProcessorContext<'_, K, VR>) -> Result<(), Failure> {
        if !self.keep_unmatched && !self.other_keeps_unmatched {
            return Ok(());
        }
        let s = self.stores.as_ref().expect(OPENED_IN_INIT);
        let w = self.shared.windows;
        let close = ctx
            .stream_time()
            .saturating_sub(w.before.max(w.after) + w.grace);
        let to = sortable(close);
        let closed = s.unmatched.range(None, Some(&to.to_vec()))?;
        for (k, values) in closed {
            let ts = unsortable(&k);
            let side = k[8];
            let key = self.shared.key.deserialize(Some(&k[9..]))?;
            if side == self.side {
                for v in ListSerde(self.shared.this_values.clone()).deserialize(Some(&values))? {
                    let out = (self.joiner)(Some(&v), None);
                    ctx.forward(Record::new(key.clone(), out, ts));
                }
            } else {
                for o in ListSerde(self.shared.other_values.clone()).deserialize(Some(&values))? {
                    let out = (self.joiner)(None, Some(&o));
                    ctx.forward(Record::new(key.clone(), out, ts));
                }
            }
            s.unmatched.delete(&k)?;
        }
        Ok(())
    }
}

impl<K: Data + PartialEq, V: Data, VO: Data, VR: Data> Processor<K, V, K, VR>
    for StreamJoinSide<K, V, VO, VR>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VR>) -> Result<(), InitError> {
        let sh = &self.shared;
        self.stores = Some(Stores {
            this: ctx.window_store(&sh.this_store, sh.key.clone(), sh.this_values.clone())?,
            other: ctx.window_store(&sh.other_store, sh.key.clone(), sh.other_values.clone())?,
            unmatched: ctx.key_value_store(
                &sh.unmatched_store,
                Arc::new(BytesSerde),
                Arc::new(BytesSerde),
            )?,
        });
        Ok(())
    }

    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, VR>) {
        if let Err(e) = self.step(r, ctx) {
            ctx.fail(e);
        }
    }
}
