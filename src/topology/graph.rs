//! The logical graph: nodes, edges, topics and sub-topologies.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::processor::{Data, Processor};
use crate::runtime::{typed_children, Instance, ProcessorNode};
use crate::stores::StoreSpec;

/// Index of a topic in a topology's [`TopicTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TopicRef(pub(crate) u32);

/// Topic names, interned so records carry a small index instead of a name.
/// Internal topics (repartition topics) are named without the application
/// id until [`resolve`](Self::resolve) prefixes them.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopicTable {
    names: Vec<String>,
    internal: Vec<bool>,
}

impl TopicTable {
    pub(crate) fn intern(&mut self, name: &str) -> TopicRef {
        match self.get(name) {
            Some(t) => t,
            None => {
                self.names.push(name.to_owned());
                self.internal.push(false);
                TopicRef(self.names.len() as u32 - 1)
            }
        }
    }

    /// Interns an internal topic, named `<application.id>-<name>` once
    /// resolved.
    pub(crate) fn intern_internal(&mut self, name: &str) -> TopicRef {
        let t = self.intern(name);
        self.internal[t.0 as usize] = true;
        t
    }

    /// The table with internal topics prefixed by the application id;
    /// topic refs stay valid.
    pub(crate) fn resolve(&self, application_id: &str) -> TopicTable {
        let names = self
            .names
            .iter()
            .zip(&self.internal)
            .map(|(n, &internal)| {
                if internal {
                    format!("{application_id}-{n}")
                } else {
                    n.clone()
                }
            })
            .collect();
        TopicTable {
            names,
            internal: vec![false; self.internal.len()],
        }
    }

    /// Whether a topic is a repartition topic (created by eddy); false for
    /// refs this table does not have.
    pub(crate) fn is_internal(&self, topic: TopicRef) -> bool {
        self.internal
            .get(topic.0 as usize)
            .copied()
            .unwrap_or(false)
    }

    pub(crate) fn get(&self, name: &str) -> Option<TopicRef> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| TopicRef(i as u32))
    }
    pub(crate) fn name(&self, topic: TopicRef) -> &str {
        &self.names[topic.0 as usize]
    }
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

/// Builds one node's runtime instance for one task.
pub(crate) trait NodeFactory: Send + Sync {
    /// `children` are the already-built instances of the node's children,
    /// with their names.
    fn instantiate(&self, index: usize, children: &[(Arc<str>, &Instance)]) -> Instance;
}

/// The input and output types of a processor, as a zero-sized marker.
pub(crate) type Signature<KI, VI, KO, VO> = fn(KI, VI) -> (KO, VO);

/// Builds a fresh processor per task from a supplier.
pub(crate) struct ProcessorFactory<S, KI, VI, KO, VO> {
    pub(crate) supplier: S,
    pub(crate) _types: PhantomData<Signature<KI, VI, KO, VO>>,
}

impl<S, P, KI, VI, KO, VO> NodeFactory for ProcessorFactory<S, KI, VI, KO, VO>
where
    S: Fn() -> P + Send + Sync,
    P: Processor<KI, VI, KO, VO>,
    KI: Data,
    VI: Data,
    KO: Data,
    VO: Data,
{
    fn instantiate(&self, index: usize, children: &[(Arc<str>, &Instance)]) -> Instance {
        ProcessorNode::<P, KI, VI, KO, VO>::instance(
            index,
            (self.supplier)(),
            typed_children(children),
        )
    }
}

/// What a node of the logical graph is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// Reads a topic.
    Source {
        /// The topic read.
        topic: String,
    },
    /// Transforms records; `op` names the operator (filter, map, ...).
    Processor {
        /// Operator name.
        op: &'static str,
    },
    /// Writes a topic.
    Sink {
        /// The topic written.
        topic: String,
    },
}

pub(crate) struct NodeDef {
    pub(crate) name: Arc<str>,
    pub(crate) kind: NodeKind,
    pub(crate) parents: Vec<usize>,
    pub(crate) children: Vec<usize>,
    pub(crate) factory: Arc<dyn NodeFactory>,
    /// Stores the node reads or writes.
    pub(crate) stores: Vec<String>,
    /// Whether the key may have changed since the source (map, flat_map,
    /// select_key, process): grouping then needs a repartition.
    pub(crate) key_changed: bool,
}

/// A connected part of the topology: the unit that is split into one task
/// per input partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubTopology {
    /// Sub-topology number, in order of the first source.
    pub id: u32,
    /// Node indexes, parents before children.
    pub(crate) nodes: Vec<usize>,
    /// Topics this sub-topology reads.
    pub source_topics: Vec<String>,
    /// Topics this sub-topology writes.
    pub sink_topics: Vec<String>,
    /// Stores its nodes use.
    pub stores: Vec<String>,
}

/// Why a topology could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// Nothing reads any topic.
    #[error("the topology has no source: call StreamsBuilder::stream first")]
    NoSources,
    /// Two nodes share a name.
    #[error("two nodes are named {0:?}; node names must be unique")]
    DuplicateName(String),
    /// Two sources read the same topic.
    #[error("topic {0:?} is read by two sources; read it once and reuse the stream")]
    TopicSourcedTwice(String),
    /// A node uses a store nobody declared.
    #[error("node {node:?} uses store {store:?}, which is not declared")]
    UnknownStore {
        /// The node.
        node: String,
        /// The store.
        store: String,
    },
    /// Two stores share a name.
    #[error("two stores are named {0:?}")]
    DuplicateStore(String),
    /// An operator was configured inconsistently.
    #[error("node {node:?}: {reason}")]
    InvalidOperator {
        /// The node.
        node: String,
        /// What is wrong.
        reason: String,
    },
}

/// A built, immutable topology: shared by every stream thread, which
/// instantiates its tasks from it.
pub struct Topology {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) topics: TopicTable,
    pub(crate) stores: Vec<Arc<StoreSpec>>,
    pub(crate) subtopologies: Vec<SubTopology>,
    /// For each topic ref that is a source: its sub-topology and source node.
    pub(crate) sources: HashMap<TopicRef, (u32, usize)>,
    /// Global tables: topic and the store it fills.
    /// Global tables: (topic, store name).
    pub(crate) globals: Vec<(String, String)>,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Topology {
    pub(crate) fn new(
        mut nodes: Vec<NodeDef>,
        topics: TopicTable,
        stores: Vec<Arc<StoreSpec>>,
    ) -> Result<Self, TopologyError> {
        let mut names = BTreeSet::new();
        for n in &nodes {
            if !names.insert(n.name.clone()) {
                return Err(TopologyError::DuplicateName(n.name.to_string()));
            }
            if let Some(s) = n
                .stores
                .iter()
                .find(|s| !stores.iter().any(|d| &d.name == *s))
            {
                return Err(TopologyError::UnknownStore {
                    node: n.name.to_string(),
                    store: s.clone(),
                });
            }
        }
        let mut store_names = BTreeSet::new();
        for s in &stores {
            if !store_names.insert(&s.name) {
                return Err(TopologyError::DuplicateStore(s.name.clone()));
            }
        }
        for i in 0..nodes.len() {
            for p in nodes[i].parents.clone() {
                nodes[p].children.push(i);
            }
        }
        // Connected components by union-find over edges.
        let mut root: Vec<usize> = (0..nodes.len()).collect();
        fn find(root: &mut [usize], mut i: usize) -> usize {
            while root[i] != i {
                root[i] = root[root[i]];
                i = root[i];
            }
            i
        }
        let mut store_user: HashMap<&str, usize> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            // Nodes sharing a store run in the same task, so in the same
            // sub-topology.
            let store_peers = n.stores.iter().filter_map(|s| store_user.insert(s, i));
            for p in n
                .parents
                .iter()
                .copied()
                .chain(store_peers.collect::<Vec<_>>())
            {
                let (a, b) = (find(&mut root, i), find(&mut root, p));
                root[a.max(b)] = a.min(b);
            }
        }
        let mut subtopologies: Vec<SubTopology> = Vec::new();
        let mut by_root: HashMap<usize, usize> = HashMap::new();
        let mut sources = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            let r = find(&mut root, i);
            let next = subtopologies.len();
            let s = *by_root.entry(r).or_insert(next);
            if s == next {
                subtopologies.push(SubTopology {
                    id: s as u32,
                    nodes: Vec::new(),
                    source_topics: Vec::new(),
                    sink_topics: Vec::new(),
                    stores: Vec::new(),
                });
            }
            let sub = &mut subtopologies[s];
            sub.nodes.push(i);
            for st in &n.stores {
                if !sub.stores.contains(st) {
                    sub.stores.push(st.clone());
                }
            }
            match &n.kind {
                NodeKind::Source { topic } => {
                    let t = topics.get(topic).expect("interned by the builder");
                    if sources.insert(t, (s as u32, i)).is_some() {
                        return Err(TopologyError::TopicSourcedTwice(topic.clone()));
                    }
                    sub.source_topics.push(topic.clone());
                }
                NodeKind::Sink { topic } if !sub.sink_topics.contains(topic) => {
                    sub.sink_topics.push(topic.clone());
                }
                _ => {}
            }
        }
        if sources.is_empty() {
            return Err(TopologyError::NoSources);
        }
        Ok(Topology {
            nodes,
            topics,
            stores,
            subtopologies,
            sources,
            globals: Vec::new(),
        })
    }

    /// The sub-topologies, in order.
    pub fn subtopologies(&self) -> &[SubTopology] {
        &self.subtopologies
    }

    /// Every topic the topology reads, in order of appearance.
    pub fn source_topics(&self) -> Vec<&str> {
        self.subtopologies
            .iter()
            .flat_map(|s| s.source_topics.iter().map(String::as_str))
            .collect()
    }

    /// The Kafka names of the topics the stream threads of application
    /// `application_id` consume: its source topics and its repartition
    /// topics (named `<application_id>-<name>`), not its global tables.
    ///
    /// ```
    /// use eddy::serde::StringSerde;
    /// use eddy::topology::StreamsBuilder;
    /// let b = StreamsBuilder::new();
    /// b.stream("words", StringSerde, StringSerde)
    ///     .repartition("by-word", StringSerde, StringSerde)
    ///     .to("out", StringSerde, StringSerde);
    /// let topology = b.build().unwrap();
    /// assert_eq!(topology.input_topics("app"), ["words", "app-by-word-repartition"]);
    /// ```
    pub fn input_topics(&self, application_id: &str) -> Vec<String> {
        let names = self.topics.resolve(application_id);
        let mut refs: Vec<TopicRef> = self.sources.keys().copied().collect();
        refs.sort_by_key(|t| t.0);
        refs.into_iter().map(|t| names.name(t).to_owned()).collect()
    }

    /// The changelog topics of the topology's logged stores under
    /// `application_id`.
    pub fn changelog_topics(&self, application_id: &str) -> Vec<String> {
        self.stores()
            .filter(|s| s.logged)
            .map(|s| format!("{application_id}-{}", s.changelog_suffix()))
            .collect()
    }

    /// Every topic the topology writes, in order of appearance.
    pub fn sink_topics(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for t in self.subtopologies.iter().flat_map(|s| &s.sink_topics) {
            if !out.contains(&t.as_str()) {
                out.push(t);
            }
        }
        out
    }

    /// Partitions of `topic`: `known` if it says, else for a repartition
    /// topic the most of its writers' input partitions (as Kafka Streams
    /// does), else 1.
    pub(crate) fn partitions(
        &self,
        topic: TopicRef,
        known: &dyn Fn(TopicRef) -> Option<i32>,
    ) -> i32 {
        if let Some(n) = known(topic) {
            return n;
        }
        if !self.topics.is_internal(topic) {
            return 1;
        }
        let raw = self.topics.name(topic);
        self.subtopologies
            .iter()
            .filter(|s| s.sink_topics.iter().any(|t| t == raw))
            .map(|s| self.subtopology_partitions(s, known))
            .max()
            .unwrap_or(1)
    }

    /// Tasks of a sub-topology: the most partitions of its inputs.
    pub(crate) fn subtopology_partitions(
        &self,
        sub: &SubTopology,
        known: &dyn Fn(TopicRef) -> Option<i32>,
    ) -> i32 {
        sub.source_topics
            .iter()
            .filter_map(|t| self.topics.get(t))
            .map(|t| self.partitions(t, known))
            .max()
            .unwrap_or(1)
    }

    /// Global tables: their topics and store names.
    pub fn global_tables(&self) -> impl Iterator<Item = (&str, &str)> {
        self.globals.iter().map(|(t, s)| (t.as_str(), s.as_str()))
    }

    /// The stores the topology declares.
    pub fn stores(&self) -> impl Iterator<Item = &StoreSpec> {
        self.stores.iter().map(|s| &**s)
    }

    /// The sub-topology that uses `store`.
    pub fn store_subtopology(&self, store: &str) -> Option<&SubTopology> {
        self.subtopologies
            .iter()
            .find(|s| s.stores.iter().any(|x| x == store))
    }

    /// Topics eddy creates: repartition topics, named without the
    /// application id.
    pub fn internal_topics(&self) -> Vec<&str> {
        (0..self.topics.len() as u32)
            .map(TopicRef)
            .filter(|&t| self.topics.is_internal(t))
            .map(|t| self.topics.name(t))
            .collect()
    }

    /// Name, kind and parent names of node `index` (for tools and tests).
    pub fn node(&self, index: usize) -> Option<(&str, &NodeKind, Vec<&str>)> {
        self.nodes.get(index).map(|n| {
            let parents = n.parents.iter().map(|&p| &*self.nodes[p].name).collect();
            (&*n.name, &n.kind, parents)
        })
    }
}
