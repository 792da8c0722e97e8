//! Timestamp extractors: where a record's event time comes from.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What to do with a record whose timestamp is invalid (negative, missing
/// or unparsable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvalidTimestamp {
    /// Treat it as a bad record: dead-letter it (or stop, under the `Fail`
    /// error policy). Kafka Streams' default fails.
    #[default]
    Fail,
    /// Drop it and count it.
    Skip,
    /// Use the partition's time (the largest timestamp seen on its
    /// partition); skip it if the partition has none yet.
    UsePartitionTime,
}

/// Where a source takes event time from.
///
/// ```
/// use eddy::processor::{InvalidTimestamp, TimestampExtractor};
/// let by_field = TimestampExtractor::JsonField {
///     field: "created_at".into(),
///     on_invalid: InvalidTimestamp::Skip,
/// };
/// # let _ = by_field;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampExtractor {
    /// The Kafka record's timestamp.
    Record {
        /// Policy for negative or missing timestamps.
        on_invalid: InvalidTimestamp,
    },
    /// The wall clock when the record is processed.
    WallClock,
    /// A field of the JSON value (a dotted path such as `event.created_at`)
    /// holding epoch milliseconds or an RFC 3339 date-time.
    JsonField {
        /// The field's path.
        field: String,
        /// Policy for a missing or unparsable field.
        on_invalid: InvalidTimestamp,
    },
}

impl Default for TimestampExtractor {
    fn default() -> Self {
        TimestampExtractor::Record {
            on_invalid: InvalidTimestamp::Fail,
        }
    }
}

/// The outcome of extracting a timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Extracted {
    At(i64),
    Skip,
    Invalid(String),
}

fn from_json(value: Option<&[u8]>, field: &str) -> Result<i64, String> {
    let value = value.ok_or("null value has no timestamp field")?;
    let found = super::json_field::field(value, field)
        .map_err(|e| format!("value is not JSON ({e}), so it has no timestamp field {field}"))?
        .ok_or_else(|| format!("no timestamp field {field}"))?;
    match found {
        serde_json::Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("timestamp field {field} is not an integer: {n}")),
        serde_json::Value::String(s) => OffsetDateTime::parse(&s, &Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .map_err(|e| format!("timestamp field {field}: {s:?} is not RFC 3339: {e}")),
        other => Err(format!(
            "timestamp field {field} is neither a number nor a string: {other}"
        )),
    }
}

impl TimestampExtractor {
    /// The event time of a record.
    pub(crate) fn extract(
        &self,
        record_ts: i64,
        value: Option<&[u8]>,
        wall_clock: i64,
        partition_time: Option<i64>,
    ) -> Extracted {
        let (found, on_invalid) = match self {
            TimestampExtractor::WallClock => return Extracted::At(wall_clock),
            TimestampExtractor::Record { on_invalid } => {
                let found = if record_ts >= 0 {
                    Ok(record_ts)
                } else {
                    Err(format!("invalid record timestamp {record_ts}"))
                };
                (found, *on_invalid)
            }
            TimestampExtractor::JsonField { field, on_invalid } => (
                from_json(value, field).and_then(|t| {
                    if t >= 0 {
                        Ok(t)
                    } else {
                        Err(format!("negative timestamp {t}"))
                    }
                }),
                *on_invalid,
            ),
        };
        match (found, on_invalid) {
            (Ok(t), _) => Extracted::At(t),
            (Err(e), InvalidTimestamp::Fail) => Extracted::Invalid(e),
            (Err(_), InvalidTimestamp::Skip) => Extracted::Skip,
            (Err(_), InvalidTimestamp::UsePartitionTime) => {
                partition_time.map_or(Extracted::Skip, Extracted::At)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(on_invalid: InvalidTimestamp) -> TimestampExtractor {
        TimestampExtractor::JsonField {
            field: "event.at".into(),
            on_invalid,
        }
    }

    #[test]
    fn extracts_from_record_wall_clock_and_json_fields() {
        let record = TimestampExtractor::default();
        assert_eq!(record.extract(42, None, 7, None), Extracted::At(42));
        assert!(matches!(
            record.extract(-1, None, 7, None),
            Extracted::Invalid(_)
        ));
        assert_eq!(
            TimestampExtractor::WallClock.extract(42, None, 7, None),
            Extracted::At(7)
        );
        let f = field(InvalidTimestamp::Fail);
        assert_eq!(
            f.extract(0, Some(br#"{"event":{"at":1700000000123}}"#), 0, None),
            Extracted::At(1_700_000_000_123)
        );
        assert_eq!(
            f.extract(
                0,
                Some(br#"{"event":{"at":"2023-11-14T22:13:20.123+01:00"}}"#),
                0,
                None
            ),
            Extracted::At(1_699_996_400_123)
        );
        assert_eq!(
            f.extract(0, Some(br#"{"event":{}}"#), 0, None),
            Extracted::Invalid("no timestamp field event.at".into())
        );
    }

    #[test]
    fn invalid_timestamps_follow_their_policy() {
        let bad = Some(&br#"{"event":{"at":"yesterday"}}"#[..]);
        assert_eq!(
            field(InvalidTimestamp::Skip).extract(0, bad, 0, Some(5)),
            Extracted::Skip
        );
        assert_eq!(
            field(InvalidTimestamp::UsePartitionTime).extract(0, bad, 0, Some(5)),
            Extracted::At(5)
        );
        assert_eq!(
            field(InvalidTimestamp::UsePartitionTime).extract(0, bad, 0, None),
            Extracted::Skip
        );
        let record = TimestampExtractor::Record {
            on_invalid: InvalidTimestamp::UsePartitionTime,
        };
        assert_eq!(record.extract(-1, None, 0, Some(9)), Extracted::At(9));
    }
}
