//! # eddy
//!
//! Kafka Streams-style stream processing in Rust: a typed topology DSL and
//! Processor API, tasks per input partition run by stream threads in a Kafka
//! consumer group, at-least-once commits that wait for every output to be
//! acknowledged, a dead-letter topic for bad records, Prometheus metrics, and
//! a test driver that runs topologies without a broker.
//!
//! ```
//! use eddy::testing::TestTopic;
//! use eddy::{StreamsBuilder, StringSerde, TopologyTestDriver};
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream("in", StringSerde, StringSerde)
//!     .map_values(|v: String| v.to_uppercase())
//!     .to("out", StringSerde, StringSerde);
//! let mut driver = TopologyTestDriver::new(builder.build().unwrap());
//! let input = TestTopic::new("in", StringSerde, StringSerde);
//! let output = TestTopic::new("out", StringSerde, StringSerde);
//! driver.pipe(&input, "k".into(), "hello".into(), 0).unwrap();
//! assert_eq!(driver.read_key_values(&output).unwrap(), [("k".into(), "HELLO".into())]);
//! ```
#![warn(missing_docs)]

pub mod autoscale;
pub mod calls;
pub mod cli;
pub mod config;
mod error;
pub mod kafka;
pub mod observability;
mod operators;
pub mod processor;
pub mod runtime;
pub mod security;
pub mod serde;
pub mod stores;
pub mod testing;
pub mod topology;

pub use error::Error;

// The types most applications use, at the crate root.
pub use crate::serde::{
    BincodeSerde, BytesSerde, I64Serde, JsonSerde, Nullable, Serde, StringSerde,
};
pub use kafka::StreamsConfig;
pub use processor::{Processor, ProcessorContext, Record};
pub use runtime::{KafkaStreams, RunningStreams};
pub use testing::TopologyTestDriver;
pub use topology::{KStream, KTable, StreamsBuilder, Topology};

/// `Result` with eddy's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
