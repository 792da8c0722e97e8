//! Signed records: an HMAC-SHA256 over a record's topic, key, value and
//! selected headers, written in two headers (`eddy-key-id`,
//! `eddy-signature`), checked where the record is read.
//!
//! A topic is signed with one key and verified with a list of keys, each
//! known by an id carried in the record, so that keys rotate without a
//! stop: sign with the new key while the old one is still verified, then
//! drop the old one. A record without a signature, with a key id the
//! reader does not accept, or whose signature does not match goes to the
//! dead-letter topic with the reason and never reaches an operator. The
//! comparison is constant-time.
//!
//! ```
//! use eddy::security::{SigningKey, TopicSigning};
//! let k2026 = SigningKey::new("k2026", b"a long random secret");
//! let signing = TopicSigning {
//!     sign: Some(k2026.clone()),
//!     verify: vec![k2026],
//!     headers: vec!["type".into()],
//! };
//! let header = |name: &str| (name == "type").then_some(&b"payment_successful"[..]);
//! let signature = signing.sign("payments", Some(b"order-1"), Some(b"{}"), header).unwrap();
//! let hex = signature.hex();
//! let found = |name: &str| match name {
//!     "eddy-key-id" => Some(&b"k2026"[..]),
//!     "eddy-signature" => Some(&hex[..]),
//!     other => header(other),
//! };
//! assert_eq!(signing.verify("payments", Some(b"order-1"), Some(b"{}"), found), Ok(()));
//! assert!(signing.verify("payments", Some(b"order-1"), Some(b"{\"x\":1}"), found).is_err());
//! ```

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header naming the key a record was signed with.
pub const KEY_ID: &str = "eddy-key-id";
/// The header holding the signature (64 lower-case hex digits).
pub const SIGNATURE: &str = "eddy-signature";
/// What the MAC starts with: the scheme's version.
const DOMAIN: &[u8] = b"eddy-signature-v1";

/// A key to sign or verify with, and its id.
#[derive(Clone)]
pub struct SigningKey {
    id: Arc<str>,
    mac: Hmac<Sha256>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("id", &self.id).finish()
    }
}

impl SigningKey {
    /// The key `id` with secret `secret` (any length; 32 random bytes or
    /// more recommended).
    pub fn new(id: &str, secret: &[u8]) -> SigningKey {
        SigningKey {
            id: id.into(),
            mac: Hmac::new_from_slice(secret).expect("HMAC takes keys of any length"),
        }
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// How one topic's records are signed (by the applications that write it)
/// and verified (by those that read it).
#[derive(Clone, Debug, Default)]
pub struct TopicSigning {
    /// The key records written to the topic are signed with.
    pub sign: Option<SigningKey>,
    /// The keys a record read from the topic may be signed with; empty:
    /// records are not checked.
    pub verify: Vec<SigningKey>,
    /// Headers covered by the signature besides the topic, key and value
    /// (writers and readers must list the same ones).
    pub headers: Vec<String>,
}

/// A record's signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The id of the key that made it.
    pub key_id: Arc<str>,
    mac: [u8; 32],
}

impl Signature {
    /// The `eddy-signature` header's value.
    pub fn hex(&self) -> [u8; 64] {
        hex(self.mac)
    }
}

/// 32 bytes as 64 lower-case hex digits.
pub(super) fn hex(bytes: [u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
    out
}

impl TopicSigning {
    /// The signature of a record for `topic` with `key` and `value`,
    /// `header` giving the value of a header as written; `None` if the
    /// topic is not signed.
    pub fn sign<'h>(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        header: impl Fn(&str) -> Option<&'h [u8]>,
    ) -> Option<Signature> {
        let signer = self.sign.as_ref()?;
        let mac = self.mac(signer, topic, key, value, &header);
        Some(Signature {
            key_id: signer.id.clone(),
            mac: mac.finalize().into_bytes().into(),
        })
    }

    /// Whether a record read from `topic` carries a valid signature by one
    /// of the keys accepted (`header` gives its headers as read); the
    /// reason if not.
    pub fn verify<'h>(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        header: impl Fn(&str) -> Option<&'h [u8]>,
    ) -> Result<(), String> {
        let (Some(id), Some(signature)) = (header(KEY_ID), header(SIGNATURE)) else {
            return Err(format!(
                "no signature: the record has no {KEY_ID}/{SIGNATURE} headers"
            ));
        };
        let id = String::from_utf8_lossy(id);
        let Some(verifier) = self.verify.iter().find(|k| *k.id == *id) else {
            let accepted: Vec<&str> = self.verify.iter().map(SigningKey::id).collect();
            return Err(format!(
                "signed with key {id:?}, which this topic does not accept (accepted: {accepted:?})"
            ));
        };
        let Some(bytes) = unhex(signature) else {
            return Err(format!("the {SIGNATURE} header is not 64 hex digits"));
        };
        self.mac(verifier, topic, key, value, &header)
            .verify_slice(&bytes)
            .map_err(|_| format!("the signature does not match (key {id:?})"))
    }

    fn mac<'h>(
        &self,
        with: &SigningKey,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        header: &impl Fn(&str) -> Option<&'h [u8]>,
    ) -> Hmac<Sha256> {
        let mut mac = with.mac.clone();
        let mut part = |bytes: Option<&[u8]>| match bytes {
            Some(b) => {
                mac.update(&(b.len() as u32).to_be_bytes());
                mac.update(b);
            }
            None => mac.update(&u32::MAX.to_be_bytes()),
        };
        part(Some(DOMAIN));
        part(Some(with.id.as_bytes()));
        part(Some(topic.as_bytes()));
        part(key);
        part(value);
        for name in &self.headers {
            part(Some(name.as_bytes()));
            part(header(name));
        }
        mac
    }
}

/// The value of each byte as a lower-case hex digit; 0xff for the others.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut d = 0;
    while d < 16 {
        table[b"0123456789abcdef"[d] as usize] = d as u8;
        d += 1;
    }
    table
};

/// 64 lower-case hex digits as 32 bytes. By table, without a branch per
/// digit: random digits would mispredict one in three.
fn unhex(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0; 32];
    let mut invalid = 0;
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (hi, lo) = (
            HEX_VALUE[usize::from(pair[0])],
            HEX_VALUE[usize::from(pair[1])],
        );
        invalid |= hi | lo;
        *o = hi << 4 | lo;
    }
    (invalid & 0xf0 == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(
        signature: &'a Option<[u8; 64]>,
        id: Option<&'a [u8]>,
    ) -> impl Fn(&str) -> Option<&'a [u8]> {
        move |name| match name {
            KEY_ID => id,
            SIGNATURE => signature.as_ref().map(|s| &s[..]),
            _ => None,
        }
    }

    #[test]
    fn rotation_missing_wrong_and_retired_signatures() {
        let (old, new) = (SigningKey::new("k1", b"old"), SigningKey::new("k2", b"new"));
        let writer = |k: &SigningKey| TopicSigning {
            sign: Some(k.clone()),
            ..TopicSigning::default()
        };
        let reader = TopicSigning {
            verify: vec![new.clone()],
            ..TopicSigning::default()
        };
        let sign = |w: &TopicSigning| w.sign("t", Some(b"k"), None, |_| None).map(|s| s.hex());
        let by_new = sign(&writer(&new));
        assert_eq!(
            reader.verify("t", Some(b"k"), None, headers(&by_new, Some(b"k2"))),
            Ok(())
        );
        // Another topic, key or value: no match.
        for (topic, key) in [("u", &b"k"[..]), ("t", b"j")] {
            let e = reader.verify(topic, Some(key), None, headers(&by_new, Some(b"k2")));
            assert_eq!(e.unwrap_err(), "the signature does not match (key \"k2\")");
        }
        // A null key is not an empty one.
        let e = reader.verify("t", Some(b""), None, headers(&by_new, Some(b"k2")));
        assert!(e.is_err());
        // Retired key: refused by id, not by trying it.
        let by_old = sign(&writer(&old));
        let e = reader.verify("t", Some(b"k"), None, headers(&by_old, Some(b"k1")));
        assert_eq!(
            e.unwrap_err(),
            "signed with key \"k1\", which this topic does not accept (accepted: [\"k2\"])"
        );
        // Claiming the new key's id with the old key's signature.
        let e = reader.verify("t", Some(b"k"), None, headers(&by_old, Some(b"k2")));
        assert!(e.unwrap_err().starts_with("the signature does not match"));
        let e = reader.verify("t", Some(b"k"), None, headers(&None, None));
        assert!(e.unwrap_err().starts_with("no signature"));
        let garbage = Some([b'z'; 64]);
        let e = reader.verify("t", Some(b"k"), None, headers(&garbage, Some(b"k2")));
        assert_eq!(
            e.unwrap_err(),
            "the eddy-signature header is not 64 hex digits"
        );
    }
}
