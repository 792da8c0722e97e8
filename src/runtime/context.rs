//! Per-task state that every node of the task can reach while processing.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};

use super::dead_letter::{DeadLetters, ErrorPolicy};
use super::output::OutputBuffer;
use super::punctuation::Punctuations;
use super::TaskId;
use crate::observability::{TaskMetrics, TraceContext, Tracer};
use crate::processor::{Failure, Header, Headers};
use crate::security::{TopicSigning, KEY_ID, SIGNATURE};
use crate::stores::{GlobalTables, StoreState};
use crate::topology::{TopicRef, TopicTable};

/// A record as it arrives from Kafka (or from the test driver), not yet
/// decoded. Borrowed: nothing is copied until a source decodes it.
#[derive(Clone, Copy)]
pub(crate) struct RawRecord<'a> {
    pub(crate) topic: TopicRef,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp: i64,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) headers: RawHeaders<'a>,
}

/// Headers of a raw record, wherever they live. A Kafka message's are
/// parsed only when a source copies them: librdkafka parses them anew at
/// each call (allocating even for a record without headers).
#[derive(Clone, Copy)]
pub(crate) enum RawHeaders<'a> {
    Kafka(&'a BorrowedMessage<'a>),
    Owned(&'a Headers),
}

impl<'a> RawHeaders<'a> {
    /// Calls `f` with a lookup of these headers by name (the last of a
    /// name; a null value as `None`), the headers read once rather than
    /// once per name looked up.
    pub(crate) fn lookup<R>(self, f: impl FnOnce(&dyn Fn(&str) -> Option<&'a [u8]>) -> R) -> R {
        const MAX: usize = 16;
        let mut found: [(&str, Option<&[u8]>); MAX] = [("", None); MAX];
        let mut n = 0;
        let mut fits = true;
        let mut add = |key: &'a str, value: Option<&'a [u8]>| match n < MAX {
            true => {
                found[n] = (key, value);
                n += 1;
            }
            false => fits = false,
        };
        match self {
            RawHeaders::Owned(h) => h.0.iter().for_each(|h| add(&h.key, h.value.as_deref())),
            RawHeaders::Kafka(m) => {
                if let Some(h) = m.headers() {
                    h.iter().for_each(|h| add(h.key, h.value));
                }
            }
        }
        match fits {
            true => f(&|name| {
                found[..n]
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == name)
                    .and_then(|(_, v)| *v)
            }),
            false => f(&|name| self.last(name).flatten()),
        }
    }

    /// The value of the last header named `name` (`Some(None)`: present,
    /// null).
    pub(crate) fn last(self, name: &str) -> Option<Option<&'a [u8]>> {
        match self {
            RawHeaders::Owned(h) => {
                h.0.iter()
                    .rev()
                    .find(|h| h.key == name)
                    .map(|h| h.value.as_deref())
            }
            RawHeaders::Kafka(m) => m
                .headers()?
                .iter()
                .filter(|h| h.key == name)
                .last()
                .map(|h| h.value),
        }
    }
}

impl RawHeaders<'_> {
    /// The headers a source hands its record: all but a signature, which
    /// covers the topic it was read from and is checked there (what the
    /// record leads to is signed anew where its topic is signed).
    pub(crate) fn record_headers(self) -> Headers {
        self.owned(|key| key != KEY_ID && key != SIGNATURE)
    }

    /// The headers as read, all of them (dead letters keep everything).
    pub(crate) fn to_headers(self) -> Headers {
        self.owned(|_| true)
    }

    /// The headers whose key passes `keep`, copied.
    fn owned(self, keep: impl Fn(&str) -> bool) -> Headers {
        match self {
            RawHeaders::Owned(h) => Headers(h.iter().filter(|h| keep(&h.key)).cloned().collect()),
            RawHeaders::Kafka(m) => m.headers().map_or_else(Headers::new, |h| {
                Headers(
                    h.iter()
                        .filter(|h| keep(h.key))
                        .map(|h| Header {
                            key: h.key.to_owned(),
                            value: h.value.map(<[u8]>::to_vec),
                        })
                        .collect(),
                )
            }),
        }
    }
}

/// State shared by the nodes of one task.
pub(crate) struct TaskContext {
    pub(crate) id: TaskId,
    pub(crate) application_id: Arc<str>,
    pub(crate) topics: Arc<TopicTable>,
    /// Largest timestamp seen; `i64::MIN` before the first record.
    pub(crate) stream_time: i64,
    /// Wall-clock time in epoch milliseconds, set by the thread (or driver).
    pub(crate) wall_clock: i64,
    /// (topic, partition, offset) of the record being processed.
    pub(crate) source: Option<(TopicRef, i32, i64)>,
    pub(crate) output: OutputBuffer,
    pub(crate) commit_requested: bool,
    pub(crate) punctuations: Punctuations,
    /// Why processing the current record failed, if it did.
    pub(crate) failure: Option<Failure>,
    /// The task's stores.
    pub(crate) stores: Vec<Rc<RefCell<StoreState>>>,
    /// The worker's global tables.
    pub(crate) globals: GlobalTables,
    /// Stream time as seen by store writes (changelog timestamps).
    pub(crate) now: Rc<Cell<i64>>,
    /// Records dropped since the thread last looked, by reason.
    pub(crate) dropped: DroppedRecords,
    /// Makes each record a source reads a hop of its trace (tracing on).
    pub(crate) tracer: Option<Tracer>,
    /// The hop of the record being processed (tracing on): what sinks
    /// write as the outputs' `traceparent`, and what logs name.
    pub(crate) trace: Option<TraceContext>,
    /// The task's series (a worker's tasks; not the test driver's).
    pub(crate) metrics: Option<TaskMetrics>,
    /// Signing and verification of each topic (by ref), if any.
    pub(crate) signing: Arc<Vec<Option<TopicSigning>>>,
    /// Where records that fail go.
    pub(crate) dead_letters: DeadLetters,
    /// The task's calls to external services, as its call nodes report
    /// them.
    pub(crate) calls: CallLoad,
    /// Where the worker's calls run.
    pub(crate) call_runtime: Arc<crate::calls::CallRuntime>,
}

/// What a task's call nodes hold: records whose calls are not done, and
/// how many of the nodes take no more records until some are.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallLoad {
    /// Records taken in whose outputs are not yet emitted.
    pub(crate) pending: usize,
    /// Call nodes at their limit of pending records: while any is, the
    /// task processes no further input (its partitions fill and pause).
    pub(crate) full: u32,
}

/// Records operators dropped on purpose.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct DroppedRecords {
    /// Too late for their window (after window end + grace), per operator
    /// (node index).
    pub(crate) late: Vec<(usize, u64)>,
    /// Skipped for an invalid timestamp (policy `Skip`).
    pub(crate) invalid_timestamp: u64,
    /// Dead-lettered for a timestamp too far ahead of the wall clock.
    pub(crate) future_timestamp: u64,
    /// State entries an operator expired (retention passed in stream time),
    /// per operator (node index).
    pub(crate) expired: Vec<(usize, u64)>,
}

impl TaskContext {
    pub(crate) fn new(
        id: TaskId,
        application_id: Arc<str>,
        topics: Arc<TopicTable>,
        wall_clock: i64,
    ) -> Self {
        TaskContext {
            id,
            application_id,
            topics,
            stream_time: i64::MIN,
            wall_clock,
            source: None,
            output: OutputBuffer::default(),
            commit_requested: false,
            punctuations: Punctuations::default(),
            failure: None,
            stores: Vec::new(),
            globals: GlobalTables::default(),
            now: Rc::new(Cell::new(i64::MIN)),
            dropped: DroppedRecords::default(),
            tracer: None,
            trace: None,
            metrics: None,
            signing: Arc::default(),
            dead_letters: DeadLetters {
                topic: TopicRef(0),
                limit: 0,
                policy: ErrorPolicy::DeadLetter,
            },
            calls: CallLoad::default(),
            call_runtime: Arc::default(),
        }
    }

    pub(crate) fn advance_stream_time(&mut self, timestamp: i64) {
        self.stream_time = self.stream_time.max(timestamp);
        self.now.set(self.stream_time);
    }

    pub(crate) fn store(&self, name: &str) -> Option<&Rc<RefCell<StoreState>>> {
        self.stores.iter().find(|s| s.borrow().name() == name)
    }

    /// Counts a record into node `index`; whether to time it (node
    /// metrics on, one record in [`SAMPLE_EVERY`]).
    ///
    /// [`SAMPLE_EVERY`]: crate::observability::SAMPLE_EVERY
    #[inline]
    pub(crate) fn tick(&mut self, index: usize) -> bool {
        self.metrics.as_mut().is_some_and(|m| m.tick(index))
    }

    /// Marks the current record as failed; the first failure is kept.
    pub(crate) fn fail(&mut self, failure: Failure) {
        self.failure.get_or_insert(failure);
    }
}
