//! Stream-stream windowed joins.
//!
//! Each side's records are kept in a window store that keeps duplicates
//! (one entry per record, under its key, timestamp and a sequence made of
//! its source offset, so a write reads nothing and a record processed again
//! after a crash replaces its own entry); a record joins the other side's
//! records within the join window. For left and outer joins, records still unmatched are kept
//! in a third store and emitted with `None` for the other side only once
//! their window and the grace period have closed, never early.

use std::sync::Arc;
use std::time::Duration;

use super::builder::KStream;
use super::join::JoinKind;
use super::operator::Operator;
use crate::operators::stream_join::{fnv1a, reach, Joiner, Shared, StreamJoinSide};
use crate::processor::{millis, Data};
use crate::serde::Serde;
use crate::stores::StoreSpec;

/// How far apart in time two records may be to join: the other side's
/// record may be up to `before` earlier or `after` later than this side's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    /// Milliseconds the other record may precede this one.
    pub before: i64,
    /// Milliseconds the other record may follow this one.
    pub after: i64,
    /// How long after a window closes late records are still accepted.
    pub grace: i64,
}

impl JoinWindows {
    /// Records at most `difference` apart join; `grace` for late records.
    pub fn of(difference: Duration, grace: Duration) -> Self {
        let d = millis(difference);
        JoinWindows {
            before: d,
            after: d,
            grace: millis(grace),
        }
    }
}

/// The name and serdes of a stream-stream join's buffers (Kafka Streams'
/// `StreamJoined`): its stores are `<name>-left`, `<name>-right` and
/// `<name>-unmatched`.
///
/// ```
/// use std::time::Duration;
/// use eddy::topology::{JoinKind, JoinWindows, StreamJoined, StreamsBuilder};
/// use eddy::StringSerde;
///
/// let b = StreamsBuilder::new();
/// let clicks = b.stream("clicks", StringSerde, StringSerde);
/// let views = b.stream("views", StringSerde, StringSerde);
/// clicks
///     .join_stream(
///         &views,
///         JoinKind::Inner,
///         JoinWindows::of(Duration::from_secs(5), Duration::from_secs(1)),
///         |c: Option<&String>, v: Option<&String>| format!("{c:?}+{v:?}"),
///         StreamJoined::with("click-view", StringSerde, StringSerde, StringSerde),
///     )
///     .to("clicked-views", StringSerde, StringSerde);
/// let topology = b.build().unwrap();
/// assert_eq!(topology.stores().count(), 3);
/// ```
pub struct StreamJoined<K, V, VO> {
    name: String,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    other_value: Arc<dyn Serde<VO>>,
}

impl<K, V, VO> StreamJoined<K, V, VO> {
    /// Buffers named after `name`, keyed by `key`, holding this side's
    /// values with `value` and the other side's with `other_value`.
    pub fn with(
        name: &str,
        key: impl Serde<K>,
        value: impl Serde<V>,
        other_value: impl Serde<VO>,
    ) -> Self {
        StreamJoined {
            name: name.to_owned(),
            key: Arc::new(key),
            value: Arc::new(value),
            other_value: Arc::new(other_value),
        }
    }
}

impl<K: Data + PartialEq, V: Data> KStream<K, V> {
    /// Joins two co-partitioned streams by key within `windows`: records of
    /// the two sides at most `before`/`after` apart are joined, with the
    /// later timestamp. Left and outer joins emit `joiner(v, None)` (or
    /// `joiner(None, o)`) for records that found no partner, once their
    /// window and grace have closed. Both sides are buffered in changelogged
    /// window stores named and typed by `joined`.
    pub fn join_stream<VO: Data, VR: Data, F>(
        &self,
        other: &KStream<K, VO>,
        kind: JoinKind,
        windows: JoinWindows,
        joiner: F,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR>
    where
        F: Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        let StreamJoined {
            name,
            key,
            value: lv,
            other_value: rv,
        } = joined;
        let retention = (reach(windows) + 1).max(1);
        let (left_store, right_store, unmatched) = (
            format!("{name}-left"),
            format!("{name}-right"),
            format!("{name}-unmatched"),
        );
        {
            let mut g = self.graph.borrow_mut();
            // Joins fetch one key's records at a time (key-first layout)
            // and keep each record apart (duplicates).
            for store in [&left_store, &right_store] {
                g.stores.push(Arc::new(
                    StoreSpec::window(store, retention).with_duplicates(),
                ));
            }
            g.stores.push(Arc::new(StoreSpec::key_value(&unmatched)));
        }
        let left_shared = Shared {
            key: key.clone(),
            this_values: lv.clone(),
            other_values: rv.clone(),
            this_store: left_store.clone(),
            other_store: right_store.clone(),
            unmatched_store: unmatched.clone(),
            windows,
            kind,
        };
        let right_shared = Shared {
            key,
            this_values: rv,
            other_values: lv,
            this_store: right_store.clone(),
            other_store: left_store.clone(),
            unmatched_store: unmatched.clone(),
            windows: JoinWindows {
                before: windows.after,
                after: windows.before,
                grace: windows.grace,
            },
            kind,
        };
        let joiner = Arc::new(joiner);
        let (lj, rj) = (joiner.clone(), joiner);
        let left_keeps = kind != JoinKind::Inner;
        let right_keeps = kind == JoinKind::Outer;
        let from_left = self.add(
            Operator::keeps_key("join-this"),
            vec![self.node],
            move || StreamJoinSide {
                shared: left_shared.clone(),
                joiner: {
                    let j = lj.clone();
                    Arc::new(move |l: Option<&V>, r: Option<&VO>| j(l, r)) as Joiner<V, VO, VR>
                },
                side: 0,
                keep_unmatched: left_keeps,
                other_keeps_unmatched: right_keeps,
                stores: None,
                expired_before: i64::MIN,
                last_source: None,
                repeats: 0,
                topic_hash: (String::new(), fnv1a("")),
            },
        );
        let from_right = other.add(
            Operator::keeps_key("join-other"),
            vec![other.node],
            move || StreamJoinSide {
                shared: right_shared.clone(),
                joiner: {
                    let j = rj.clone();
                    Arc::new(move |r: Option<&VO>, l: Option<&V>| j(l, r)) as Joiner<VO, V, VR>
                },
                side: 1,
                keep_unmatched: right_keeps,
                other_keeps_unmatched: left_keeps,
                stores: None,
                expired_before: i64::MIN,
                last_source: None,
                repeats: 0,
                topic_hash: (String::new(), fnv1a("")),
            },
        );
        let stores = [left_store, right_store, unmatched];
        from_left.uses_stores(stores.clone());
        from_right.uses_stores(stores);
        from_left.merge(&from_right)
    }
}
