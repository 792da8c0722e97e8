//! The logical graph: nodes, edges, topics and sub-topologies.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::runtime::Instance;

/// Index of a topic in a topology's [`TopicTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TopicRef(pub(crate) u32);

/// Topic names, interned so records carry a small index instead of a name.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopicTable {
    names: Vec<String>,
}

impl TopicTable {
    pub(crate) fn intern(&mut self, name: &str) -> TopicRef {
        match self.get(name) {
            Some(t) => t,
            None => {
                self.names.push(name.to_owned());
                TopicRef(self.names.len() as u32 - 1)
            }
        }
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
}

/// A built, immutable topology: shared by every stream thread, which
/// instantiates its tasks from it.
pub struct Topology {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) topics: TopicTable,
    pub(crate) subtopologies: Vec<SubTopology>,
    /// For each topic ref that is a source: its sub-topology and source node.
    pub(crate) sources: HashMap<TopicRef, (u32, usize)>,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Topology {
    pub(crate) fn new(mut nodes: Vec<NodeDef>, topics: TopicTable) -> Result<Self, TopologyError> {
        let mut names = BTreeSet::new();
        for n in &nodes {
            if !names.insert(n.name.clone()) {
                return Err(TopologyError::DuplicateName(n.name.to_string()));
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
        for (i, n) in nodes.iter().enumerate() {
            for &p in &n.parents {
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
                });
            }
            let sub = &mut subtopologies[s];
            sub.nodes.push(i);
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
            subtopologies,
            sources,
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

    /// Name, kind and parent names of node `index` (for tools and tests).
    pub fn node(&self, index: usize) -> Option<(&str, &NodeKind, Vec<&str>)> {
        self.nodes.get(index).map(|n| {
            let parents = n.parents.iter().map(|&p| &*self.nodes[p].name).collect();
            (&*n.name, &n.kind, parents)
        })
    }
}
