//! Joins across workers: with two and then three workers on co-partitioned
//! 6-partition topics, every join result equals the reference, across the
//! rebalance the third worker causes.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{cluster, unique, wait_for, TestCluster, Worker};

const KEYS: u32 = 60;

fn produce(c: &TestCluster, topic: &str, side: &str, range: std::ops::Range<u32>) {
    let records: Vec<_> = range
        .map(|i| {
            (
                Some(format!("k{}", i % KEYS).into_bytes()),
                Some(format!("{side}{i}").into_bytes()),
            )
        })
        .collect();
    c.produce(topic, &records);
}

/// Every (left, right) pair of one key joins once.
fn reference(
    left: std::ops::Range<u32>,
    right: std::ops::Range<u32>,
) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for l in left.clone() {
        for r in right.clone().filter(|r| r % KEYS == l % KEYS) {
            *out.entry((format!("k{}", l % KEYS), format!("L{l}+R{r}")))
                .or_insert(0) += 1;
        }
    }
    out
}

fn join_worker(c: &TestCluster, app: &str, left: &str, right: &str, output: &str) -> Worker {
    let dir = std::env::temp_dir().join(unique("join-state"));
    Worker::join(&c.bootstrap, app, (left, right, output), &dir, &[])
}

#[test]
fn join_results_equal_the_reference_across_a_rebalance_from_two_to_three_workers() {
    let c = cluster();
    let (left, right, output, app) = (unique("jl"), unique("jr"), unique("jo"), unique("join"));
    for t in [&left, &right, &output] {
        c.create_topic(t, 6);
    }
    if c.is_embedded() {
        c.create_topic(&format!("{app}-dlq"), 1);
        for s in ["join-left", "join-right", "join-unmatched"] {
            c.create_topic(&format!("{app}-{s}-changelog"), 6);
        }
        c.create_topic(&format!("{app}-members"), 1);
    }
    produce(&c, &left, "L", 0..300);
    produce(&c, &right, "R", 0..300);
    let mut a = join_worker(&c, &app, &left, &right, &output);
    let mut b = join_worker(&c, &app, &left, &right, &output);
    wait_for(
        "two workers with three tasks each",
        Duration::from_secs(90),
        || a.assigned() == 6 && b.assigned() == 6,
    );
    let first = reference(0..300, 0..300);
    let n_first: usize = first.values().sum();
    c.consume_until(&output, Duration::from_secs(90), |r| r.len() >= n_first);

    // A third worker joins mid-run: tasks move, with their join buffers.
    let mut w3 = join_worker(&c, &app, &left, &right, &output);
    produce(&c, &left, "L", 300..420);
    produce(&c, &right, "R", 300..420);
    wait_for(
        "three workers with two tasks each",
        Duration::from_secs(90),
        || a.assigned() == 4 && b.assigned() == 4 && w3.assigned() == 4,
    );
    let want = reference(0..420, 0..420);
    let n: usize = want.values().sum();
    let records = c.consume_count(&output, n, Duration::from_secs(120), Duration::from_secs(3));
    let mut got: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in &records {
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        *got.entry((key, r.value_str())).or_insert(0) += 1;
    }
    let missing: Vec<_> = want
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(3)
        .collect();
    assert!(
        missing.is_empty(),
        "{} join results missing, e.g. {missing:?}",
        want.len() - got.len()
    );
    let unexpected: Vec<_> = got
        .keys()
        .filter(|k| !want.contains_key(*k))
        .take(3)
        .collect();
    assert!(
        unexpected.is_empty(),
        "results no input explains: {unexpected:?}"
    );
    if !c.is_embedded() {
        // Kafka accepts the revoking members' commits: nothing is joined twice.
        assert_eq!(got, want);
    }
    for w in [&mut a, &mut b, &mut w3] {
        assert!(w.terminate().success());
    }
}
