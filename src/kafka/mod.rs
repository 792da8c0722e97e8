//! Kafka plumbing: worker configuration, topic administration, the embedded
//! cluster, and the default partitioner.

pub mod acls;
pub mod admin;
mod config;
mod embedded;
mod group;
mod group_lag;
pub mod partitioner;
mod produce;
mod security;

pub use config::{Guarantee, StreamsConfig, FETCH_QUEUE_BACKOFF_MS};
pub use embedded::EmbeddedKafka;
pub use group::GroupProtocol;
pub use group_lag::{group_lag, PartitionLag};
pub use produce::send_blocking;
pub(crate) use security::ClientSecurity;
pub use security::{Mechanism, Sasl, Secret, Security, SecurityError, Tls};
