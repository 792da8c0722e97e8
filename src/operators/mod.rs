//! Operators: the processors behind the DSL, what runs for each record in
//! a task. The DSL (`crate::topology`) describes the graph and builds
//! these; the runtime (`crate::runtime`) drives them.
//!
//! - [`stateless`]: filter, map, flat-map, select-key, peek, split, table
//!   filters;
//! - [`aggregate`]: aggregations, windowed aggregations and table sources;
//! - [`stream_join`]: stream-stream windowed joins;
//! - [`join`]: stream-table, table-table and global-table joins;
//! - [`saga`]: the saga state machine.

pub(crate) mod aggregate;
pub(crate) mod join;
pub(crate) mod saga;
pub(crate) mod stateless;
pub(crate) mod stream_join;
