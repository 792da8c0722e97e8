//! What keeps records honest end to end: signatures over records
//! (HMAC-SHA256, keys that rotate). TLS and SASL to the brokers are in
//! [`kafka::Security`](crate::kafka::Security).

mod signing;

pub use signing::{Signature, SigningKey, TopicSigning, KEY_ID, SIGNATURE};
