//! Event time from timestamp extractors, and their invalid-timestamp
//! policies.

use std::time::Duration;

use eddy::processor::{InvalidTimestamp, TimestampExtractor};
use eddy::runtime::dlq_headers;
use eddy::serde::{I64Serde, Nullable, StringSerde};
use eddy::testing::{TestTopic, TopologyTestDriver};
use eddy::topology::{StreamsBuilder, TimeWindows, Window, Windowed, WindowedSerde};

fn counts_by_field(on_invalid: InvalidTimestamp) -> TopologyTestDriver {
    let b = StreamsBuilder::new();
    let extractor = TimestampExtractor::JsonField {
        field: "at".into(),
        on_invalid,
    };
    b.stream_with("events", StringSerde, StringSerde, extractor)
        .group_by_key(StringSerde, StringSerde)
        .windowed_by(TimeWindows::tumbling(
            Duration::from_millis(100),
            Duration::from_millis(100),
        ))
        .count("counts")
        .to_stream()
        .to("out", WindowedSerde(StringSerde), Nullable(I64Serde));
    TopologyTestDriver::new(b.build().unwrap())
}

fn w(start: i64) -> Windowed<String> {
    Windowed {
        key: "k".into(),
        window: Window {
            start,
            end: start + 100,
        },
    }
}

#[test]
fn a_payload_field_gives_event_time_and_bad_ones_are_dead_lettered() {
    let mut d = counts_by_field(InvalidTimestamp::Fail);
    let events = TestTopic::new("events", StringSerde, StringSerde);
    // The Kafka record timestamps (999) are ignored: the field decides.
    d.pipe(&events, "k".into(), r#"{"at": 150}"#.into(), 999)
        .unwrap();
    d.pipe(
        &events,
        "k".into(),
        r#"{"at": "1970-01-01T00:00:00.020Z"}"#.into(),
        999,
    )
    .unwrap();
    d.pipe(&events, "k".into(), r#"{"at": "soon"}"#.into(), 999)
        .unwrap();
    let out = TestTopic::new("out", WindowedSerde(StringSerde), Nullable(I64Serde));
    let got: Vec<_> = d
        .read(&out)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect();
    assert_eq!(got, [(w(100), Some(1), 150), (w(0), Some(1), 20)]);
    let dlq = d.read_raw("test-app-dlq");
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        dlq[0].headers.last(dlq_headers::EXCEPTION),
        Some(&b"timestamp"[..])
    );
    let message =
        String::from_utf8(dlq[0].headers.last(dlq_headers::MESSAGE).unwrap().to_vec()).unwrap();
    assert!(message.contains("\"soon\" is not RFC 3339"), "{message}");
}

#[test]
fn skip_drops_and_partition_time_reuses_the_largest_timestamp_seen() {
    let events = TestTopic::new("events", StringSerde, StringSerde);
    let out = TestTopic::new("out", WindowedSerde(StringSerde), Nullable(I64Serde));

    let mut skip = counts_by_field(InvalidTimestamp::Skip);
    skip.pipe(&events, "k".into(), r#"{"no": 1}"#.into(), 0)
        .unwrap();
    assert!(skip.read(&out).unwrap().is_empty());
    assert!(skip.read_raw("test-app-dlq").is_empty());

    let mut partition_time = counts_by_field(InvalidTimestamp::UsePartitionTime);
    partition_time
        .pipe(&events, "k".into(), r#"{"no": 1}"#.into(), 0)
        .unwrap();
    partition_time
        .pipe(&events, "k".into(), r#"{"at": 230}"#.into(), 0)
        .unwrap();
    partition_time
        .pipe(&events, "k".into(), r#"{"at": -5}"#.into(), 0)
        .unwrap();
    let got: Vec<_> = partition_time
        .read(&out)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value, r.timestamp))
        .collect();
    // The first has no partition time yet: skipped; the third takes 230.
    assert_eq!(got, [(w(200), Some(1), 230), (w(200), Some(2), 230)]);
}
