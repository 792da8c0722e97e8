//! Topologies: the typed DSL ([`StreamsBuilder`], [`KStream`]), the logical
//! graph it produces, its split into sub-topologies, and `describe`.

mod builder;
mod describe;
mod graph;
mod stateless;

pub use builder::{Branches, KStream, SplitBuilder, StreamsBuilder};
pub use graph::{NodeKind, SubTopology, Topology, TopologyError};
pub(crate) use graph::{TopicRef, TopicTable};
