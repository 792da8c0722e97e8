//! Kafka plumbing: worker configuration, topic administration, the embedded
//! cluster, and the default partitioner.

pub mod admin;
mod config;
mod embedded;
mod group;
pub mod partitioner;
mod produce;

pub use config::{Guarantee, StreamsConfig};
pub use embedded::EmbeddedKafka;
pub use group::GroupProtocol;
pub use produce::send_blocking;
