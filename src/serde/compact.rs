//! State that holds JSON values, stored in a compact binary form.
//!
//! Saga instances and summaries are JSON values (the events they gathered)
//! inside Rust structs. Stored as JSON text, each read parsed every number
//! and string escape again and each write formatted them. [`CompactSerde`]
//! writes bincode instead, with the JSON values inside in a tagged binary
//! form ([`value`], [`map`] for `#[serde(with = ...)]`); JSON stays at the
//! edges (records, HTTP). It still reads the JSON text that stores and
//! changelogs written before it hold.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, DeserializeSeed, EnumAccess, MapAccess, SeqAccess};
use serde::de::{VariantAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

use super::{bincode_decode, bincode_encode, present, Serde, SerdeError};

/// The first byte of the binary form: never the first byte of a JSON text.
const BINARY: u8 = 0;

/// bincode (standard configuration) behind a format byte, for any type
/// whose JSON values are marked `#[serde(with = "value")]` (or [`map`]);
/// reads JSON text as well (what an earlier eddy stored).
///
/// ```
/// use eddy::serde::{CompactSerde, Serde};
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Seen {
///     count: u32,
///     #[serde(with = "eddy::serde::compact::value")]
///     last: serde_json::Value,
/// }
/// let serde = CompactSerde::<Seen>::new();
/// let seen = Seen { count: 2, last: serde_json::json!({"id": "o-1", "qty": 3}) };
/// let mut buf = Vec::new();
/// serde.serialize(&seen, &mut buf).unwrap();
/// assert_eq!(serde.deserialize(Some(&buf)).unwrap(), seen);
/// let old = br#"{"count":2,"last":{"id":"o-1","qty":3}}"#;
/// assert_eq!(serde.deserialize(Some(old)).unwrap(), seen);
/// ```
pub struct CompactSerde<T>(PhantomData<fn() -> T>);

impl<T> CompactSerde<T> {
    /// A compact serde for `T`.
    pub fn new() -> Self {
        CompactSerde(PhantomData)
    }
}

impl<T> Default for CompactSerde<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Serde<T> for CompactSerde<T> {
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        encode(value, out)
    }
    fn deserialize(&self, data: Option<&[u8]>) -> Result<T, SerdeError> {
        decode(PhantomData::<T>, present(data)?)
    }
}

/// A JSON value stored as [`CompactSerde`] stores one inside a struct.
///
/// ```
/// use eddy::serde::{CompactValueSerde, Serde};
/// let v = serde_json::json!({"state": "paid", "total": 12.5});
/// let mut buf = Vec::new();
/// CompactValueSerde.serialize(&v, &mut buf).unwrap();
/// assert_eq!(CompactValueSerde.deserialize(Some(&buf)).unwrap(), v);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CompactValueSerde;

impl Serde<Value> for CompactValueSerde {
    fn serialize(&self, value: &Value, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        encode(Bin(value), out)
    }
    fn deserialize(&self, data: Option<&[u8]>) -> Result<Value, SerdeError> {
        decode(ValueSeed, present(data)?)
    }
}

fn encode<T: Serialize>(value: T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
    out.push(BINARY);
    bincode_encode(value, out)
}

/// The binary form after its format byte, or else JSON text.
fn decode<'de, S>(seed: S, data: &'de [u8]) -> Result<S::Value, SerdeError>
where
    S: DeserializeSeed<'de>,
    S::Value: DeserializeOwned,
{
    match data.split_first() {
        Some((&BINARY, binary)) => bincode_decode(seed, binary),
        _ => serde_json::from_slice(data).map_err(|e| SerdeError::Json(e.to_string())),
    }
}

/// A JSON value field: itself in JSON, tagged binary in bincode.
pub mod value {
    use super::*;

    /// Serializes `v` (for `#[serde(with = "...")]`).
    pub fn serialize<S: Serializer>(v: &Value, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            v.serialize(s)
        } else {
            Bin(v).serialize(s)
        }
    }

    /// Deserializes a value (for `#[serde(with = "...")]`).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        if d.is_human_readable() {
            Value::deserialize(d)
        } else {
            ValueSeed.deserialize(d)
        }
    }
}

/// A field holding a JSON object's members, as [`value`] does a value.
pub mod map {
    use super::*;

    /// Serializes `m` (for `#[serde(with = "...")]`).
    pub fn serialize<S: Serializer>(m: &Map<String, Value>, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            m.serialize(s)
        } else {
            BinMap(m).serialize(s)
        }
    }

    /// Deserializes members (for `#[serde(with = "...")]`).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
        if d.is_human_readable() {
            Map::deserialize(d)
        } else {
            d.deserialize_map(MapVisitor)
        }
    }
}

/// The binary form's variants, in tag order.
const VARIANTS: &[&str] = &["Null", "Bool", "I64", "U64", "F64", "Str", "List", "Object"];

struct Bin<'a>(&'a Value);
struct BinMap<'a>(&'a Map<String, Value>);
struct BinList<'a>(&'a [Value]);

impl Serialize for Bin<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit_variant("V", 0, VARIANTS[0]),
            Value::Bool(b) => s.serialize_newtype_variant("V", 1, VARIANTS[1], b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => s.serialize_newtype_variant("V", 2, VARIANTS[2], &i),
                (None, Some(u), _) => s.serialize_newtype_variant("V", 3, VARIANTS[3], &u),
                (None, None, f) => {
                    s.serialize_newtype_variant("V", 4, VARIANTS[4], &f.unwrap_or(0.0))
                }
            },
            Value::String(t) => s.serialize_newtype_variant("V", 5, VARIANTS[5], t),
            Value::Array(a) => s.serialize_newtype_variant("V", 6, VARIANTS[6], &BinList(a)),
            Value::Object(m) => s.serialize_newtype_variant("V", 7, VARIANTS[7], &BinMap(m)),
        }
    }
}

impl Serialize for BinList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0 {
            seq.serialize_element(&Bin(v))?;
        }
        seq.end()
    }
}

impl Serialize for BinMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, &Bin(v))?;
        }
        map.end()
    }
}

/// Reads one value of the binary form.
#[derive(Clone, Copy)]
struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_enum("V", VARIANTS, self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value in eddy's binary form")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, v) = data.variant::<u32>()?;
        Ok(match tag {
            0 => {
                v.unit_variant()?;
                Value::Null
            }
            1 => Value::Bool(v.newtype_variant()?),
            2 => Value::Number(v.newtype_variant::<i64>()?.into()),
            3 => Value::Number(v.newtype_variant::<u64>()?.into()),
            4 => Number::from_f64(v.newtype_variant()?).map_or(Value::Null, Value::Number),
            5 => Value::String(v.newtype_variant()?),
            6 => Value::Array(v.newtype_variant_seed(ListSeed)?),
            7 => Value::Object(v.newtype_variant_seed(MapSeed)?),
            other => {
                return Err(serde::de::Error::custom(format_args!(
                    "unknown JSON value tag {other}"
                )))
            }
        })
    }
}

struct ListSeed;

impl<'de> DeserializeSeed<'de> for ListSeed {
    type Value = Vec<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Value>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array in eddy's binary form")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(ValueSeed)? {
            out.push(v);
        }
        Ok(out)
    }
}

struct MapSeed;

impl<'de> DeserializeSeed<'de> for MapSeed {
    type Value = Map<String, Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(MapVisitor)
    }
}

struct MapVisitor;

impl<'de> Visitor<'de> for MapVisitor {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object in eddy's binary form")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = access.next_key::<String>()? {
            let v = access.next_value_seed(ValueSeed)?;
            out.insert(k, v);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Holder {
        name: String,
        #[serde(with = "value")]
        v: Value,
        #[serde(with = "map")]
        m: Map<String, Value>,
    }

    fn holder(v: Value) -> Holder {
        let m = json!({"a": v.clone(), "b": [v.clone(), {"c": v.clone()}]});
        Holder {
            name: "h".into(),
            v,
            m: m.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn every_kind_of_value_round_trips_and_old_json_still_reads() {
        let serde = CompactSerde::<Holder>::new();
        for v in [
            json!(null),
            json!(true),
            json!(-7),
            json!(u64::MAX),
            json!(2.5),
            json!("tëxt \"quoted\""),
            json!([]),
            json!({}),
            json!({"order_id": "o-1", "items": [{"product_id": "p-1", "qty": 2}], "total": 12.5}),
        ] {
            let h = holder(v);
            let mut buf = Vec::new();
            serde.serialize(&h, &mut buf).unwrap();
            assert_eq!(buf[0], BINARY);
            assert_eq!(serde.deserialize(Some(&buf)).unwrap(), h);
            let old = serde_json::to_vec(&h).unwrap();
            assert_eq!(serde.deserialize(Some(&old)).unwrap(), h, "JSON form");
        }
    }

    #[test]
    fn a_value_alone_round_trips() {
        let v = json!({"a": [1, -2, 3.5, "x", null, {"b": false}]});
        let mut buf = Vec::new();
        CompactValueSerde.serialize(&v, &mut buf).unwrap();
        assert_eq!(CompactValueSerde.deserialize(Some(&buf)).unwrap(), v);
        let old = serde_json::to_vec(&v).unwrap();
        assert_eq!(CompactValueSerde.deserialize(Some(&old)).unwrap(), v);
        assert!(
            buf.len() < old.len(),
            "{} bytes against {}",
            buf.len(),
            old.len()
        );
    }

    #[test]
    fn damaged_bytes_are_an_error() {
        let serde = CompactSerde::<Holder>::new();
        let mut buf = Vec::new();
        serde
            .serialize(&holder(json!({"x": [1, 2]})), &mut buf)
            .unwrap();
        assert!(matches!(
            serde.deserialize(Some(&buf[..buf.len() - 1])),
            Err(SerdeError::Bincode(_))
        ));
        buf.push(9);
        assert!(matches!(
            serde.deserialize(Some(&buf)),
            Err(SerdeError::Bincode(_))
        ));
        assert!(matches!(
            serde.deserialize(Some(b"{")),
            Err(SerdeError::Json(_))
        ));
        assert_eq!(serde.deserialize(None), Err(SerdeError::UnexpectedNull));
    }
}
