//! Signed topics: a record read from a verified topic reaches the
//! topology only with a valid signature by a key the topic accepts (the
//! others go to the dead-letter topic with the reason), and what the
//! topology writes to a signed topic carries a signature by its key.
//! Keys rotate: the old key is retired, the rotated one accepted.

use std::collections::BTreeMap;

use eddy::processor::Headers;
use eddy::runtime::dlq_headers;
use eddy::security::{SigningKey, TopicSigning, KEY_ID, SIGNATURE};
use eddy::serde::StringSerde;
use eddy::testing::{DriverConfig, TopologyTestDriver};
use eddy::topology::StreamsBuilder;

fn driver(current: &SigningKey, rotated: &SigningKey) -> TopologyTestDriver {
    let b = StreamsBuilder::new();
    b.stream("payments", StringSerde, StringSerde)
        .map_values(|v: String| v.to_uppercase())
        .to("outcomes", StringSerde, StringSerde);
    let mut signing = BTreeMap::new();
    // The reader accepts the current key and the one rotated in; the
    // retired key is no longer listed.
    signing.insert(
        "payments".to_owned(),
        TopicSigning {
            verify: vec![current.clone(), rotated.clone()],
            headers: vec!["type".into()],
            ..TopicSigning::default()
        },
    );
    signing.insert(
        "outcomes".to_owned(),
        TopicSigning {
            sign: Some(rotated.clone()),
            ..TopicSigning::default()
        },
    );
    let config = DriverConfig {
        signing,
        ..DriverConfig::default()
    };
    TopologyTestDriver::with_config(b.build().unwrap(), config)
}

/// Headers of a record signed by `key` over `value` (or none).
fn signed(key: Option<&SigningKey>, value: &[u8]) -> Headers {
    let mut headers = Headers::new();
    headers.add("type", "payment_successful");
    if let Some(key) = key {
        let writer = TopicSigning {
            sign: Some(key.clone()),
            headers: vec!["type".into()],
            ..TopicSigning::default()
        };
        let s = writer
            .sign("payments", Some(b"order-1"), Some(value), |n| {
                (n == "type").then_some(&b"payment_successful"[..])
            })
            .unwrap();
        headers
            .add(KEY_ID, key.id())
            .add(SIGNATURE, s.hex().to_vec());
    }
    headers
}

#[test]
fn only_records_signed_by_an_accepted_key_reach_the_topology() {
    let retired = SigningKey::new("k2025", b"the key of last year, now retired");
    let current = SigningKey::new("k2026", b"the key in use until the rotation");
    let rotated = SigningKey::new("k2027", b"the key rotated in, signing now");
    let mut d = driver(&current, &rotated);
    let key = Some(&b"order-1"[..]);
    let mut pipe = |value: &[u8], headers: Headers| {
        d.pipe_raw("payments", None, key, Some(value), 0, headers)
            .unwrap();
    };
    pipe(b"unsigned", signed(None, b"unsigned"));
    // Signed, then changed on the way.
    pipe(b"tampered", signed(Some(&current), b"original"));
    pipe(
        b"by the retired key",
        signed(Some(&retired), b"by the retired key"),
    );
    // A valid signature, but a header it covers was changed.
    let mut retyped = signed(Some(&current), b"retyped");
    retyped.0.retain(|h| h.key != "type");
    retyped.add("type", "payment_refunded");
    pipe(b"retyped", retyped);
    pipe(
        b"by the current key",
        signed(Some(&current), b"by the current key"),
    );
    pipe(
        b"by the rotated key",
        signed(Some(&rotated), b"by the rotated key"),
    );

    let out = d.read_raw("outcomes");
    let values: Vec<&[u8]> = out.iter().map(|r| r.value.as_deref().unwrap()).collect();
    assert_eq!(values, [&b"BY THE CURRENT KEY"[..], b"BY THE ROTATED KEY"]);
    // The outputs are signed by the topic's key, over what was written.
    let reader = TopicSigning {
        verify: vec![rotated.clone()],
        ..TopicSigning::default()
    };
    for r in &out {
        assert_eq!(r.headers.last(KEY_ID), Some(&b"k2027"[..]));
        let header = |n: &str| r.headers.last(n);
        let ok = reader.verify("outcomes", r.key.as_deref(), r.value.as_deref(), header);
        assert_eq!(ok, Ok(()));
        // The input's signature headers were replaced, not repeated.
        assert_eq!(r.headers.iter().filter(|h| h.key == SIGNATURE).count(), 1);
    }

    let dead = d.read_raw("test-app-dlq");
    let reasons: Vec<(String, String, String)> = dead
        .iter()
        .map(|r| {
            let text = |h: &str| String::from_utf8_lossy(r.headers.last(h).unwrap()).into_owned();
            (
                String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned(),
                text(dlq_headers::EXCEPTION),
                text(dlq_headers::MESSAGE),
            )
        })
        .collect();
    let expected = [
        ("unsigned", "no signature: the record has no eddy-key-id/eddy-signature headers"),
        ("tampered", "the signature does not match (key \"k2026\")"),
        (
            "by the retired key",
            "signed with key \"k2025\", which this topic does not accept (accepted: [\"k2026\", \"k2027\"])",
        ),
        ("retyped", "the signature does not match (key \"k2026\")"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(v, m)| (v.to_string(), "signature".to_string(), m.to_string()))
        .collect();
    assert_eq!(reasons, expected);
}
