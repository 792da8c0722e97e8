//! The runtime: tasks, stream threads, commits, rebalances and shutdown.
//!
//! A worker ([`KafkaStreams`]) runs `num_stream_threads` stream threads. Each
//! thread owns a consumer in the group named by `application.id` and a
//! producer; it polls records in batches, routes each to the task of its
//! partition, processes it synchronously through the task's nodes, and hands
//! the outputs to the producer. A commit flushes the producer, checks every
//! delivery was acknowledged, and only then commits the consumed offsets.

mod background;
mod changelog_batch;
mod collector;
mod consumer;
mod context;
mod dead_letter;
mod delivery;
mod global_thread;
mod lag;
mod membership;
mod node;
mod output;
mod partition_group;
mod punctuation;
mod query;
mod standby;
mod state_dir;
mod stream_thread;
mod task;
mod task_id;
mod upstream;
mod worker;

pub(crate) use context::{RawHeaders, RawRecord, TaskContext};
pub(crate) use dead_letter::Letter;
pub use dead_letter::{dlq_headers, ErrorPolicy, RecordError};
pub use membership::{Member, MembersView};
pub(crate) use node::{
    forward_all, typed_children, Child, Instance, Lifecycle, Node, NodeRef, ProcessorNode,
    SinkNode, SourceNode,
};
pub(crate) use output::{OutMeta, OutputBuffer};
pub use partition_group::TaskIdle;
pub(crate) use partition_group::{PartitionGroup, Ready};
pub use query::{Lookup, Owner, RangeResult, StaleValue, StoreQueries};
pub(crate) use state_dir::StoreProvider;
pub(crate) use task::{Task, TaskSettings};
pub use task_id::TaskId;
pub(crate) use worker::spawn_signal_listener;
pub use worker::{KafkaStreams, RunningStreams};
