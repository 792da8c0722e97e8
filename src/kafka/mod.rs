//! Kafka plumbing: client configuration, topic administration, the embedded
//! cluster, and the default partitioner.

pub mod partitioner;
