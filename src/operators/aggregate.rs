//! The processors behind aggregations and tables.

use std::sync::Arc;

use crate::processor::{
    Data, Failure, InitError, Processor, ProcessorContext, Record, OPENED_IN_INIT,
};
use crate::serde::Serde;
use crate::stores::{KeyValueStore, SessionStore, WindowStore};
use crate::topology::{Change, SessionWindows, TimeWindows, Window, Windowed};

/// Folds a value into an optional previous aggregate; an error sends the
/// record to the dead-letter topic.
pub(crate) type Fold<K, V, A> = Arc<dyn Fn(&K, V, Option<A>) -> Result<A, Failure> + Send + Sync>;
/// Merges two session aggregates.
pub(crate) type Merge<K, A> = Arc<dyn Fn(&K, A, A) -> A + Send + Sync>;

/// Serdes and store name of an aggregation.
pub(crate) struct StoreAccess<K, A> {
    pub(crate) name: String,
    pub(crate) key: Arc<dyn Serde<K>>,
    pub(crate) value: Arc<dyn Serde<A>>,
}

impl<K, A> Clone for StoreAccess<K, A> {
    fn clone(&self) -> Self {
        StoreAccess {
            name: self.name.clone(),
            key: self.key.clone(),
            value: self.value.clone(),
        }
    }
}

/// Keeps one aggregate per key in a key-value store and forwards each
/// change.
pub(crate) struct Aggregate<K, V, A> {
    pub(crate) access: StoreAccess<K, A>,
    pub(crate) fold: Fold<K, V, A>,
    pub(crate) store: Option<KeyValueStore<K, A>>,
}

impl<K: Data, V: Data, A: Data> Processor<K, V, K, Change<A>> for Aggregate<K, V, A> {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<A>>) -> Result<(), InitError> {
        let a = &self.access;
        self.store = Some(ctx.key_value_store(&a.name, a.key.clone(), a.value.clone())?);
        Ok(())
    }

    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, Change<A>>) {
        let store = self.store.as_ref().expect(OPENED_IN_INIT);
        let result = store.get(&r.key).map_err(Failure::from).and_then(|old| {
            let new = (self.fold)(&r.key, r.value, old.clone())?;
            store.put(&r.key, &new).map_err(Failure::from)?;
            Ok((old, new))
        });
        match result {
            Ok((old, new)) => ctx.forward(Record {
                key: r.key,
                value: Change {
                    old,
                    new: Some(new),
                },
                timestamp: r.timestamp,
                headers: r.headers,
            }),
            Err(e) => ctx.fail(e),
        }
    }
}

/// Materializes a topic as a table: upserts and deletes (null values) in a
/// store, forwarding each change.
pub(crate) struct TableSource<K, V> {
    pub(crate) access: StoreAccess<K, V>,
    pub(crate) store: Option<KeyValueStore<K, V>>,
}

impl<K: Data, V: Data> Processor<K, Option<V>, K, Change<V>> for TableSource<K, V> {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<(), InitError> {
        let a = &self.access;
        self.store = Some(ctx.key_value_store(&a.name, a.key.clone(), a.value.clone())?);
        Ok(())
    }

    fn process(&mut self, r: Record<K, Option<V>>, ctx: &mut ProcessorContext<'_, K, Change<V>>) {
        let store = self.store.as_ref().expect(OPENED_IN_INIT);
        let result = store.get(&r.key).and_then(|old| {
            match &r.value {
                Some(v) => store.put(&r.key, v)?,
                None => store.delete(&r.key)?,
            }
            Ok(old)
        });
        match result {
            // Deleting a key that is not there changes nothing.
            Ok(None) if r.value.is_none() => {}
            Ok(old) => ctx.forward(Record {
                key: r.key,
                value: Change { old, new: r.value },
                timestamp: r.timestamp,
                headers: r.headers,
            }),
            Err(e) => ctx.fail(e),
        }
    }
}

/// Aggregates per key and time window (tumbling or hopping), dropping
/// records whose windows have all closed, expiring windows past retention,
/// and forwarding either every update or (emit-final) each window once when
/// it closes.
pub(crate) struct WindowAggregate<K, V, A> {
    pub(crate) access: StoreAccess<K, A>,
    pub(crate) windows: TimeWindows,
    pub(crate) retention: i64,
    pub(crate) fold: Fold<K, V, A>,
    pub(crate) emit_final: bool,
    pub(crate) store: Option<WindowStore<K, A>>,
    /// Emit-final: windows starting before this were emitted.
    pub(crate) emitted_before: i64,
    /// Windows starting before this were expired.
    pub(crate) expired_before: i64,
}

impl<K: Data, V: Data, A: Data> Processor<K, V, Windowed<K>, Change<A>>
    for WindowAggregate<K, V, A>
{
    fn init(
        &mut self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
    ) -> Result<(), InitError> {
        let a = &self.access;
        self.store = Some(ctx.window_store(&a.name, a.key.clone(), a.value.clone())?);
        Ok(())
    }

    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>) {
        let store = self.store.clone().expect(OPENED_IN_INIT);
        let stream_time = ctx.stream_time();
        let grace = self.windows.grace;
        let mut accepted = false;
        for window in self.windows.windows_for(r.timestamp) {
            // Kafka Streams: a window is closed once stream time reaches
            // its end plus the grace period.
            if window.end + grace <= stream_time {
                continue;
            }
            accepted = true;
            let result = store
                .get(&r.key, window.start)
                .map_err(Failure::from)
                .and_then(|old| {
                    let new = (self.fold)(&r.key, r.value.clone(), old.clone())?;
                    store
                        .put(&r.key, window.start, Some(&new))
                        .map_err(Failure::from)?;
                    Ok((old, new))
                });
            match result {
                Ok((old, new)) if !self.emit_final => ctx.forward(Record {
                    key: Windowed {
                        key: r.key.clone(),
                        window,
                    },
                    value: Change {
                        old,
                        new: Some(new),
                    },
                    timestamp: r.timestamp,
                    headers: r.headers.clone(),
                }),
                Ok(_) => {}
                Err(e) => return ctx.fail(e),
            }
        }
        if !accepted {
            ctx.record_late_drop();
        }
        if self.emit_final {
            // Windows starting before `closed` have end + grace <= stream time.
            let closed = stream_time.saturating_sub(grace + self.windows.size) + 1;
            if closed > self.emitted_before {
                match store.fetch_all(self.emitted_before, closed) {
                    Ok(done) => {
                        for (key, start, value) in done {
                            let window = Window {
                                start,
                                end: start + self.windows.size,
                            };
                            ctx.forward(Record::new(
                                Windowed { key, window },
                                Change {
                                    old: None,
                                    new: Some(value),
                                },
                                window.end - 1,
                            ));
                        }
                        self.emitted_before = closed;
                    }
                    Err(e) => return ctx.fail(e),
                }
            }
        }
        // Expire at most once per window size: each expiry is a range
        // delete in the engine.
        let bound = stream_time.saturating_sub(self.retention);
        if bound >= self.expired_before.saturating_add(self.windows.size) {
            match store.expire_before(bound) {
                Ok(()) => self.expired_before = bound,
                Err(e) => ctx.fail(e),
            }
        }
    }
}

/// Aggregates per key and session: a record joins (and merges) the sessions
/// within the inactivity gap of it.
pub(crate) struct SessionAggregate<K, V, A> {
    pub(crate) access: StoreAccess<K, A>,
    pub(crate) windows: SessionWindows,
    pub(crate) fold: Fold<K, V, A>,
    pub(crate) merge: Merge<K, A>,
    pub(crate) store: Option<SessionStore<K, A>>,
}

impl<K: Data, V: Data, A: Data> Processor<K, V, Windowed<K>, Change<A>>
    for SessionAggregate<K, V, A>
{
    fn init(
        &mut self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
    ) -> Result<(), InitError> {
        let a = &self.access;
        self.store = Some(ctx.session_store(&a.name, a.key.clone(), a.value.clone())?);
        Ok(())
    }

    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>) {
        let store = self.store.clone().expect(OPENED_IN_INIT);
        let ts = r.timestamp;
        let gap = self.windows.gap;
        let overlapping = match store.find_sessions(&r.key, ts - gap, ts + gap) {
            Ok(s) => s,
            Err(e) => return ctx.fail(e),
        };
        let mut window = Window { start: ts, end: ts };
        for (w, _) in &overlapping {
            window.start = window.start.min(w.start);
            window.end = window.end.max(w.end);
        }
        // As in Kafka Streams: late once stream time passed the merged
        // session's end plus grace.
        if window.end + self.windows.grace < ctx.stream_time() {
            return ctx.record_late_drop();
        }
        let mut merged: Option<A> = None;
        for (w, value) in overlapping {
            merged = Some(match merged {
                None => value.clone(),
                Some(m) => (self.merge)(&r.key, m, value.clone()),
            });
            if let Err(e) = store.put(&r.key, w, None) {
                return ctx.fail(e);
            }
            ctx.forward(Record {
                key: Windowed {
                    key: r.key.clone(),
                    window: w,
                },
                value: Change {
                    old: Some(value),
                    new: None,
                },
                timestamp: w.end,
                headers: r.headers.clone(),
            });
        }
        let new = match (self.fold)(&r.key, r.value, merged) {
            Ok(new) => new,
            Err(e) => return ctx.fail(e),
        };
        if let Err(e) = store.put(&r.key, window, Some(&new)) {
            return ctx.fail(e);
        }
        ctx.forward(Record {
            key: Windowed { key: r.key, window },
            value: Change {
                old: None,
                new: Some(new),
            },
            timestamp: window.end,
            headers: r.headers,
        });
    }
}
