//! What a call operator does, as its user describes it: how a record
//! becomes a request, how an answer or a failure becomes an output, and the
//! limits it runs under.

use std::sync::Arc;

use super::breaker::BreakerConfig;
use super::caller::{CallLimits, CallRequest, FailReason};
use super::retry::RetryPolicy;
use super::tls::CallTls;
use crate::processor::BoxError;
use crate::serde::Serde;

/// In what order a call operator emits its outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallOrder {
    /// Records of one key are called one after the other and their outputs
    /// come in input order; other keys' calls run meanwhile, and their
    /// outputs come as their calls complete.
    #[default]
    PerKey,
    /// Calls run concurrently whatever their keys, and the outputs come in
    /// the order of the task's input (a slow call holds back the outputs of
    /// the records after it).
    PerPartition,
}

/// What records do while their endpoint's circuit breaker is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnOpen {
    /// They wait for the breaker to let calls through again, holding their
    /// place: once the operator holds its limit of records, the task takes
    /// no more input, its partitions pause, and lag grows instead of
    /// memory.
    #[default]
    Wait,
    /// They fail at once with the reason `circuit_open` (to the failure
    /// branch, or the dead-letter topic without one).
    Fail,
}

/// The limits and policies of a call operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSettings {
    /// Calls in flight per task (at least 1).
    pub concurrency: usize,
    /// Calls in flight per worker, over all its tasks (at least 1).
    pub worker_concurrency: usize,
    /// Records a task's operator holds, called or waiting to be (at least
    /// `concurrency`): beyond it the task takes no more input.
    pub max_pending: usize,
    /// The order of outputs.
    pub order: CallOrder,
    /// What records do while the breaker is open.
    pub on_open: OnOpen,
    /// Retries of failures worth another try.
    pub retry: RetryPolicy,
    /// Timeout per try and the largest answer body read.
    pub limits: CallLimits,
    /// When the breaker of an endpoint opens, and for how long.
    pub breaker: BreakerConfig,
    /// The header carrying each call's idempotency key.
    pub idempotency_header: String,
    /// TLS of `https://` calls (`None`: the system's certificate
    /// authorities, no client certificate).
    pub tls: Option<CallTls>,
}

impl Default for CallSettings {
    fn default() -> Self {
        CallSettings {
            concurrency: 64,
            worker_concurrency: 256,
            max_pending: 256,
            order: CallOrder::PerKey,
            on_open: OnOpen::Wait,
            retry: RetryPolicy::default(),
            limits: CallLimits::default(),
            breaker: BreakerConfig::default(),
            idempotency_header: "Idempotency-Key".into(),
            tls: None,
        }
    }
}

/// An answer with a success status (2xx), as the response mapping sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer<'a> {
    /// Its status.
    pub status: u16,
    /// Its body.
    pub body: &'a [u8],
}

/// A call that gave no usable answer, after its retries, as the failure
/// mapping sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// Why.
    pub reason: FailReason,
    /// What happened, in words.
    pub detail: String,
    /// The status of the last answer, if there was one.
    pub status: Option<u16>,
    /// The body of the last answer, if there was one.
    pub body: Option<Vec<u8>>,
}

pub(crate) type RequestFn<K, V> = dyn Fn(&K, &V) -> Result<CallRequest, BoxError> + Send + Sync;
pub(crate) type ResponseFn<K, V, VO> =
    dyn Fn(&K, &V, &Answer<'_>) -> Result<VO, BoxError> + Send + Sync;
pub(crate) type FailureFn<K, V, VO> =
    dyn Fn(&K, &V, &CallFailure) -> Result<VO, BoxError> + Send + Sync;
pub(crate) type KeyFn<K, V> = dyn Fn(&K, &V) -> String + Send + Sync;

/// A call operator: each record becomes an HTTP request, made on the async
/// runtime at the edge while the stream thread goes on with other records;
/// each answer becomes the record's output. See
/// [`KStream::call`](crate::topology::KStream::call).
///
/// The key and value serdes store the records whose calls are not done in
/// the operator's changelogged store, so that a crash, a rebalance or an
/// aborted transaction never loses a call: the next owner makes it again,
/// with the same idempotency key.
pub struct Call<K, V, VO> {
    pub(crate) request: Arc<RequestFn<K, V>>,
    pub(crate) response: Arc<ResponseFn<K, V, VO>>,
    pub(crate) on_failure: Option<Arc<FailureFn<K, V, VO>>>,
    pub(crate) idempotency_key: Option<Arc<KeyFn<K, V>>>,
    pub(crate) settings: CallSettings,
    pub(crate) key_serde: Arc<dyn Serde<K>>,
    pub(crate) value_serde: Arc<dyn Serde<V>>,
}

impl<K, V, VO> Clone for Call<K, V, VO> {
    fn clone(&self) -> Self {
        Call {
            request: self.request.clone(),
            response: self.response.clone(),
            on_failure: self.on_failure.clone(),
            idempotency_key: self.idempotency_key.clone(),
            settings: self.settings.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
        }
    }
}

impl<K, V, VO> Call<K, V, VO> {
    /// A call made by `request` for each record, whose success answers
    /// (2xx) `response` maps to the output. A record whose request cannot
    /// be made, whose call fails after its retries, or whose answer does
    /// not map goes to the dead-letter topic with the reason, unless
    /// [`on_failure`](Call::on_failure) maps the failure to an output.
    pub fn new<RQ, RS>(
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        request: RQ,
        response: RS,
    ) -> Self
    where
        RQ: Fn(&K, &V) -> Result<CallRequest, BoxError> + Send + Sync + 'static,
        RS: Fn(&K, &V, &Answer<'_>) -> Result<VO, BoxError> + Send + Sync + 'static,
    {
        Call {
            request: Arc::new(request),
            response: Arc::new(response),
            on_failure: None,
            idempotency_key: None,
            settings: CallSettings::default(),
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
        }
    }

    /// Maps a failed call (no success answer after the retries, an answer
    /// that does not map, an open breaker under [`OnOpen::Fail`]) to an
    /// output: the failure branch. An error sends the record to the
    /// dead-letter topic.
    pub fn on_failure<F>(mut self, f: F) -> Self
    where
        F: Fn(&K, &V, &CallFailure) -> Result<VO, BoxError> + Send + Sync + 'static,
    {
        self.on_failure = Some(Arc::new(f));
        self
    }

    /// The idempotency key of each record's call, sent in the
    /// [`idempotency_header`](CallSettings::idempotency_header) (for
    /// example the order id and the event type). Without it the key is the
    /// record's source position, `<application>-<topic>-<partition>-<offset>`
    /// (with `-<n>` for the n-th record of one input to reach the
    /// operator), the same each time the record is processed again.
    pub fn idempotency_key<F>(mut self, f: F) -> Self
    where
        F: Fn(&K, &V) -> String + Send + Sync + 'static,
    {
        self.idempotency_key = Some(Arc::new(f));
        self
    }

    /// Its limits and policies.
    pub fn settings(mut self, settings: CallSettings) -> Self {
        self.settings = settings;
        self
    }
}
