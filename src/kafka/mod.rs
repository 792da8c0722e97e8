//! Kafka plumbing: worker configuration, topic administration, the embedded
//! cluster, and the default partitioner.

pub mod admin;
mod config;
mod embedded;
pub mod partitioner;

pub use config::StreamsConfig;
pub use embedded::EmbeddedKafka;
