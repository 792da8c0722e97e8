//! Rebalances on the real broker (`EDDY_TEST_BOOTSTRAP`; skipped on the
//! embedded cluster, which is not where rebalancing is proven):
//!
//! - under the consumer group protocol (KIP-848) a worker that joins takes
//!   tasks without stopping the ones that stay (only the tasks that move
//!   are closed), where the classic protocol closes every task; the joined
//!   results are exact either way;
//! - a worker killed for good loses its partitions within 10 s (the broker's
//!   6 s session), and under the classic protocol a static member killed
//!   and restarted at once takes its partitions back within 5 s, without
//!   stopping the other worker's tasks.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{cluster, unique, wait_for, TestCluster, Worker};

const KEYS: u32 = 60;
const MINUTE: Duration = Duration::from_secs(60);

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

/// Every (left, right) pair of one key, once.
fn reference(n: u32) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for l in 0..n {
        for r in (0..n).filter(|r| r % KEYS == l % KEYS) {
            *out.entry((format!("k{}", l % KEYS), format!("L{l}+R{r}")))
                .or_insert(0) += 1;
        }
    }
    out
}

/// Two join workers of `protocol` on 6 co-partitioned partitions, the
/// second started once the first runs all six tasks; the first worker's
/// tasks closed by that rebalance. The results must equal the reference.
fn tasks_closed_when_a_second_worker_joins(protocol: &str) -> Option<i64> {
    let c = cluster();
    if c.is_embedded() {
        eprintln!("skipped: rebalancing is proven on the real broker only");
        return None;
    }
    let (left, right, output, app) = (unique("rl"), unique("rr"), unique("ro"), unique("reb"));
    for t in [&left, &right, &output] {
        c.create_topic(t, 6);
    }
    let worker = || {
        let dir = std::env::temp_dir().join(unique("reb-state"));
        let args = ["--group-protocol", protocol];
        Worker::join(&c.bootstrap, &app, (&left, &right, &output), &dir, &args)
    };
    produce(&c, &left, "L", 0..300);
    produce(&c, &right, "R", 0..300);
    let mut a = worker();
    wait_for("one worker with six tasks", MINUTE, || {
        a.assigned() == 12 && a.metric("eddy_thread_records_processed_total") == 600
    });
    assert_eq!(a.metric("eddy_thread_tasks_created_total"), 6);
    let mut b = worker();
    wait_for("two workers with three tasks each", MINUTE, || {
        a.assigned() == 6 && b.assigned() == 6
    });
    let closed = a.metric("eddy_thread_tasks_closed_total");
    produce(&c, &left, "L", 300..420);
    produce(&c, &right, "R", 300..420);

    let want = reference(420);
    let n: usize = want.values().sum();
    let records = c.consume_count(&output, n, MINUTE * 2, Duration::from_secs(3));
    let mut got: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in &records {
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        *got.entry((key, r.value_str())).or_insert(0) += 1;
    }
    assert_eq!(got.len(), want.len(), "join results missing or unexplained");
    // The revoking member commits before it lets go: nothing twice.
    assert_eq!(got, want);
    for w in [&mut a, &mut b] {
        assert!(w.terminate().success());
    }
    Some(closed)
}

#[test]
fn under_the_consumer_protocol_a_joining_worker_stops_only_the_tasks_it_takes() {
    if let Some(closed) = tasks_closed_when_a_second_worker_joins("consumer") {
        assert_eq!(closed, 3, "the three tasks that stay keep running");
    }
}

#[test]
fn under_the_classic_protocol_a_joining_worker_stops_every_task() {
    if let Some(closed) = tasks_closed_when_a_second_worker_joins("classic") {
        assert_eq!(closed, 6, "an eager rebalance revokes every partition");
    }
}

/// Two `eddy count` workers (each with its state directory) on 4
/// partitions with `extra` arguments; one is SIGKILLed and restarted at
/// once on its directory, then SIGKILLed for good. How long the restarted
/// one took to hold two partitions again, and how long the survivor took
/// to hold all four; the survivor's tasks closed meanwhile.
fn crash_restart_and_death(extra: &[&str]) -> Option<(Duration, Duration, i64)> {
    let c = cluster();
    if c.is_embedded() {
        eprintln!("skipped: rebalancing is proven on the real broker only");
        return None;
    }
    let (input, output, app) = (unique("sm-in"), unique("sm-out"), unique("member"));
    c.create_topic(&input, 4);
    c.create_topic(&output, 4);
    let dirs = [
        std::env::temp_dir().join(unique("member-a")),
        std::env::temp_dir().join(unique("member-b")),
    ];
    let worker = |dir: &std::path::Path| {
        Worker::count_with(&c.bootstrap, &app, (&input, &output), dir, extra)
    };
    let a = worker(&dirs[0]);
    let mut b = worker(&dirs[1]);
    wait_for("two workers with two partitions each", MINUTE, || {
        a.assigned() == 2 && b.assigned() == 2
    });
    let closed_before = a.metric("eddy_thread_tasks_closed_total");

    b.kill();
    let restarted = Instant::now();
    let mut b = worker(&dirs[1]);
    wait_for(
        "the restarted worker to hold two partitions",
        MINUTE,
        || b.assigned() == 2 && a.assigned() == 2,
    );
    let back = restarted.elapsed();
    let closed = a.metric("eddy_thread_tasks_closed_total") - closed_before;

    b.kill();
    let killed = Instant::now();
    wait_for("the survivor to hold all four partitions", MINUTE, || {
        a.assigned() == 4
    });
    let moved = killed.elapsed();
    eprintln!("{extra:?}: restarted worker back after {back:?}, dead worker's partitions moved after {moved:?}, survivor's tasks closed: {closed}");
    Some((back, moved, closed))
}

#[test]
fn under_the_consumer_protocol_a_dead_workers_partitions_move_within_10_s() {
    let Some((back, moved, _)) = crash_restart_and_death(&[]) else {
        return;
    };
    // The broker's 6 s session (scripts/kafka/start.sh): the restarted
    // worker is a new member, and what the dead one held waits for it.
    assert!(
        back < Duration::from_secs(10),
        "restarted worker back after {back:?}"
    );
    assert!(
        moved < Duration::from_secs(10),
        "partitions moved after {moved:?}"
    );
}

#[test]
fn a_static_member_of_the_classic_protocol_restarted_at_once_is_back_within_5_s() {
    let Some((back, moved, closed)) = crash_restart_and_death(&common::CLASSIC_6S_SESSION) else {
        return;
    };
    // Same instance id: the broker hands it its partitions without a
    // rebalance, so the survivor's tasks never stop.
    assert!(
        back < Duration::from_secs(5),
        "restarted worker back after {back:?}"
    );
    assert_eq!(closed, 0, "the survivor's tasks were stopped");
    assert!(
        moved < Duration::from_secs(10),
        "partitions moved after {moved:?}"
    );
}
