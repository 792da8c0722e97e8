//! Topologies: the typed DSL ([`StreamsBuilder`], [`KStream`]), the logical
//! graph it produces, its split into sub-topologies, and `describe`.

mod builder;
mod call;
mod describe;
mod global;
mod graph;
mod grouped;
mod join;
mod operator;
mod saga;
mod stream_join;
mod table;
mod windows;

pub use crate::operators::stateless::DEFAULT_MAX_OUTPUTS;
pub use builder::{Branches, KStream, SplitBuilder, StreamsBuilder};
pub use global::GlobalKTable;
pub(crate) use graph::{NodeFactory, TopicRef, TopicTable};
pub use graph::{NodeKind, SubTopology, Topology, TopologyError};
pub use grouped::{KGroupedStream, SessionWindowedKStream, TimeWindowedKStream};
pub use join::JoinKind;
pub(crate) use operator::Operator;
pub use saga::{Emitter, Saga, SagaError, SagaScope, Step};
pub use stream_join::{JoinWindows, StreamJoined};
pub use table::{Change, KTable};
pub use windows::{SessionWindows, TimeWindows, Window, Windowed, WindowedSerde};
