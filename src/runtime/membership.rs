//! Who runs which task: each worker publishes its process id, HTTP address,
//! active and standby tasks to the application's compacted members topic
//! (`<application_id>-members`, keyed by process id), and reads everyone's.
//!
//! Kafka Streams carries this in the classic protocol's subscription user
//! data, which its own assignor reads. librdkafka has no client-side
//! assignor under the consumer protocol (KIP-848), and the group
//! description it returns holds neither an HTTP address nor standbys: a
//! topic every worker writes and reads works the same under both protocols
//! and on the embedded cluster. A worker publishes when its tasks change
//! and every [`HEARTBEAT`]; a member whose last word is older than
//! [`EXPIRY`] counts as gone (a clean stop deletes its entry at once).
//!
//! The view answers where a key lives (the newest claim of its task wins,
//! so a dead owner's stale claim loses to its successor's) and which
//! workers take part in standby placement.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::background::Background;
use super::task_id::TaskId;
use crate::error::Error;

/// How often a worker repeats what it runs.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);
/// How old a member's last word may be before it counts as gone.
pub(crate) const EXPIRY: Duration = Duration::from_secs(4);

/// What one worker tells the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its process id (kept in its state directory).
    pub process: String,
    /// Where its HTTP endpoints answer (`http://host:port`), if anywhere.
    pub address: Option<String>,
    /// Tasks it runs or is restoring, as `<subtopology>_<partition>`.
    pub active: Vec<String>,
    /// Tasks it keeps standby copies of.
    pub standby: Vec<String>,
    /// When it said so (ms since the epoch, its clock).
    pub at: i64,
}

/// The members topic of an application.
pub(crate) fn members_topic(application_id: &str) -> String {
    format!("{application_id}-members")
}

/// The members of the group as last heard, shared by the worker's threads
/// and its HTTP handlers.
#[derive(Default)]
pub struct MembersView {
    members: RwLock<HashMap<String, Member>>,
}

impl MembersView {
    fn update(&self, process: String, member: Option<Member>) {
        let mut members = self.members.write().unwrap_or_else(|p| p.into_inner());
        match member {
            Some(m) => members.insert(process, m),
            None => members.remove(&process),
        };
    }

    /// Members heard from within [`EXPIRY`], by process id.
    pub fn live(&self) -> Vec<Member> {
        let now = now_millis();
        let members = self.members.read().unwrap_or_else(|p| p.into_inner());
        let mut live: Vec<Member> = members
            .values()
            .filter(|m| now - m.at <= EXPIRY.as_millis() as i64)
            .cloned()
            .collect();
        live.sort_by(|a, b| a.process.cmp(&b.process));
        live
    }

    /// The member that runs `task`: of those that claim it, the one that
    /// said so last.
    pub fn owner(&self, task: TaskId) -> Option<Member> {
        let name = task.to_string();
        let members = self.members.read().unwrap_or_else(|p| p.into_inner());
        members
            .values()
            .filter(|m| m.active.contains(&name))
            .max_by_key(|m| m.at)
            .cloned()
    }

    /// The members that keep a standby of `task`, live ones only.
    pub fn standbys(&self, task: TaskId) -> Vec<Member> {
        let name = task.to_string();
        self.live()
            .into_iter()
            .filter(|m| m.standby.contains(&name))
            .collect()
    }
}

/// The tasks this worker's threads run and keep standby, and the hand-over
/// of a standby's stores to a stream thread that is given the task.
#[derive(Default)]
pub(crate) struct LocalTasks {
    inner: Mutex<Local>,
    released: Condvar,
}

#[derive(Default)]
struct Local {
    active: BTreeSet<TaskId>,
    standby: BTreeSet<TaskId>,
    /// Standbys a stream thread waits to take over.
    release: BTreeSet<TaskId>,
    /// Bumped on every change, so that a change is published at once.
    version: u64,
}

/// How long a stream thread waits for the standby of a task it was given
/// to close its stores.
const HANDOVER: Duration = Duration::from_secs(60);

impl LocalTasks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Local> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A stream thread takes `task`, before opening its stores: a standby
    /// of it on this worker checkpoints and closes its stores first (the
    /// task then restores only what the standby had not read yet).
    pub(crate) fn claim(&self, task: TaskId) {
        let mut local = self.lock();
        local.active.insert(task);
        local.version += 1;
        if !local.standby.contains(&task) {
            return;
        }
        local.release.insert(task);
        let (local, waited) = self
            .released
            .wait_timeout_while(local, HANDOVER, |l| l.standby.contains(&task))
            .unwrap_or_else(|p| p.into_inner());
        if waited.timed_out() {
            drop(local);
            tracing::error!(task = %task, "the standby of a task did not hand it over within {HANDOVER:?}");
        }
    }

    /// A stream thread closed `task`.
    pub(crate) fn unclaim(&self, task: TaskId) {
        let mut local = self.lock();
        local.active.remove(&task);
        local.version += 1;
    }

    /// The standby thread may open `task` unless a stream thread holds it;
    /// it is then marked as held by the standby.
    pub(crate) fn open_standby(&self, task: TaskId) -> bool {
        let mut local = self.lock();
        if local.active.contains(&task) {
            return false;
        }
        local.standby.insert(task);
        local.version += 1;
        true
    }

    /// The standby thread closed `task`'s stores.
    pub(crate) fn close_standby(&self, task: TaskId) {
        let mut local = self.lock();
        local.standby.remove(&task);
        local.release.remove(&task);
        local.version += 1;
        drop(local);
        self.released.notify_all();
    }

    /// Standbys that stream threads wait to take over.
    pub(crate) fn releases(&self) -> Vec<TaskId> {
        self.lock().release.iter().copied().collect()
    }

    /// Active and standby tasks, and the version they are at.
    fn snapshot(&self) -> (Vec<TaskId>, Vec<TaskId>, u64) {
        let local = self.lock();
        let active = local.active.iter().copied().collect();
        let standby = local.standby.iter().copied().collect();
        (active, standby, local.version)
    }
}

/// Publishes this worker's tasks and reads everyone's, on a thread of its
/// own; stopping it (dropped) deletes this worker's entry.
pub(crate) struct Membership {
    _thread: Background,
}

/// What the membership thread needs.
pub(crate) struct MembershipSpec {
    pub(crate) topic: String,
    pub(crate) process: String,
    pub(crate) address: Option<String>,
    pub(crate) consumer: ClientConfig,
    pub(crate) producer: ClientConfig,
    pub(crate) local: Arc<LocalTasks>,
    pub(crate) view: Arc<MembersView>,
}

impl Membership {
    pub(crate) fn start(spec: MembershipSpec) -> Result<Membership, Error> {
        let consumer: BaseConsumer = spec.consumer.create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&spec.topic, 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        let producer: BaseProducer = spec.producer.create()?;
        let thread = Background::spawn("eddy-members", "the membership thread", move |stop| {
            run(spec, consumer, producer, stop)
        })?;
        Ok(Membership { _thread: thread })
    }
}

fn run(spec: MembershipSpec, consumer: BaseConsumer, producer: BaseProducer, stop: &AtomicBool) {
    let mut published: Option<(u64, Instant)> = None;
    while !stop.load(Ordering::Acquire) {
        let (active, standby, version) = spec.local.snapshot();
        let due = match published {
            None => true,
            Some((v, at)) => v != version || at.elapsed() >= HEARTBEAT,
        };
        if due {
            let member = Member {
                process: spec.process.clone(),
                address: spec.address.clone(),
                active: active.iter().map(ToString::to_string).collect(),
                standby: standby.iter().map(ToString::to_string).collect(),
                at: now_millis(),
            };
            let value = serde_json::to_vec(&member).expect("a member serializes");
            let record = BaseRecord::<str, [u8]>::to(&spec.topic)
                .partition(0)
                .key(&spec.process)
                .payload(&value);
            match producer.send(record) {
                Ok(()) => published = Some((version, Instant::now())),
                Err((e, _)) => tracing::warn!("publishing this worker's tasks: {e}"),
            }
        }
        producer.poll(Duration::ZERO);
        read(&consumer, &spec.view, Duration::from_millis(100));
    }
    let tombstone = BaseRecord::<str, [u8]>::to(&spec.topic)
        .partition(0)
        .key(&spec.process);
    if producer.send(tombstone).is_ok() {
        let _ = producer.flush(Duration::from_secs(5));
    }
}

/// Applies what the members topic holds, waiting at most `wait` for the
/// first record.
fn read(consumer: &BaseConsumer, view: &MembersView, wait: Duration) {
    let mut timeout = wait;
    while let Some(polled) = consumer.poll(timeout) {
        timeout = Duration::ZERO;
        let m = match polled {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("reading the members topic: {e}");
                continue;
            }
        };
        let Some(Ok(process)) = m.key().map(std::str::from_utf8) else {
            continue;
        };
        let member = m
            .payload()
            .and_then(|v| serde_json::from_slice::<Member>(v).ok());
        view.update(process.to_owned(), member);
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(process: &str, active: &[&str], at: i64) -> Member {
        Member {
            process: process.into(),
            address: Some(format!("http://{process}")),
            active: active.iter().map(|s| s.to_string()).collect(),
            standby: Vec::new(),
            at,
        }
    }

    #[test]
    fn the_newest_claim_of_a_task_wins() {
        let view = MembersView::default();
        let now = now_millis();
        view.update("a".into(), Some(member("a", &["0_1"], now - 3_000)));
        view.update("b".into(), Some(member("b", &["0_1", "0_2"], now)));
        let task = |p| TaskId {
            subtopology: 0,
            partition: p,
        };
        assert_eq!(view.owner(task(1)).unwrap().process, "b");
        assert_eq!(view.owner(task(2)).unwrap().process, "b");
        assert_eq!(view.owner(task(3)), None);
        // Stale members are not live; a tombstone removes one.
        view.update("c".into(), Some(member("c", &[], now - 60_000)));
        let live: Vec<_> = view.live().into_iter().map(|m| m.process).collect();
        assert_eq!(live, ["a", "b"]);
        view.update("b".into(), None);
        assert_eq!(view.owner(task(1)).unwrap().process, "a");
    }

    #[test]
    fn a_claim_waits_for_the_standby_to_hand_the_task_over() {
        let local = Arc::new(LocalTasks::default());
        let task = TaskId {
            subtopology: 0,
            partition: 0,
        };
        assert!(local.open_standby(task));
        let standby = {
            let local = local.clone();
            std::thread::spawn(move || {
                while local.releases().is_empty() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                local.close_standby(task);
            })
        };
        local.claim(task);
        standby.join().unwrap();
        let (active, standby, _) = local.snapshot();
        assert_eq!((active, standby), (vec![task], vec![]));
        // Held by a stream thread, it cannot be opened as a standby.
        assert!(!local.open_standby(task));
    }
}
