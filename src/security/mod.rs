//! What keeps records and routes honest: signatures over records
//! (HMAC-SHA256, keys that rotate), masking of personal data in values
//! (keyed hashes, redaction, dropped fields) and bearer-token
//! authentication of HTTP routes (JWT). TLS and SASL to the brokers are in
//! [`kafka::Security`](crate::kafka::Security).

mod http_auth;
mod masking;
mod signing;

pub use http_auth::{AuthError, HttpAuth, JwtKey, Refusal};
pub use masking::{MaskError, Masking, MIN_KEY_BYTES, REDACTED};
pub use signing::{Signature, SigningKey, TopicSigning, KEY_ID, SIGNATURE};
