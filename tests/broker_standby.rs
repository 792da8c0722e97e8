//! Standby replicas and query routing on the real broker
//! (`EDDY_TEST_BOOTSTRAP`; on the embedded cluster they return at once):
//! a task with a million keys fails over to the worker that keeps its
//! standby and restores only the changelog's tail there (against a full
//! restore without one), and answers stale reads from its copy when asked;
//! a query for a key another worker holds names that worker, and names its
//! successor once it is killed.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, fill_counts, unique, wait_for, Worker};
use eddy::kafka::partitioner::partition_for_key;
use eddy::testing::TestCluster;
use serde_json::Value;

const KEYS: u32 = 1_000_000;

/// Fills partition 0 of `app`'s count changelog with a million counts and
/// makes its one-partition input and output topics.
fn a_million_counts(c: &TestCluster, app: &str) -> (String, String) {
    let (input, output) = (unique("sb-in"), unique("sb-out"));
    c.create_topic(&input, 1);
    c.create_topic(&output, 1);
    fill_counts(c, &format!("{app}-counts-changelog"), 1, KEYS);
    (input, output)
}

/// Kills the worker that runs the million-key task and measures how long
/// another takes to process a record of it: (seconds, changelog records
/// it restored for it).
///
/// With a standby (`standbys` "1"), a second worker runs beside the first
/// and keeps a copy. When it joins, the group may move the task to it (the
/// broker's assignor under the consumer protocol, and librdkafka's
/// cooperative-sticky one under the classic protocol, both did in about
/// half the runs: neither knows where state lives, as Kafka Streams' own
/// assignor does); the first worker then keeps the standby. Whichever runs
/// the task is killed and the other takes it over. Without a standby, the
/// second worker starts only once the first is killed, so it holds no
/// copy of any kind.
fn fail_over(standbys: &str) -> (f64, i64) {
    let c = cluster();
    let app = unique("standby");
    let (input, output) = a_million_counts(&c, &app);
    let args = ["--standby-replicas", standbys];
    let dir = |n| std::env::temp_dir().join(unique(n));
    let (dir_a, dir_b) = (dir("sb-a"), dir("sb-b"));
    let start = |dir| Worker::count_with(&c.bootstrap, &app, (&input, &output), dir, &args);
    let mut workers = vec![start(&dir_a)];
    wait_for(
        "the first worker to run the task",
        Duration::from_secs(120),
        || workers[0].assigned() == 1 && workers[0].metric("eddy_thread_starting_tasks") == 0,
    );
    let mut counted = c.reader(&output);
    let records: Vec<_> = (0..1000)
        .map(|i| (Some(format!("new-{i}").into_bytes()), Some(b"x".to_vec())))
        .collect();
    let (active, survivor) = if standbys == "1" {
        workers.push(start(&dir_b));
        // Records after the restore: the changelog grows while both run.
        c.produce(&input, &records);
        assert!(
            counted.read_until(Duration::from_secs(120), |r| r.len() >= 1000),
            "the 1000 records were not counted"
        );
        std::thread::sleep(Duration::from_secs(1));
        let roles = |ws: &[Worker]| {
            let active = ws.iter().position(|w| w.assigned() == 1)?;
            let (a, s) = (&ws[active], &ws[1 - active]);
            let settled = a.metric("eddy_thread_starting_tasks") == 0
                && s.assigned() == 0
                && s.metric("eddy_standby_tasks") == 1
                // The copy's lag is known (it has fetched) and nil: it
                // may have copied nothing if the first worker processed
                // every record before the task moved.
                && s.metrics()
                    .is_some_and(|t| t.contains("\neddy_standby_lag_records{"))
                && s.metric("eddy_standby_lag_records") == 0;
            settled.then_some((active, 1 - active))
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(roles) = roles(&workers) {
                break roles;
            }
            let m = |w: &Worker, name| w.metric(name);
            assert!(
                Instant::now() < deadline,
                "the standby did not catch up: assigned {} / {}, standby tasks {} / {}, \
                 records copied {} / {}, lag {} / {}",
                workers[0].assigned(),
                workers[1].assigned(),
                m(&workers[0], "eddy_standby_tasks"),
                m(&workers[1], "eddy_standby_tasks"),
                m(&workers[0], "eddy_standby_records_total"),
                m(&workers[1], "eddy_standby_records_total"),
                m(&workers[0], "eddy_standby_lag_records"),
                m(&workers[1], "eddy_standby_lag_records"),
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    } else {
        c.produce(&input, &records);
        assert!(
            counted.read_until(Duration::from_secs(120), |r| r.len() >= 1000),
            "the 1000 records were not counted"
        );
        (0, 1)
    };
    if standbys == "1" {
        // The other worker names the active one as the key's owner, and
        // reads its standby copy when asked for a stale read.
        let (a, s) = (&workers[active], &workers[survivor]);
        let (status, v) = json(s, "/stores/counts/key-7").unwrap();
        assert_eq!(status, 421, "{v}");
        assert_eq!(v["owner"]["address"], format!("http://{}", a.http));
        let (status, v) = json(s, "/stores/counts/key-7?stale=true").unwrap();
        assert_eq!(
            (status, &v["value"], &v["standby"]),
            (200, &1.into(), &true.into()),
            "{v}"
        );
        let (status, v) = json(s, "/stores/counts/no-such-key?stale=true").unwrap();
        assert_eq!(status, 404, "{v}");
    }
    workers[active].kill();
    let killed = Instant::now();
    if standbys != "1" {
        workers.push(start(&dir_b));
    }
    let s = &workers[survivor];
    let (processed, restored) = (
        s.metric("eddy_thread_records_processed_total").max(0),
        s.metric("eddy_store_restored_records_total").max(0),
    );
    let mut n = 0;
    while s.metric("eddy_thread_records_processed_total") <= processed {
        assert!(
            killed.elapsed() < Duration::from_secs(180),
            "the task did not resume on the other worker"
        );
        c.produce(
            &input,
            &[(Some(format!("probe-{n}").into_bytes()), Some(b"x".to_vec()))],
        );
        n += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let resumed = killed.elapsed().as_secs_f64();
    let restored = s.metric("eddy_store_restored_records_total") - restored;
    if standbys != "1" {
        assert_eq!(s.metric("eddy_standby_tasks"), 0);
    }
    // Every count survived the move: a key of the million counts 2 now.
    c.produce(&input, &[(Some(b"key-7".to_vec()), Some(b"x".to_vec()))]);
    wait_for("key-7 counted twice", Duration::from_secs(60), || {
        json(s, "/stores/counts/key-7").is_some_and(|(status, v)| status == 200 && v["value"] == 2)
    });
    drop(workers);
    for d in [dir_a, dir_b] {
        let _ = std::fs::remove_dir_all(d);
    }
    (resumed, restored)
}

#[test]
fn a_task_fails_over_to_its_standby_without_a_full_restore() {
    if cluster().is_embedded() {
        eprintln!("skipped: proven on the real broker only");
        return;
    }
    let (with, with_restored) = fail_over("1");
    let (without, without_restored) = fail_over("0");
    eprintln!(
        "failover of a {KEYS}-key task: with a standby {with:.1} s ({with_restored} records restored), \
         without {without:.1} s ({without_restored} records restored)"
    );
    assert!(
        without_restored >= i64::from(KEYS),
        "without a standby the store is restored whole: {without_restored}"
    );
    assert!(
        with_restored < i64::from(KEYS) / 100,
        "with a standby only the changelog's tail is restored: {with_restored}"
    );
}

/// `GET path` of a worker: the status and the JSON body.
fn json(w: &Worker, path: &str) -> Option<(u16, Value)> {
    let (status, response) = w.get(path)?;
    let body = response.split("\r\n\r\n").nth(1)?;
    Some((status, serde_json::from_str(body).ok()?))
}

/// The owner named by a worker's answer for `key` (421), or `None` if the
/// worker holds the key itself (200) or names no one.
fn named_owner(w: &Worker, key: &str) -> Option<String> {
    let (status, v) = json(w, &format!("/stores/counts/{key}"))?;
    match status {
        421 => v["owner"]["address"].as_str().map(str::to_owned),
        _ => None,
    }
}

#[test]
fn a_query_names_the_worker_that_holds_the_key_and_its_successor() {
    let c = cluster();
    if c.is_embedded() {
        eprintln!("skipped: proven on the real broker only");
        return;
    }
    let (input, output, app) = (unique("route-in"), unique("route-out"), unique("route"));
    c.create_topic(&input, 3);
    c.create_topic(&output, 3);
    let dirs: Vec<_> = (0..3)
        .map(|_| std::env::temp_dir().join(unique("route-state")))
        .collect();
    let mut workers: Vec<Worker> = dirs
        .iter()
        .map(|d| Worker::count(&c.bootstrap, &app, &input, &output, d))
        .collect();
    wait_for(
        "each worker to run one task",
        Duration::from_secs(60),
        || workers.iter().all(|w| w.assigned() == 1),
    );
    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    let records: Vec<_> = keys
        .iter()
        .map(|k| (Some(k.clone().into_bytes()), Some(b"x".to_vec())))
        .collect();
    c.produce(&input, &records);
    let key = keys
        .iter()
        .find(|k| partition_for_key(k.as_bytes(), 3) == 0)
        .unwrap()
        .clone();
    let address = |w: &Worker| format!("http://{}", w.http);
    // The holder answers 200; the two others name it.
    let holder = |ws: &[Worker]| {
        ws.iter()
            .position(|w| w.get(&format!("/stores/counts/{key}")).map(|r| r.0) == Some(200))
    };
    wait_for("the key to be counted", Duration::from_secs(60), || {
        holder(&workers).is_some()
    });
    let owner = holder(&workers).unwrap();
    wait_for(
        "the others to name the holder",
        Duration::from_secs(30),
        || {
            (0..3)
                .filter(|&i| i != owner)
                .all(|i| named_owner(&workers[i], &key) == Some(address(&workers[owner])))
        },
    );
    workers[owner].kill();
    let mut rest: Vec<Worker> = workers
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != owner)
        .map(|(_, w)| w)
        .collect();
    wait_for("the key's task to move", Duration::from_secs(60), || {
        holder(&rest).is_some()
    });
    let successor = holder(&rest).unwrap();
    let other = 1 - successor;
    wait_for(
        "the other worker to name the successor",
        Duration::from_secs(30),
        || named_owner(&rest[other], &key) == Some(address(&rest[successor])),
    );
    for w in &mut rest {
        assert!(w.terminate().success());
    }
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}
