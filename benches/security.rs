//! What security costs the stateless pipeline (`benches/pipeline.rs`'s
//! work: 100-byte records filtered and upper-cased, one stream thread), in
//! the same run, rounds alternating:
//!
//! - TLS with SCRAM-SHA-512 against plaintext: eddy on the secured broker
//!   (`scripts/kafka/start.sh --secured`, beside the plaintext one on the
//!   same machine) against eddy on the plaintext broker, with the raw
//!   librdkafka loop on each as the yardstick of what TLS costs the client
//!   and the broker alone;
//! - signing and verification: eddy on the plaintext broker reading a
//!   topic whose records are signed (each verified) and signing what it
//!   writes, against the same work unsigned; and, as the floor, the
//!   signed input read unchecked with its signature headers passed on to
//!   the output (the bytes of signing without its work).
//!
//! - the floor of signing: the same signing and verifying of every
//!   record in memory, no Kafka (the HMAC-SHA256 work alone, per record).
//!
//! Needs `EDDY_TEST_BOOTSTRAP`, `EDDY_TEST_SECURED_BOOTSTRAP` and
//! `EDDY_TEST_SECURED_DIR` (as the tests). `EDDY_BENCH_RECORDS` (default
//! 1 000 000), `EDDY_BENCH_ROUNDS` (default 3), `EDDY_BENCH_PARTITIONS`
//! (default 4), `EDDY_BENCH_ONLY=<0..5>` (one variant alone).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use eddy::kafka::{send_blocking, StreamsConfig};
use eddy::security::{SigningKey, TopicSigning, KEY_ID, SIGNATURE};
use eddy::serde::{BytesSerde, Nullable};
use eddy::testing::{unique, TestCluster};
use eddy::topology::StreamsBuilder;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};

const PASSWORD_ENV: &str = "EDDY_BENCH_ADMIN_PASSWORD";

/// One kind of run.
#[derive(Clone, Copy, PartialEq)]
enum Run {
    Raw { tls: bool },
    Eddy { tls: bool, signing: Signing },
}

/// What an eddy run does with signatures.
#[derive(Clone, Copy, PartialEq)]
enum Signing {
    /// Unsigned input, unsigned output.
    Off,
    /// The signed input, its signature headers passed on to the output
    /// unchecked: the bytes of signing without its work (the floor).
    Carried,
    /// The signed input verified, the output signed.
    On,
}

fn records(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let mut value = format!("value-{i}-").into_bytes();
            value.resize(100, b'x');
            (format!("key-{i}").into_bytes(), value)
        })
        .collect()
}

/// Writes the input to `topic`, each record signed for `topic` if `key`.
fn produce(
    c: &TestCluster,
    topic: &str,
    records: &[(Vec<u8>, Vec<u8>)],
    key: Option<&TopicSigning>,
) {
    let producer = c.producer();
    for (k, v) in records {
        let mut r = BaseRecord::<[u8], [u8]>::to(topic).key(k).payload(v);
        let signature = key.and_then(|s| s.sign(topic, Some(k), Some(v), |_| None));
        let hex = signature.as_ref().map(|s| s.hex());
        if let (Some(s), Some(hex)) = (&signature, &hex) {
            r = r.headers(
                OwnedHeaders::new()
                    .insert(Header {
                        key: KEY_ID,
                        value: Some(s.key_id.as_bytes()),
                    })
                    .insert(Header {
                        key: SIGNATURE,
                        value: Some(&hex[..]),
                    }),
            );
        }
        send_blocking(&producer, r).expect("produce");
    }
    producer.flush(Duration::from_secs(120)).unwrap();
}

/// The HMAC work of a signed run without Kafka: every record verified as
/// read from `topic` and signed as written to another topic, in memory.
fn hmac_floor(signing: &TopicSigning, topic: &str, data: &[(Vec<u8>, Vec<u8>)]) -> Duration {
    let signed: Vec<_> = data
        .iter()
        .map(|(k, v)| {
            let s = signing.sign(topic, Some(k), Some(v), |_| None).unwrap();
            (s.key_id.clone(), s.hex())
        })
        .collect();
    let start = std::time::Instant::now();
    for ((k, v), (id, hex)) in data.iter().zip(&signed) {
        let header = |name: &str| match name {
            KEY_ID => Some(id.as_bytes()),
            SIGNATURE => Some(&hex[..]),
            _ => None,
        };
        signing.verify(topic, Some(k), Some(v), header).unwrap();
        let out = signing.sign("output-topic", Some(k), Some(v), |_| None);
        std::hint::black_box(out.map(|s| s.hex()));
    }
    start.elapsed()
}

fn main() {
    let n = common::env_usize("EDDY_BENCH_RECORDS", 1_000_000);
    let rounds = common::env_usize("EDDY_BENCH_ROUNDS", 3);
    let partitions = common::env_usize("EDDY_BENCH_PARTITIONS", 4) as i32;
    let plain = TestCluster::from_env();
    let Some(secured) = TestCluster::secured_from_env() else {
        eprintln!("security benchmark: set EDDY_TEST_SECURED_BOOTSTRAP and EDDY_TEST_SECURED_DIR");
        return;
    };
    std::env::set_var(PASSWORD_ENV, secured.password("admin"));
    let tls = StreamsConfig::new("raw")
        .security(&secured.security("admin", PASSWORD_ENV))
        .unwrap();
    let key = SigningKey::new("bench", b"a benchmark key of 32 bytes long");
    let signing = TopicSigning {
        sign: Some(key.clone()),
        verify: vec![key],
        headers: Vec::new(),
    };

    let data = records(n);
    let input = unique("sec-in");
    let signed_input = unique("sec-signed-in");
    for (c, topic) in [
        (&plain, &input),
        (&plain, &signed_input),
        (&secured, &input),
    ] {
        c.create_topic(topic, partitions);
    }
    produce(&plain, &input, &data, None);
    produce(&plain, &signed_input, &data, Some(&signing));
    produce(&secured, &input, &data, None);
    let floor = hmac_floor(&signing, &signed_input, &data);
    drop(data);
    println!(
        "security benchmark: {n} records of 100 bytes, {partitions} partitions, one thread; plaintext {}, TLS + SCRAM-SHA-512 {}",
        plain.bootstrap, secured.bootstrap
    );

    let eddy = |tls, signing| Run::Eddy { tls, signing };
    let variants = [
        ("raw plaintext", Run::Raw { tls: false }, 0),
        ("raw TLS", Run::Raw { tls: true }, 0),
        ("eddy plaintext", eddy(false, Signing::Off), 2),
        ("eddy TLS", eddy(true, Signing::Off), 2),
        ("eddy signed", eddy(false, Signing::On), 2),
        ("eddy headers only", eddy(false, Signing::Carried), 2),
    ];
    // `EDDY_BENCH_ONLY=<i>` runs variant i alone (to profile it).
    let only = std::env::var("EDDY_BENCH_ONLY")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    let mut rates = vec![Vec::new(); variants.len()];
    for round in 1..=rounds {
        for (i, (name, run, _)) in variants.iter().enumerate() {
            if only.is_some_and(|o| o != i) {
                continue;
            }
            let tls_run = matches!(run, Run::Raw { tls: true } | Run::Eddy { tls: true, .. });
            let c = if tls_run { &secured } else { &plain };
            let output = unique("sec-out");
            c.create_topic(&output, partitions);
            let d = match *run {
                Run::Raw { tls: true } => {
                    common::raw_loop(&tls, &c.bootstrap, &input, &output, n, false)
                }
                Run::Raw { tls: false } => {
                    let config = StreamsConfig::new("raw");
                    common::raw_loop(&config, &c.bootstrap, &input, &output, n, false)
                }
                Run::Eddy { tls, signing: mode } => {
                    let from = match mode {
                        Signing::Off => &input,
                        Signing::Carried | Signing::On => &signed_input,
                    };
                    let b = StreamsBuilder::new();
                    b.stream(from, Nullable(BytesSerde), BytesSerde)
                        .filter(|_, v| common::keep(v))
                        .map_values(common::shout)
                        .to(&output, Nullable(BytesSerde), BytesSerde);
                    let app = unique("sec-bench");
                    let mut by_topic = BTreeMap::new();
                    if mode == Signing::On {
                        by_topic.insert(from.clone(), signing.clone());
                        by_topic.insert(output.clone(), signing.clone());
                    }
                    common::time_worker_with(
                        &c.bootstrap,
                        &app,
                        b.build().unwrap(),
                        "security",
                        n,
                        |config| {
                            let mut config = config;
                            config.signing = by_topic;
                            match tls {
                                true => config
                                    .security(&secured.security("admin", PASSWORD_ENV))
                                    .unwrap(),
                                false => config,
                            }
                        },
                    )
                }
            };
            let rate = n as f64 / d.as_secs_f64();
            println!(
                "  round {round}: {name:<16} {rate:>10.0} records/s ({:.2} s)",
                d.as_secs_f64()
            );
            rates[i].push(rate);
        }
    }
    if only.is_some() {
        return;
    }
    println!(
        "  signing floor: verify + sign in memory {:.0} ns a record ({:.3} of eddy plaintext's median time a record)",
        floor.as_nanos() as f64 / n as f64,
        floor.as_secs_f64() / (n as f64 / common::median(&mut rates[2].clone()))
    );
    // Per round first, to see the spread (the medians sort the rates).
    for (name, a, b) in [
        ("TLS / plaintext, raw", 1, 0),
        ("TLS / plaintext, eddy", 3, 2),
        ("signed / unsigned, eddy", 4, 2),
        ("headers only / unsigned, eddy", 5, 2),
    ] {
        let per_round: Vec<String> = rates[a]
            .iter()
            .zip(&rates[b])
            .map(|(x, y)| format!("{:.3}", x / y))
            .collect();
        println!("  {name}, per round: {}", per_round.join(" / "));
    }
    let medians: Vec<f64> = rates.iter_mut().map(|v| common::median(v)).collect();
    for ((name, _, base), m) in variants.iter().zip(&medians) {
        println!(
            "  median: {name} {m:.0} records/s, {:.3} of {}",
            m / medians[*base],
            variants[*base].0
        );
    }
}
