//! The Processor API: records, processors and the context they run in.
//!
//! A [`Processor`] receives typed [`Record`]s one at a time, synchronously,
//! on the stream thread that owns its task. Through its
//! [`ProcessorContext`] it forwards records to its children, asks for a
//! commit and schedules punctuations by stream time or by wall-clock time.

mod context;
mod failure;
pub(crate) mod json_field;
mod record;
mod timestamp;

pub use context::{ProcessorContext, RecordSource};
pub use failure::{BoxError, Failure, FailureKind};
pub use record::{Header, Headers, Record};
pub(crate) use timestamp::Extracted;
pub use timestamp::{InvalidTimestamp, TimestampExtractor};

use std::time::Duration;

/// What a punctuation's clock is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PunctuationType {
    /// Advances only as records advance the task's stream time (the largest
    /// timestamp seen). Aligned to 0: fires at the first record with a
    /// timestamp >= 0, then each time stream time reaches the next multiple
    /// of the interval (once, however many multiples it jumped over).
    StreamTime,
    /// Stream time, held back to what the applications declared upstream of
    /// the task's input topics ([`StreamsConfig::upstreams`]) have
    /// processed of their own inputs: while one of them catches up, a timer
    /// does not fire before the answers it will still write for earlier
    /// event times. Without upstreams (and in the test driver) the same as
    /// `StreamTime`. Aligned to 0 like it.
    ///
    /// [`StreamsConfig::upstreams`]: crate::kafka::StreamsConfig::upstreams
    Watermark,
    /// Advances with the system clock (a hand-driven clock in the test
    /// driver). First fires one interval after scheduling.
    WallClockTime,
}

/// Identifies a scheduled punctuation within its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PunctuationId(pub(crate) u64);

/// A record processor: the unit of custom logic in a topology.
///
/// One instance exists per task (input partition), created by the supplier
/// given to [`KStream::process`](crate::topology::KStream::process), so
/// fields of `self` are per-partition state.
///
/// ```
/// use eddy::processor::{InitError, Processor, ProcessorContext, PunctuationId, PunctuationType, Record};
/// use std::time::Duration;
///
/// /// Forwards each value's length, and a tick every 10 s of stream time.
/// struct Lengths;
/// impl Processor<String, String, String, usize> for Lengths {
///     fn init(&mut self, ctx: &mut ProcessorContext<'_, String, usize>) -> Result<(), InitError> {
///         ctx.schedule(Duration::from_secs(10), PunctuationType::StreamTime);
///         Ok(())
///     }
///     fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<'_, String, usize>) {
///         let len = r.value.len();
///         ctx.forward(r.with_value(len));
///     }
///     fn punctuate(&mut self, _: PunctuationId, ts: i64, ctx: &mut ProcessorContext<'_, String, usize>) {
///         ctx.forward(Record::new("tick".to_string(), 0, ts));
///     }
/// }
/// ```
pub trait Processor<KIn, VIn, KOut, VOut>: 'static {
    /// Called once when the task starts, before any record: where a
    /// processor opens its stores. An error stops the task from starting
    /// (and the worker, naming the node and the reason); `process` and
    /// `punctuate` are only called after `init` succeeded.
    fn init(&mut self, _ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<(), InitError> {
        Ok(())
    }
    /// Processes one record.
    fn process(&mut self, record: Record<KIn, VIn>, ctx: &mut ProcessorContext<'_, KOut, VOut>);
    /// Called when a punctuation scheduled by this processor fires;
    /// `timestamp` is the current stream time or wall-clock time.
    fn punctuate(
        &mut self,
        _id: PunctuationId,
        _timestamp: i64,
        _ctx: &mut ProcessorContext<'_, KOut, VOut>,
    ) {
    }
    /// Called once when the task closes (rebalance or shutdown).
    fn close(&mut self) {}
}

impl<KIn: 'static, VIn: 'static, KOut: 'static, VOut: 'static> Processor<KIn, VIn, KOut, VOut>
    for Box<dyn Processor<KIn, VIn, KOut, VOut>>
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<(), InitError> {
        (**self).init(ctx)
    }
    fn process(&mut self, record: Record<KIn, VIn>, ctx: &mut ProcessorContext<'_, KOut, VOut>) {
        (**self).process(record, ctx)
    }
    fn punctuate(
        &mut self,
        id: PunctuationId,
        timestamp: i64,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
    ) {
        (**self).punctuate(id, timestamp, ctx)
    }
    fn close(&mut self) {
        (**self).close()
    }
}

/// Why a processor could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A store it needs is not connected to it (or is of another kind).
    #[error(transparent)]
    Store(#[from] crate::stores::StateError),
    /// Any other reason.
    #[error("{0}")]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// What a processor's store field holds once `init` succeeded; `process`
/// and `punctuate` run only after it did.
pub(crate) const OPENED_IN_INIT: &str = "the store is opened in init, which succeeded";

/// Types that can flow through a topology as keys or values.
pub trait Data: Clone + 'static {}
impl<T: Clone + 'static> Data for T {}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
