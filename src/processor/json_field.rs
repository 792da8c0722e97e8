//! One field of a JSON document, read without building the rest of it.
//!
//! A timestamp extractor needs one field of each record, before the source
//! deserializes the record for its operators: parsing the whole value into
//! a `serde_json::Value` for that parsed every record twice. This walks the
//! document once, keeping only the field at a dotted path; everything else
//! is checked for syntax and skipped (`IgnoredAny`), nothing allocated for it.

use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserializer;
use serde_json::Value;

/// The value at `path` (object keys separated by dots) of the JSON document
/// `json`: `Ok(None)` if some object on the way has no such key or the way
/// meets something that is not an object; `Err` if `json` is not one JSON
/// document. Of a key present twice, the last one counts (as when parsing
/// into a `Value`).
pub(crate) fn field(json: &[u8], path: &str) -> Result<Option<Value>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let found = Path(path).deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

/// The rest of the path to follow from the current value.
struct Path<'p>(&'p str);

impl<'de> DeserializeSeed<'de> for Path<'_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

macro_rules! not_an_object {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method<E>(self, _: $ty) -> Result<Self::Value, E> {
            Ok(None)
        }
    )*};
}

impl<'de> Visitor<'de> for Path<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a JSON object with the field {}", self.0)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (head, rest) = match self.0.split_once('.') {
            Some((head, rest)) => (head, Some(rest)),
            None => (self.0, None),
        };
        let mut found = None;
        while let Some(is_head) = map.next_key_seed(KeyIs(head))? {
            if !is_head {
                map.next_value::<IgnoredAny>()?;
            } else if let Some(rest) = rest {
                found = map.next_value_seed(Path(rest))?;
            } else {
                found = Some(map.next_value::<Value>()?);
            }
        }
        Ok(found)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    not_an_object!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);
}

/// Whether an object's key is the wanted one.
struct KeyIs<'p>(&'p str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_what_a_parsed_value_would_and_nothing_else() {
        let doc =
            br#"{"a":[1,{"t":2}],"e":{"x":"\u0041","t":{"deep":[true]},"n":null},"t":7,"t":8}"#;
        let parsed: Value = serde_json::from_slice(doc).unwrap();
        for path in [
            "t",
            "e.t",
            "e.t.deep",
            "e.x",
            "e.n",
            "a",
            "a.t",
            "e.missing",
            "t.x",
            "e.n.x",
            "",
        ] {
            let by_pointer = path
                .split('.')
                .try_fold(&parsed, |v, part| v.get(part))
                .cloned();
            assert_eq!(field(doc, path).unwrap(), by_pointer, "path {path:?}");
        }
        assert_eq!(
            field(doc, "t").unwrap(),
            Some(json!(8)),
            "the last duplicate key counts"
        );
        assert_eq!(field(br#"{"k\"ey":1}"#, "k\"ey").unwrap(), Some(json!(1)));
    }

    #[test]
    fn refuses_what_is_not_one_json_document() {
        for bad in [
            &br#"{"t":1"#[..],
            br#"{"t":1} x"#,
            br#"{"a":[1,}"#,
            b"",
            b"nope",
        ] {
            assert!(
                field(bad, "t").is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(field(b"[1,2]", "t").unwrap(), None);
        assert_eq!(field(b"\"text\"", "t").unwrap(), None);
    }
}
