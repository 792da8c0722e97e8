//! Serialization of keys and values: the [`Serde`] trait and its built-ins.
//!
//! A serde turns a typed value into bytes and back. Sources deserialize what
//! they read from Kafka; sinks serialize into a reusable buffer, so the hot
//! path does not allocate per record for the encoding itself.

use std::marker::PhantomData;

pub mod compact;

pub use compact::{CompactSerde, CompactValueSerde};

use serde::de::{DeserializeOwned, DeserializeSeed};
use serde::Serialize;

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerdeError {
    /// The record had no key or value where the serde requires one.
    #[error("unexpected null")]
    UnexpectedNull,
    /// The bytes have the wrong length for a fixed-size type.
    #[error("expected {expected} bytes, got {actual}")]
    Size {
        /// Bytes the type needs.
        expected: usize,
        /// Bytes the record had.
        actual: usize,
    },
    /// The bytes are not valid UTF-8.
    #[error("invalid UTF-8: {0}")]
    Utf8(String),
    /// The JSON codec refused the value.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// The bincode codec refused the value.
    #[error("invalid bincode: {0}")]
    Bincode(String),
}

/// Encodes and decodes values of type `T`.
///
/// Kafka keys and values may be null (absent). `deserialize` receives `None`
/// for a null; `is_null` tells a sink to write a null (a tombstone) instead
/// of calling `serialize`. Wrap a serde in [`Nullable`] to map `Option<T>`
/// onto nulls.
///
/// ```
/// use eddy::serde::{Serde, StringSerde};
/// let mut buf = Vec::new();
/// StringSerde.serialize(&"hi".to_string(), &mut buf).unwrap();
/// assert_eq!(StringSerde.deserialize(Some(&buf)).unwrap(), "hi");
/// ```
pub trait Serde<T>: Send + Sync + 'static {
    /// Appends the encoding of `value` to `out`.
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError>;
    /// Decodes a value; `None` is a null key or value.
    fn deserialize(&self, data: Option<&[u8]>) -> Result<T, SerdeError>;
    /// Whether `value` is written as a null. Default: never.
    fn is_null(&self, _value: &T) -> bool {
        false
    }
}

fn present(data: Option<&[u8]>) -> Result<&[u8], SerdeError> {
    data.ok_or(SerdeError::UnexpectedNull)
}

/// Raw bytes, unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

impl Serde<Vec<u8>> for BytesSerde {
    fn serialize(&self, value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value);
        Ok(())
    }
    fn deserialize(&self, data: Option<&[u8]>) -> Result<Vec<u8>, SerdeError> {
        Ok(present(data)?.to_vec())
    }
}

/// UTF-8 strings.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerde;

impl Serde<String> for StringSerde {
    fn serialize(&self, value: &String, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }
    fn deserialize(&self, data: Option<&[u8]>) -> Result<String, SerdeError> {
        std::str::from_utf8(present(data)?)
            .map(str::to_owned)
            .map_err(|e| SerdeError::Utf8(e.to_string()))
    }
}

/// 64-bit signed integers, 8 bytes big-endian (Kafka's `LongSerializer`).
#[derive(Debug, Clone, Copy, Default)]
pub struct I64Serde;

impl Serde<i64> for I64Serde {
    fn serialize(&self, value: &i64, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(&value.to_be_bytes());
        Ok(())
    }
    fn deserialize(&self, data: Option<&[u8]>) -> Result<i64, SerdeError> {
        let data = present(data)?;
        let bytes: [u8; 8] = data.try_into().map_err(|_| SerdeError::Size {
            expected: 8,
            actual: data.len(),
        })?;
        Ok(i64::from_be_bytes(bytes))
    }
}

/// JSON through `serde_json`, for any `Serialize + DeserializeOwned` type.
///
/// ```
/// use eddy::serde::{JsonSerde, Serde};
/// let serde = JsonSerde::<serde_json::Value>::new();
/// let v = serde.deserialize(Some(br#"{"a":1}"#)).unwrap();
/// assert_eq!(v["a"], 1);
/// ```
pub struct JsonSerde<T>(PhantomData<fn() -> T>);

impl<T> JsonSerde<T> {
    /// A JSON serde for `T`.
    pub fn new() -> Self {
        JsonSerde(PhantomData)
    }
}

impl<T> Default for JsonSerde<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for JsonSerde<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Serde<T> for JsonSerde<T> {
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        serde_json::to_writer(out, value).map_err(|e| SerdeError::Json(e.to_string()))
    }
    fn deserialize(&self, data: Option<&[u8]>) -> Result<T, SerdeError> {
        serde_json::from_slice(present(data)?).map_err(|e| SerdeError::Json(e.to_string()))
    }
}

/// Compact binary encoding through bincode 2 (standard configuration), for
/// any `Serialize + DeserializeOwned` type. The default for state values.
pub struct BincodeSerde<T>(PhantomData<fn() -> T>);

impl<T> BincodeSerde<T> {
    /// A bincode serde for `T`.
    pub fn new() -> Self {
        BincodeSerde(PhantomData)
    }
}

impl<T> Default for BincodeSerde<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for BincodeSerde<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Serde<T> for BincodeSerde<T> {
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        bincode_encode(value, out)
    }
    fn deserialize(&self, data: Option<&[u8]>) -> Result<T, SerdeError> {
        bincode_decode(PhantomData::<T>, present(data)?)
    }
}

/// Appends `value` in bincode (standard configuration).
fn bincode_encode<T: Serialize>(value: T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
    bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
        .map(drop)
        .map_err(|e| SerdeError::Bincode(e.to_string()))
}

/// Decodes all of `data` as bincode (standard configuration) through `seed`.
fn bincode_decode<'de, S: DeserializeSeed<'de>>(
    seed: S,
    data: &'de [u8],
) -> Result<S::Value, SerdeError> {
    let (value, read) =
        bincode::serde::seed_decode_from_slice(seed, data, bincode::config::standard())
            .map_err(|e| SerdeError::Bincode(e.to_string()))?;
    if read != data.len() {
        return Err(SerdeError::Bincode(format!(
            "{} trailing bytes",
            data.len() - read
        )));
    }
    Ok(value)
}

/// Maps `Option<T>` onto Kafka nulls around an inner serde: `None` is a null
/// key or value (a tombstone when written).
///
/// ```
/// use eddy::serde::{Nullable, Serde, StringSerde};
/// let serde = Nullable(StringSerde);
/// assert_eq!(serde.deserialize(None).unwrap(), None);
/// assert!(serde.is_null(&None));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Nullable<S>(pub S);

impl<T, S: Serde<T>> Serde<Option<T>> for Nullable<S> {
    fn serialize(&self, value: &Option<T>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        match value {
            Some(v) => self.0.serialize(v, out),
            None => Ok(()),
        }
    }
    fn deserialize(&self, data: Option<&[u8]>) -> Result<Option<T>, SerdeError> {
        data.map(|d| self.0.deserialize(Some(d))).transpose()
    }
    fn is_null(&self, value: &Option<T>) -> bool {
        value.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: PartialEq + std::fmt::Debug + 'static>(serde: &dyn Serde<T>, value: T) {
        let mut buf = Vec::new();
        serde.serialize(&value, &mut buf).unwrap();
        assert_eq!(serde.deserialize(Some(&buf)).unwrap(), value);
    }

    #[test]
    fn built_ins_round_trip() {
        round_trip(&BytesSerde, vec![0, 1, 255]);
        round_trip(&StringSerde, "héllo".to_string());
        round_trip(&I64Serde, -42);
        round_trip(&JsonSerde::<Vec<u32>>::new(), vec![1, 2]);
        round_trip(&BincodeSerde::<(String, i64)>::new(), ("k".into(), 7));
        round_trip(&Nullable(I64Serde), Some(3));
    }

    #[test]
    fn i64_is_big_endian_like_kafka() {
        let mut buf = Vec::new();
        I64Serde.serialize(&1, &mut buf).unwrap();
        assert_eq!(buf, [0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(
            I64Serde.deserialize(Some(&[1, 2])),
            Err(SerdeError::Size {
                expected: 8,
                actual: 2
            })
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(
            StringSerde.deserialize(None),
            Err(SerdeError::UnexpectedNull)
        );
        assert!(matches!(
            StringSerde.deserialize(Some(&[0xff])),
            Err(SerdeError::Utf8(_))
        ));
        assert!(matches!(
            JsonSerde::<u32>::new().deserialize(Some(b"{")),
            Err(SerdeError::Json(_))
        ));
        assert!(matches!(
            BincodeSerde::<u64>::new().deserialize(Some(&[])),
            Err(SerdeError::Bincode(_))
        ));
    }
}
