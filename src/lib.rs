//! # eddy
//!
//! Kafka Streams-style stream processing in Rust: a typed topology DSL and
//! Processor API, tasks per input partition run by stream threads in a Kafka
//! consumer group, at-least-once commits that wait for every output to be
//! acknowledged, a dead-letter topic for bad records, Prometheus metrics, and
//! a test driver that runs topologies without a broker.
//!
//! ```
//! use eddy::serde::StringSerde;
//! use eddy::testing::TopologyTestDriver;
//! use eddy::topology::StreamsBuilder;
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream("in", StringSerde, StringSerde)
//!     .map_values(|v: String| v.to_uppercase())
//!     .to("out", StringSerde, StringSerde);
//! let mut driver = TopologyTestDriver::new(builder.build().unwrap());
//! driver.pipe("in", &StringSerde, &StringSerde, "k".to_string(), "hello".to_string(), 0);
//! let out = driver.read_output("out", &StringSerde, &StringSerde);
//! assert_eq!(out[0].value, "HELLO");
//! ```
#![warn(missing_docs)]

pub mod kafka;
pub mod processor;
pub mod runtime;
pub mod serde;
pub mod testing;
pub mod topology;
