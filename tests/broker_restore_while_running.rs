//! A restore does not stop the thread's other tasks nor hold up the group:
//! a worker that restores a 5 M-key store (task 0_0) keeps processing its
//! three other tasks meanwhile, no rebalance happens, and `/ready` answers
//! 503 until the restore is done. On the real broker
//! (`EDDY_TEST_BOOTSTRAP`); on the embedded cluster it returns at once.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, fill_counts, unique, wait_for, Worker};
use eddy::kafka::partitioner::partition_for_key;

// About two seconds of restore on the development machine (2.5 M records/s;
// the other tasks take up to a second from the assignment to their first
// records): the other tasks' records are written before the worker
// starts, and the metrics are sampled every 20 ms.
const KEYS: u32 = 5_000_000;

#[test]
fn other_tasks_keep_processing_while_a_million_keys_restore() {
    let c = cluster();
    if c.is_embedded() {
        eprintln!("skipped: proven on the real broker only");
        return;
    }
    let (input, output, app) = (unique("rw-in"), unique("rw-out"), unique("restorer"));
    c.create_topic(&input, 4);
    c.create_topic(&output, 4);
    // The count store's changelog, partition 0 holding five million counts:
    // what task 0_0 restores on a new state directory.
    fill_counts(&c, &format!("{app}-counts-changelog"), 4, KEYS);

    // Records for partitions 1 to 3 only: ten batches before the worker
    // starts, then a batch every 20 ms while the restore runs: (time since
    // start, processed, left to restore).
    let others: Vec<String> = (0..)
        .map(|i| format!("other-{i}"))
        .filter(|k| partition_for_key(k.as_bytes(), 4) != 0)
        .take(20)
        .collect();
    let batch: Vec<_> = others
        .iter()
        .map(|k| (Some(k.clone().into_bytes()), Some(b"x".to_vec())))
        .collect();
    for _ in 0..10 {
        c.produce(&input, &batch);
    }
    let dir = std::env::temp_dir().join(unique("rw-state"));
    let worker = Worker::count(&c.bootstrap, &app, &input, &output, &dir);
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut restoring_seen = false;
    while started.elapsed() < Duration::from_secs(240) {
        c.produce(&input, &batch);
        // Asked before the gauge: a restore ends (the gauge drops to 0)
        // before its task runs (and the worker turns ready).
        let ready = worker.get("/ready").map(|(status, _)| status);
        let left = worker.metric("eddy_store_restore_remaining_records");
        let processed = worker.metric("eddy_thread_records_processed_total");
        samples.push((started.elapsed(), processed, left));
        if left > 0 {
            assert!(
                matches!(ready, Some(503) | None),
                "ready while restoring: {ready:?}"
            );
        }
        restoring_seen |= left > 0;
        if restoring_seen && left == 0 && worker.assigned() == 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let during: Vec<_> = samples.iter().filter(|(_, _, left)| *left > 0).collect();
    assert!(!during.is_empty(), "the restore was never seen running");
    let (first, last) = (during[0], during[during.len() - 1]);
    assert!(
        last.1 > first.1,
        "no record processed while the store restored: {during:?}"
    );
    // The longest stretch of the restore without a processed record.
    let mut longest = Duration::ZERO;
    let mut since = first.0;
    for w in during.windows(2) {
        if w[1].1 > w[0].1 {
            since = w[1].0;
        }
        longest = longest.max(w[1].0 - since);
    }
    eprintln!(
        "restore of {KEYS} keys ran {:?}; records processed meanwhile: {}; longest stretch without one: {longest:?}",
        last.0 - first.0,
        last.1 - first.1
    );
    wait_for("the restored task to run", Duration::from_secs(60), || {
        worker.assigned() == 4
    });
    assert_eq!(
        worker.metric("eddy_store_restored_records_total"),
        i64::from(KEYS)
    );
    assert_eq!(worker.get("/ready").map(|(status, _)| status), Some(200));
    assert_eq!(
        worker.metric("eddy_thread_tasks_closed_total"),
        0,
        "a rebalance stopped tasks"
    );
    assert_eq!(worker.metric("eddy_thread_tasks_created_total"), 4);
}
