//! Grouping, repartitioning and aggregations.

use std::sync::Arc;
use std::time::Duration;

use super::builder::{add_source, KStream, StreamsBuilder};
use super::operator::Operator;
use super::table::{Change, KTable, KvSerdes};
use super::windows::{SessionWindows, TimeWindows, Windowed};
use crate::operators::aggregate::{
    Aggregate, Fold, Merge, SessionAggregate, StoreAccess, TableSource, WindowAggregate,
};
use crate::processor::{millis, Data, Failure, TimestampExtractor};
use crate::serde::{I64Serde, Nullable, Serde};
use crate::stores::StoreSpec;

const DAY: i64 = 24 * 60 * 60 * 1000;

/// Declares the store `spec`, adds the node `supplier` makes after
/// `stream`, connected to that store, and returns its output as the table
/// the store materializes.
fn materialized_node<K: Data, V: Data, KO: Data, VO: Data, P, S>(
    stream: &KStream<K, V>,
    spec: StoreSpec,
    op: Operator,
    supplier: S,
    kv: Option<KvSerdes<KO, VO>>,
) -> KTable<KO, VO>
where
    S: Fn() -> P + Send + Sync + 'static,
    P: crate::processor::Processor<K, V, KO, Change<VO>>,
{
    let name = spec.name.clone();
    stream.graph.borrow_mut().stores.push(Arc::new(spec));
    let changes = stream.add(op, vec![stream.node], supplier);
    changes.uses_stores([name.clone()]);
    KTable {
        changes,
        store: Some(name),
        kv,
    }
}

/// Counting: one more per record.
fn count_fold<K, V>() -> Fold<K, V, i64> {
    Arc::new(|_, _, n| Ok(n.unwrap_or(0) + 1))
}

/// Reducing: the first value, then `reducer(aggregate, value)`.
fn reduce_fold<K, V, F>(reducer: F) -> Fold<K, V, V>
where
    F: Fn(V, V) -> V + Send + Sync + 'static,
{
    Arc::new(move |_, v, old| {
        Ok(match old {
            None => v,
            Some(o) => reducer(o, v),
        })
    })
}

/// Aggregating: `aggregator(key, value, aggregate)` from `init()`; an
/// error dead-letters the record.
fn try_aggregate_fold<K, V, A, I, F>(init: I, aggregator: F) -> Fold<K, V, A>
where
    I: Fn() -> A + Send + Sync + 'static,
    F: Fn(&K, V, A) -> Result<A, Failure> + Send + Sync + 'static,
{
    Arc::new(move |k, v, old| aggregator(k, v, old.unwrap_or_else(&init)))
}

/// Aggregating with an infallible `aggregator`.
fn aggregate_fold<K, V, A, I, F>(init: I, aggregator: F) -> Fold<K, V, A>
where
    I: Fn() -> A + Send + Sync + 'static,
    F: Fn(&K, V, A) -> A + Send + Sync + 'static,
{
    try_aggregate_fold(init, move |k, v, a| Ok(aggregator(k, v, a)))
}

impl<K: Data, V: Data> KStream<K, V> {
    /// Writes the stream to the internal topic `<application.id>-<name>-repartition`
    /// and reads it back, so records are partitioned by their current key.
    pub fn repartition(
        &self,
        name: &str,
        key_serde: impl Serde<K> + Clone,
        value_serde: impl Serde<V> + Clone,
    ) -> Self {
        let topic = format!("{name}-repartition");
        self.graph.borrow_mut().topics.intern_internal(&topic);
        self.to(&topic, key_serde.clone(), value_serde.clone());
        // Records keep the timestamps the repartition sink wrote.
        add_source(
            &self.graph,
            &topic,
            key_serde,
            value_serde,
            TimestampExtractor::default(),
        )
    }

    /// Groups records by key for an aggregation. If an operator upstream
    /// may have changed the key (map, flat_map, select_key, process), the
    /// records are first repartitioned by key through an internal topic.
    pub fn group_by_key(
        &self,
        key_serde: impl Serde<K> + Clone,
        value_serde: impl Serde<V> + Clone,
    ) -> KGroupedStream<K, V> {
        let stream = if self.repartition_required() {
            let name = self.graph.borrow().generated_name("repartition");
            self.repartition(&name, key_serde.clone(), value_serde.clone())
        } else {
            self.clone()
        };
        KGroupedStream {
            stream,
            key: Arc::new(key_serde),
        }
    }

    /// Groups records by a new key computed from key and value; always
    /// repartitions.
    pub fn group_by<K2: Data, F>(
        &self,
        selector: F,
        key_serde: impl Serde<K2> + Clone,
        value_serde: impl Serde<V> + Clone,
    ) -> KGroupedStream<K2, V>
    where
        F: Fn(&K, &V) -> K2 + Send + Sync + 'static,
    {
        let rekeyed = self.select_key(selector);
        let name = self.graph.borrow().generated_name("repartition");
        KGroupedStream {
            stream: rekeyed.repartition(&name, key_serde.clone(), value_serde),
            key: Arc::new(key_serde),
        }
    }
}

impl StreamsBuilder {
    /// A table of `topic`'s latest value per key, materialized in the
    /// key-value store `store` (null values delete).
    pub fn table<K: Data, V: Data>(
        &self,
        topic: &str,
        key_serde: impl Serde<K> + Clone,
        value_serde: impl Serde<V> + Clone,
        store: &str,
    ) -> KTable<K, V> {
        let source = add_source(
            self.graph(),
            topic,
            key_serde.clone(),
            Nullable(value_serde.clone()),
            TimestampExtractor::default(),
        );
        let access = StoreAccess {
            name: store.to_owned(),
            key: Arc::new(key_serde) as Arc<dyn Serde<K>>,
            value: Arc::new(value_serde) as Arc<dyn Serde<V>>,
        };
        let kv = KvSerdes {
            key: access.key.clone(),
            value: access.value.clone(),
        };
        let supplier = move || TableSource {
            access: access.clone(),
            store: None,
        };
        materialized_node(
            &source,
            StoreSpec::key_value(store),
            Operator::keeps_key("ktable-source"),
            supplier,
            Some(kv),
        )
    }
}

/// A stream grouped by key, ready to aggregate.
pub struct KGroupedStream<K, V> {
    stream: KStream<K, V>,
    key: Arc<dyn Serde<K>>,
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    fn aggregate_with<A: Data>(
        &self,
        store: &str,
        value: Arc<dyn Serde<A>>,
        fold: Fold<K, V, A>,
    ) -> KTable<K, A> {
        let access = StoreAccess {
            name: store.to_owned(),
            key: self.key.clone(),
            value,
        };
        let kv = KvSerdes {
            key: access.key.clone(),
            value: access.value.clone(),
        };
        let supplier = move || Aggregate {
            access: access.clone(),
            fold: fold.clone(),
            store: None,
        };
        materialized_node(
            &self.stream,
            StoreSpec::key_value(store),
            Operator::keeps_key("aggregate"),
            supplier,
            Some(kv),
        )
    }

    /// Counts records per key, in the key-value store `store`.
    pub fn count(&self, store: &str) -> KTable<K, i64> {
        self.aggregate_with(store, Arc::new(I64Serde), count_fold())
    }

    /// Combines the values of each key with `reducer`.
    pub fn reduce<F>(&self, reducer: F, store: &str, value_serde: impl Serde<V>) -> KTable<K, V>
    where
        F: Fn(V, V) -> V + Send + Sync + 'static,
    {
        self.aggregate_with(store, Arc::new(value_serde), reduce_fold(reducer))
    }

    /// Folds the values of each key into an aggregate starting at `init()`.
    pub fn aggregate<A: Data, I, F>(
        &self,
        init: I,
        aggregator: F,
        store: &str,
        aggregate_serde: impl Serde<A>,
    ) -> KTable<K, A>
    where
        I: Fn() -> A + Send + Sync + 'static,
        F: Fn(&K, V, A) -> A + Send + Sync + 'static,
    {
        self.aggregate_with(
            store,
            Arc::new(aggregate_serde),
            aggregate_fold(init, aggregator),
        )
    }

    /// Like [`aggregate`](Self::aggregate) with a fallible `aggregator`: a
    /// record it refuses goes to the dead-letter topic with the reason and
    /// leaves the aggregate as it was.
    pub fn try_aggregate<A: Data, I, F>(
        &self,
        init: I,
        aggregator: F,
        store: &str,
        aggregate_serde: impl Serde<A>,
    ) -> KTable<K, A>
    where
        I: Fn() -> A + Send + Sync + 'static,
        F: Fn(&K, V, A) -> Result<A, Failure> + Send + Sync + 'static,
    {
        self.aggregate_with(
            store,
            Arc::new(aggregate_serde),
            try_aggregate_fold(init, aggregator),
        )
    }

    /// Aggregates per time window.
    pub fn windowed_by(&self, windows: TimeWindows) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream {
            stream: self.stream.clone(),
            key: self.key.clone(),
            windows,
            emit_final: false,
            retention: DAY.max(windows.size + windows.grace),
        }
    }

    /// Aggregates per session.
    pub fn session_windowed_by(&self, windows: SessionWindows) -> SessionWindowedKStream<K, V> {
        SessionWindowedKStream {
            stream: self.stream.clone(),
            key: self.key.clone(),
            windows,
            retention: DAY.max(windows.gap + windows.grace),
        }
    }
}

/// A grouped stream windowed by time, ready to aggregate.
///
/// ```
/// use std::time::Duration;
/// use eddy::serde::{I64Serde, Nullable};
/// use eddy::testing::TestTopic;
/// use eddy::topology::{TimeWindows, WindowedSerde};
/// use eddy::{StreamsBuilder, StringSerde, TopologyTestDriver};
///
/// let b = StreamsBuilder::new();
/// let minute = TimeWindows::tumbling(Duration::from_secs(60), Duration::ZERO);
/// b.stream("clicks", StringSerde, StringSerde)
///     .group_by_key(StringSerde, StringSerde)
///     .windowed_by(minute)
///     .count("clicks-per-minute")
///     .to_stream()
///     .to("counts", WindowedSerde(StringSerde), Nullable(I64Serde));
/// let mut driver = TopologyTestDriver::new(b.build().unwrap());
/// let clicks = TestTopic::new("clicks", StringSerde, StringSerde);
/// for at in [0, 30_000, 60_000] {
///     driver.pipe(&clicks, "ann".into(), "home".into(), at).unwrap();
/// }
/// let counts = TestTopic::new("counts", WindowedSerde(StringSerde), Nullable(I64Serde));
/// let seen: Vec<_> = driver
///     .read_key_values(&counts)
///     .unwrap()
///     .into_iter()
///     .map(|(k, n)| (k.key, k.window.start, n))
///     .collect();
/// assert_eq!(
///     seen,
///     [("ann".into(), 0, Some(1)), ("ann".into(), 0, Some(2)), ("ann".into(), 60_000, Some(1))]
/// );
/// ```
pub struct TimeWindowedKStream<K, V> {
    stream: KStream<K, V>,
    key: Arc<dyn Serde<K>>,
    windows: TimeWindows,
    emit_final: bool,
    retention: i64,
}

impl<K: Data, V: Data> TimeWindowedKStream<K, V> {
    /// Emits one result per window when it closes (end + grace), instead of
    /// every update.
    pub fn emit_final(mut self) -> Self {
        self.emit_final = true;
        self
    }

    /// Keeps windows this long (default: one day, or size + grace if more).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = millis(retention).max(self.windows.size + self.windows.grace);
        self
    }

    fn aggregate_with<A: Data>(
        &self,
        store: &str,
        value: Arc<dyn Serde<A>>,
        fold: Fold<K, V, A>,
    ) -> KTable<Windowed<K>, A> {
        let access = StoreAccess {
            name: store.to_owned(),
            key: self.key.clone(),
            value,
        };
        let (windows, retention, emit_final) = (self.windows, self.retention, self.emit_final);
        let supplier = move || WindowAggregate {
            access: access.clone(),
            windows,
            retention,
            fold: fold.clone(),
            emit_final,
            store: None,
            emitted_before: i64::MIN,
            expired_before: i64::MIN,
        };
        let spec = StoreSpec::window(store, self.retention);
        materialized_node(
            &self.stream,
            spec,
            Operator::keeps_key("windowed-aggregate"),
            supplier,
            None,
        )
    }

    /// Counts records per key and window.
    pub fn count(&self, store: &str) -> KTable<Windowed<K>, i64> {
        self.aggregate_with(store, Arc::new(I64Serde), count_fold())
    }

    /// Combines values per key and window.
    pub fn reduce<F>(
        &self,
        reducer: F,
        store: &str,
        value_serde: impl Serde<V>,
    ) -> KTable<Windowed<K>, V>
    where
        F: Fn(V, V) -> V + Send + Sync + 'static,
    {
        self.aggregate_with(store, Arc::new(value_serde), reduce_fold(reducer))
    }

    /// Folds values per key and window into an aggregate starting at `init()`.
    pub fn aggregate<A: Data, I, F>(
        &self,
        init: I,
        aggregator: F,
        store: &str,
        aggregate_serde: impl Serde<A>,
    ) -> KTable<Windowed<K>, A>
    where
        I: Fn() -> A + Send + Sync + 'static,
        F: Fn(&K, V, A) -> A + Send + Sync + 'static,
    {
        self.aggregate_with(
            store,
            Arc::new(aggregate_serde),
            aggregate_fold(init, aggregator),
        )
    }

    /// Like [`aggregate`](Self::aggregate) with a fallible `aggregator`.
    pub fn try_aggregate<A: Data, I, F>(
        &self,
        init: I,
        aggregator: F,
        store: &str,
        aggregate_serde: impl Serde<A>,
    ) -> KTable<Windowed<K>, A>
    where
        I: Fn() -> A + Send + Sync + 'static,
        F: Fn(&K, V, A) -> Result<A, Failure> + Send + Sync + 'static,
    {
        self.aggregate_with(
            store,
            Arc::new(aggregate_serde),
            try_aggregate_fold(init, aggregator),
        )
    }
}

/// A grouped stream windowed by sessions, ready to aggregate.
pub struct SessionWindowedKStream<K, V> {
    stream: KStream<K, V>,
    key: Arc<dyn Serde<K>>,
    windows: SessionWindows,
    retention: i64,
}

impl<K: Data, V: Data> SessionWindowedKStream<K, V> {
    fn aggregate_with<A: Data>(
        &self,
        store: &str,
        value: Arc<dyn Serde<A>>,
        fold: Fold<K, V, A>,
        merge: Merge<K, A>,
    ) -> KTable<Windowed<K>, A> {
        let access = StoreAccess {
            name: store.to_owned(),
            key: self.key.clone(),
            value,
        };
        let windows = self.windows;
        let supplier = move || SessionAggregate {
            access: access.clone(),
            windows,
            fold: fold.clone(),
            merge: merge.clone(),
            store: None,
        };
        let spec = StoreSpec::session(store, self.retention);
        materialized_node(
            &self.stream,
            spec,
            Operator::keeps_key("session-aggregate"),
            supplier,
            None,
        )
    }

    /// Counts records per key and session.
    pub fn count(&self, store: &str) -> KTable<Windowed<K>, i64> {
        self.aggregate_with(
            store,
            Arc::new(I64Serde),
            count_fold(),
            Arc::new(|_, a, b| a + b),
        )
    }

    /// Combines values per key and session (also to merge sessions).
    pub fn reduce<F>(
        &self,
        reducer: F,
        store: &str,
        value_serde: impl Serde<V>,
    ) -> KTable<Windowed<K>, V>
    where
        F: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let reducer = Arc::new(reducer);
        let merge = reducer.clone();
        self.aggregate_with(
            store,
            Arc::new(value_serde),
            reduce_fold(move |a, b| reducer(a, b)),
            Arc::new(move |_, a, b| merge(a, b)),
        )
    }

    /// Folds values per key and session; `merger` combines the aggregates
    /// of sessions a record joins together.
    pub fn aggregate<A: Data, I, F, M>(
        &self,
        init: I,
        aggregator: F,
        merger: M,
        store: &str,
        aggregate_serde: impl Serde<A>,
    ) -> KTable<Windowed<K>, A>
    where
        I: Fn() -> A + Send + Sync + 'static,
        F: Fn(&K, V, A) -> A + Send + Sync + 'static,
        M: Fn(&K, A, A) -> A + Send + Sync + 'static,
    {
        self.aggregate_with(
            store,
            Arc::new(aggregate_serde),
            aggregate_fold(init, aggregator),
            Arc::new(merger),
        )
    }
}
