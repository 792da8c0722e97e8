//! The typed DSL: [`StreamsBuilder`] and [`KStream`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use super::graph::{
    NodeDef, NodeFactory, NodeKind, ProcessorFactory, TopicRef, TopicTable, Topology, TopologyError,
};
use super::operator::Operator;
use crate::operators::stateless::*;
use crate::processor::{Data, Processor, TimestampExtractor};
use crate::runtime::{typed_children, Instance, SinkNode, SourceNode};
use crate::serde::Serde;
use crate::stores::StoreSpec;

#[derive(Default)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) topics: TopicTable,
    pub(crate) stores: Vec<Arc<StoreSpec>>,
    /// Global tables: topic and the store it fills.
    /// Global tables: (topic, store name).
    pub(crate) globals: Vec<(String, String)>,
}

impl Graph {
    pub(crate) fn add(
        &mut self,
        op: Operator,
        kind: NodeKind,
        parents: Vec<usize>,
        factory: Arc<dyn NodeFactory>,
    ) -> usize {
        let index = self.nodes.len();
        let name = format!("KSTREAM-{}-{index:010}", op.name().to_uppercase());
        let key_changed =
            op.is_key_changing() || parents.iter().any(|&p| self.nodes[p].key_changed);
        self.nodes.push(NodeDef {
            name: name.into(),
            kind,
            parents,
            children: Vec::new(),
            factory,
            stores: Vec::new(),
            key_changed,
        });
        index
    }

    /// A generated name for a store or internal topic, unique in the graph.
    pub(crate) fn generated_name(&self, op: &str) -> String {
        format!("KSTREAM-{}-{:010}", op.to_uppercase(), self.nodes.len())
    }
}

/// Builds a [`Topology`] with the typed DSL.
///
/// ```
/// use eddy::serde::{I64Serde, StringSerde};
/// use eddy::topology::StreamsBuilder;
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream("words", StringSerde, StringSerde)
///     .filter(|_, w| !w.is_empty())
///     .map_values(|w| w.len() as i64)
///     .to("lengths", StringSerde, I64Serde);
/// let topology = builder.build().unwrap();
/// assert_eq!(topology.source_topics(), ["words"]);
/// println!("{}", topology.describe());
/// ```
#[derive(Default)]
pub struct StreamsBuilder {
    graph: Rc<RefCell<Graph>>,
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream of the records of `topic`, decoded with the given serdes.
    /// Records whose key or value fails to decode go to the dead-letter
    /// topic (or stop the worker, by configuration).
    pub fn stream<K: Data, V: Data>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> KStream<K, V> {
        add_source(
            &self.graph,
            topic,
            key_serde,
            value_serde,
            TimestampExtractor::default(),
        )
    }

    /// Like [`stream`](Self::stream), taking event time from `extractor`
    /// (a payload field, the wall clock, or the record timestamp with a
    /// policy for invalid ones).
    pub fn stream_with<K: Data, V: Data>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        extractor: TimestampExtractor,
    ) -> KStream<K, V> {
        add_source(&self.graph, topic, key_serde, value_serde, extractor)
    }

    /// Declares a state store for processors added with
    /// [`KStream::process_with_stores`].
    pub fn add_state_store(&self, spec: StoreSpec) {
        self.graph.borrow_mut().stores.push(Arc::new(spec));
    }

    /// Freezes the graph into a [`Topology`].
    pub fn build(self) -> Result<Topology, TopologyError> {
        let graph = std::mem::take(&mut *self.graph.borrow_mut());
        let mut topology = Topology::new(graph.nodes, graph.topics, graph.stores)?;
        topology.globals = graph.globals;
        Ok(topology)
    }

    pub(crate) fn graph(&self) -> &Rc<RefCell<Graph>> {
        &self.graph
    }
}

/// Adds a source node reading `topic`.
pub(crate) fn add_source<K: Data, V: Data>(
    graph: &Rc<RefCell<Graph>>,
    topic: &str,
    key_serde: impl Serde<K>,
    value_serde: impl Serde<V>,
    extractor: TimestampExtractor,
) -> KStream<K, V> {
    let factory = Arc::new(SourceFactory {
        extractor,
        key_serde: Arc::new(key_serde),
        value_serde: Arc::new(value_serde),
    });
    let mut g = graph.borrow_mut();
    g.topics.intern(topic);
    let node = g.add(
        Operator::keeps_key("source"),
        NodeKind::Source {
            topic: topic.to_owned(),
        },
        Vec::new(),
        factory,
    );
    drop(g);
    KStream::new(graph.clone(), node)
}

/// A typed stream of records: the result of a source or of an operator.
/// Operators take `&self`, so a stream can feed several downstream
/// operators (each gets every record).
pub struct KStream<K, V> {
    pub(crate) graph: Rc<RefCell<Graph>>,
    pub(crate) node: usize,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: Data, V: Data> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        KStream::new(self.graph.clone(), self.node)
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    pub(crate) fn new(graph: Rc<RefCell<Graph>>, node: usize) -> Self {
        KStream {
            graph,
            node,
            _types: PhantomData,
        }
    }

    pub(crate) fn add<KO: Data, VO: Data, P, S>(
        &self,
        op: Operator,
        parents: Vec<usize>,
        supplier: S,
    ) -> KStream<KO, VO>
    where
        S: Fn() -> P + Send + Sync + 'static,
        P: Processor<K, V, KO, VO>,
    {
        let factory = Arc::new(ProcessorFactory::<S, K, V, KO, VO> {
            supplier,
            _types: PhantomData,
        });
        let node = self.graph.borrow_mut().add(
            op,
            NodeKind::Processor { op: op.name() },
            parents,
            factory,
        );
        KStream::new(self.graph.clone(), node)
    }

    /// Names the node that produces this stream (instead of the generated
    /// `KSTREAM-<OP>-<n>`); names show in `describe` and must be unique.
    pub fn named(self, name: &str) -> Self {
        self.graph.borrow_mut().nodes[self.node].name = name.into();
        self
    }

    /// Keeps the records for which `predicate` holds.
    pub fn filter<F>(&self, predicate: F) -> Self
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        let predicate = Arc::new(predicate);
        self.add(Operator::keeps_key("filter"), vec![self.node], move || {
            Filter {
                predicate: predicate.clone(),
                keep: true,
            }
        })
    }

    /// Drops the records for which `predicate` holds.
    pub fn filter_not<F>(&self, predicate: F) -> Self
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        let predicate = Arc::new(predicate);
        self.add(
            Operator::keeps_key("filter-not"),
            vec![self.node],
            move || Filter {
                predicate: predicate.clone(),
                keep: false,
            },
        )
    }

    /// Replaces key and value.
    pub fn map<K2: Data, V2: Data, F>(&self, mapper: F) -> KStream<K2, V2>
    where
        F: Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    {
        let mapper = Arc::new(mapper);
        self.add(Operator::changes_key("map"), vec![self.node], move || {
            Map(mapper.clone())
        })
    }

    /// Replaces the value, keeping the key.
    pub fn map_values<V2: Data, F>(&self, mapper: F) -> KStream<K, V2>
    where
        F: Fn(V) -> V2 + Send + Sync + 'static,
    {
        let mapper = Arc::new(mapper);
        self.add(
            Operator::keeps_key("map-values"),
            vec![self.node],
            move || MapValues(mapper.clone()),
        )
    }

    /// Replaces each record by zero or more records, at most
    /// [`DEFAULT_MAX_OUTPUTS`] per record (see
    /// [`flat_map_bounded`](Self::flat_map_bounded)).
    pub fn flat_map<K2: Data, V2: Data, I, F>(&self, mapper: F) -> KStream<K2, V2>
    where
        F: Fn(K, V) -> I + Send + Sync + 'static,
        I: IntoIterator<Item = (K2, V2)>,
    {
        self.flat_map_bounded(DEFAULT_MAX_OUTPUTS, mapper)
    }

    /// Replaces each record by zero or more records, at most `max_outputs`
    /// per record: a record for which `mapper` yields more goes to the
    /// dead-letter topic (saying so), and nothing is emitted for it.
    pub fn flat_map_bounded<K2: Data, V2: Data, I, F>(
        &self,
        max_outputs: usize,
        mapper: F,
    ) -> KStream<K2, V2>
    where
        F: Fn(K, V) -> I + Send + Sync + 'static,
        I: IntoIterator<Item = (K2, V2)>,
    {
        let mapper = Arc::new(mapper);
        self.add(
            Operator::changes_key("flatmap"),
            vec![self.node],
            move || FlatMap {
                mapper: mapper.clone(),
                max_outputs,
            },
        )
    }

    /// Replaces each value by zero or more values under the same key, at
    /// most [`DEFAULT_MAX_OUTPUTS`] per record (see
    /// [`flat_map_values_bounded`](Self::flat_map_values_bounded)).
    pub fn flat_map_values<V2: Data, I, F>(&self, mapper: F) -> KStream<K, V2>
    where
        F: Fn(V) -> I + Send + Sync + 'static,
        I: IntoIterator<Item = V2>,
    {
        self.flat_map_values_bounded(DEFAULT_MAX_OUTPUTS, mapper)
    }

    /// Replaces each value by zero or more values under the same key, at
    /// most `max_outputs` per record: a record for which `mapper` yields
    /// more goes to the dead-letter topic (saying so), and nothing is
    /// emitted for it.
    pub fn flat_map_values_bounded<V2: Data, I, F>(
        &self,
        max_outputs: usize,
        mapper: F,
    ) -> KStream<K, V2>
    where
        F: Fn(V) -> I + Send + Sync + 'static,
        I: IntoIterator<Item = V2>,
    {
        let mapper = Arc::new(mapper);
        self.add(
            Operator::keeps_key("flatmap-values"),
            vec![self.node],
            move || FlatMapValues {
                mapper: mapper.clone(),
                max_outputs,
            },
        )
    }

    /// Computes a new key from key and value.
    pub fn select_key<K2: Data, F>(&self, mapper: F) -> KStream<K2, V>
    where
        F: Fn(&K, &V) -> K2 + Send + Sync + 'static,
    {
        let mapper = Arc::new(mapper);
        self.add(
            Operator::changes_key("key-select"),
            vec![self.node],
            move || SelectKey(mapper.clone()),
        )
    }

    /// Calls `action` on each record and passes it on unchanged.
    pub fn peek<F>(&self, action: F) -> Self
    where
        F: Fn(&K, &V) + Send + Sync + 'static,
    {
        let action = Arc::new(action);
        self.add(Operator::keeps_key("peek"), vec![self.node], move || Peek {
            action: action.clone(),
            terminal: false,
        })
    }

    /// Calls `action` on each record; ends the stream.
    pub fn foreach<F>(&self, action: F)
    where
        F: Fn(&K, &V) + Send + Sync + 'static,
    {
        let action = Arc::new(action);
        let _: KStream<K, V> =
            self.add(Operator::keeps_key("foreach"), vec![self.node], move || {
                Peek {
                    action: action.clone(),
                    terminal: true,
                }
            });
    }

    /// Records of both streams, in arrival order.
    pub fn merge(&self, other: &KStream<K, V>) -> Self {
        self.add(
            Operator::keeps_key("merge"),
            vec![self.node, other.node],
            || PassThrough,
        )
    }

    /// Routes each record to the first branch whose predicate holds.
    ///
    /// ```
    /// use eddy::serde::StringSerde;
    /// use eddy::topology::StreamsBuilder;
    /// let b = StreamsBuilder::new();
    /// let branches = b
    ///     .stream("in", StringSerde, StringSerde)
    ///     .split("by-size")
    ///     .branch("long", |_, v: &String| v.len() > 10)
    ///     .branch("short", |_, v: &String| !v.is_empty())
    ///     .default_branch("empty");
    /// branches["long"].to("long-words", StringSerde, StringSerde);
    /// ```
    pub fn split(&self, name: &str) -> SplitBuilder<K, V> {
        SplitBuilder {
            stream: self.clone(),
            name: name.to_owned(),
            branches: Vec::new(),
        }
    }

    /// Runs a custom [`Processor`] connected to the named stores (declared
    /// with [`StreamsBuilder::add_state_store`]), which it gets from its
    /// context.
    pub fn process_with_stores<KO: Data, VO: Data, P, S>(
        &self,
        supplier: S,
        stores: &[&str],
    ) -> KStream<KO, VO>
    where
        S: Fn() -> P + Send + Sync + 'static,
        P: Processor<K, V, KO, VO>,
    {
        let out = self.add(
            Operator::changes_key("processor"),
            vec![self.node],
            supplier,
        );
        out.uses_stores(stores.iter().map(|s| s.to_string()));
        out
    }

    /// Adds the node `supplier` makes after this stream's node.
    pub(crate) fn then<KO: Data, VO: Data, P, S>(
        &self,
        op: Operator,
        supplier: S,
    ) -> KStream<KO, VO>
    where
        S: Fn() -> P + Send + Sync + 'static,
        P: Processor<K, V, KO, VO>,
    {
        self.add(op, vec![self.node], supplier)
    }

    /// Whether an operator upstream may have changed the key since the
    /// source, so that grouping or a stateful operator needs a repartition
    /// first.
    pub(crate) fn repartition_required(&self) -> bool {
        self.graph.borrow().nodes[self.node].key_changed
    }

    /// Records that the node producing this stream uses `stores`.
    pub(crate) fn uses_stores(&self, stores: impl IntoIterator<Item = String>) {
        self.graph.borrow_mut().nodes[self.node]
            .stores
            .extend(stores);
    }

    /// Runs a custom [`Processor`], one instance per task, made by `supplier`.
    pub fn process<KO: Data, VO: Data, P, S>(&self, supplier: S) -> KStream<KO, VO>
    where
        S: Fn() -> P + Send + Sync + 'static,
        P: Processor<K, V, KO, VO>,
    {
        self.add(
            Operator::changes_key("processor"),
            vec![self.node],
            supplier,
        )
    }

    /// Writes the stream to `topic`, encoded with the given serdes. The
    /// producer partitions by the murmur2 hash of the encoded key, as the
    /// Java client does.
    pub fn to(&self, topic: &str, key_serde: impl Serde<K>, value_serde: impl Serde<V>) {
        let mut g = self.graph.borrow_mut();
        let topic_ref = g.topics.intern(topic);
        let factory = Arc::new(SinkFactory {
            topic: topic_ref,
            key_serde: Arc::new(key_serde) as Arc<dyn Serde<K>>,
            value_serde: Arc::new(value_serde) as Arc<dyn Serde<V>>,
        });
        g.add(
            Operator::keeps_key("sink"),
            NodeKind::Sink {
                topic: topic.to_owned(),
            },
            vec![self.node],
            factory,
        );
    }
}

impl<K: Data> KStream<K, serde_json::Value> {
    /// Masks personal data in each JSON value: the fields `masking` names
    /// are hashed (keyed, so equal values still join and group), redacted
    /// or dropped.
    ///
    /// ```
    /// use eddy::security::Masking;
    /// use eddy::testing::TestTopic;
    /// use eddy::{JsonSerde, StreamsBuilder, StringSerde, TopologyTestDriver};
    /// use serde_json::{json, Value};
    ///
    /// let masking = Masking::new().redact("email").unwrap().drop("address").unwrap();
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("orders", StringSerde, JsonSerde::<Value>::new())
    ///     .mask(&masking)
    ///     .to("orders-masked", StringSerde, JsonSerde::<Value>::new());
    /// let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    /// let input = TestTopic::new("orders", StringSerde, JsonSerde::<Value>::new());
    /// let output = TestTopic::new("orders-masked", StringSerde, JsonSerde::<Value>::new());
    /// let order = json!({"id": 1, "email": "ada@example.com", "address": "12 Row"});
    /// driver.pipe(&input, "o1".into(), order, 0).unwrap();
    /// assert_eq!(
    ///     driver.read_key_values(&output).unwrap(),
    ///     [("o1".into(), json!({"id": 1, "email": "[redacted]"}))]
    /// );
    /// ```
    pub fn mask(&self, masking: &crate::security::Masking) -> Self {
        let masking = masking.clone();
        self.add(Operator::keeps_key("mask"), vec![self.node], move || {
            Mask(masking.clone())
        })
    }
}

/// Collects the branches of [`KStream::split`].
pub struct SplitBuilder<K, V> {
    stream: KStream<K, V>,
    name: String,
    branches: Vec<(String, Predicate<K, V>)>,
}

/// The branch streams of a split, by branch name.
pub type Branches<K, V> = BTreeMap<String, KStream<K, V>>;

impl<K: Data, V: Data> SplitBuilder<K, V> {
    /// Adds a branch, tried after the branches added before it.
    pub fn branch<F>(mut self, name: &str, predicate: F) -> Self
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.branches.push((name.to_owned(), Box::new(predicate)));
        self
    }

    /// Ends the split with a branch for records no predicate matched.
    pub fn default_branch(self, name: &str) -> Branches<K, V> {
        self.finish(Some(name.to_owned()))
    }

    /// Ends the split; records no predicate matched are dropped.
    pub fn no_default_branch(self) -> Branches<K, V> {
        self.finish(None)
    }

    fn finish(self, default: Option<String>) -> Branches<K, V> {
        let has_default = default.is_some();
        let (names, predicates): (Vec<String>, Vec<Predicate<K, V>>) =
            self.branches.into_iter().unzip();
        let predicates = Arc::new(predicates);
        let split = self
            .stream
            .add(
                Operator::keeps_key("branch"),
                vec![self.stream.node],
                move || Split {
                    predicates: predicates.clone(),
                    has_default,
                },
            )
            .named(&self.name);
        names
            .into_iter()
            .chain(default)
            .map(|n| {
                let outlet = split
                    .add(
                        Operator::keeps_key("branch-outlet"),
                        vec![split.node],
                        || PassThrough,
                    )
                    .named(&format!("{}-{n}", self.name));
                (n, outlet)
            })
            .collect()
    }
}

struct SourceFactory<K, V> {
    extractor: TimestampExtractor,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
}

impl<K: Data, V: Data> NodeFactory for SourceFactory<K, V> {
    fn instantiate(&self, index: usize, children: &[(Arc<str>, &Instance)]) -> Instance {
        Instance::Source(Box::new(SourceNode {
            index,
            extractor: self.extractor.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            children: typed_children(children),
        }))
    }
}

struct SinkFactory<K, V> {
    topic: TopicRef,
    key_serde: Arc<dyn Serde<K>>,
    value_serde: Arc<dyn Serde<V>>,
}

impl<K: Data, V: Data> NodeFactory for SinkFactory<K, V> {
    fn instantiate(&self, index: usize, _children: &[(Arc<str>, &Instance)]) -> Instance {
        SinkNode {
            index,
            topic: self.topic,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
        }
        .instance()
    }
}
