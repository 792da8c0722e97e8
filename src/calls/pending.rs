//! A record whose call is not done, as the call operator keeps it in its
//! changelogged store: enough to make the call again after a crash, a
//! rebalance or an aborted transaction, with the same idempotency key, and
//! to dead-letter the record with its origin.

use serde::{Deserialize, Serialize};

/// One stored record (bincode), under its sequence number (8 bytes, big
/// endian, so that the store lists them in input order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stored {
    /// Where it came from: topic, partition, offset (none for a record a
    /// punctuation made).
    pub(crate) source: Option<(String, i32, i64)>,
    pub(crate) timestamp: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) headers: Vec<(String, Option<Vec<u8>>)>,
    pub(crate) idempotency_key: String,
}

impl Stored {
    pub(crate) fn encode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("a stored call encodes")
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Stored, String> {
        bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map(|(s, _)| s)
            .map_err(|e| e.to_string())
    }
}

/// The store key of sequence number `seq`.
pub(crate) fn seq_key(seq: u64) -> Vec<u8> {
    seq.to_be_bytes().to_vec()
}

/// The sequence number of a store key.
pub(crate) fn key_seq(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders() {
        let s = Stored {
            source: Some(("orders".into(), 3, 41)),
            timestamp: 7,
            key: Some(b"o1".to_vec()),
            value: None,
            headers: vec![("h".into(), None)],
            idempotency_key: "app-orders-3-41".into(),
        };
        assert_eq!(Stored::decode(&s.encode()).unwrap(), s);
        assert!(seq_key(255) < seq_key(256));
        assert_eq!(key_seq(&seq_key(u64::MAX)), Some(u64::MAX));
        assert_eq!(key_seq(b"short"), None);
        assert!(Stored::decode(b"\xff\xff").is_err());
    }
}
