//! Why a record could not be processed: the kind of failure that dead
//! letters name, and the error that caused it.

use std::fmt;

use crate::serde::SerdeError;
use crate::stores::StateError;

/// An error of any type, boxed: what user code handed to the library
/// (folds, processor factories, saga emitters, [`ProcessorContext::fail`])
/// may fail with. Strings convert into it (`Err("too big".into())`).
///
/// [`ProcessorContext::fail`]: super::ProcessorContext::fail
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The kind of failure that sent a record to the dead-letter topic (its
/// `__streams.errors.exception` header, as [`FailureKind::as_str`] spells
/// it) or stopped the worker under the `fail` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The key or value did not decode with the source's serde.
    Deserialization,
    /// The record's timestamp is invalid or too far ahead of the wall clock.
    Timestamp,
    /// The value does not match the JSON Schema of its source.
    Schema,
    /// The record's signature is missing, made with a key its topic does
    /// not accept, or does not match.
    Signature,
    /// An expression of a topology file failed or exceeded its budget.
    Expression,
    /// A processor failed on it (the default of [`ProcessorContext::fail`]).
    ///
    /// [`ProcessorContext::fail`]: super::ProcessorContext::fail
    Processing,
    /// A call to an external service it needed failed (after its retries),
    /// its request could not be made, or its answer could not be mapped.
    Call,
    /// An output it produced could not be written: it did not serialize,
    /// its timestamp is beyond what the topic accepts, or the broker
    /// refused it.
    Production,
}

impl FailureKind {
    /// The name dead-letter headers and logs give it: `deserialization`,
    /// `timestamp`, `schema`, `signature`, `expression`, `processing`, `call`
    /// or `production`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Deserialization => "deserialization",
            FailureKind::Timestamp => "timestamp",
            FailureKind::Schema => "schema",
            FailureKind::Signature => "signature",
            FailureKind::Expression => "expression",
            FailureKind::Processing => "processing",
            FailureKind::Call => "call",
            FailureKind::Production => "production",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed record's kind of failure and its error.
///
/// Messages and boxed errors convert into a [`FailureKind::Processing`]
/// failure, so user code that fails a record (a fold, a saga emitter,
/// [`ProcessorContext::fail`]) may return `Err("reason".into())`; an error
/// of another type goes through [`Failure::processing`] or [`Failure::new`].
///
/// ```
/// use eddy::processor::{Failure, FailureKind};
///
/// let f = Failure::new(FailureKind::Schema, "missing field \"id\"");
/// assert_eq!(f.kind(), FailureKind::Schema);
/// assert_eq!(f.to_string(), "schema: missing field \"id\"");
///
/// let parse = "x".parse::<i64>().map_err(Failure::processing);
/// assert_eq!(parse.unwrap_err().kind(), FailureKind::Processing);
/// let f: Failure = "no such customer".into();
/// assert_eq!(f.error().to_string(), "no such customer");
/// ```
///
/// [`ProcessorContext::fail`]: super::ProcessorContext::fail
#[derive(Debug)]
pub struct Failure {
    kind: FailureKind,
    error: BoxError,
}

impl Failure {
    /// A failure of `kind` caused by `error` (any error, or a message).
    pub fn new(kind: FailureKind, error: impl Into<BoxError>) -> Self {
        Failure {
            kind,
            error: error.into(),
        }
    }

    /// A [`FailureKind::Processing`] failure.
    pub fn processing(error: impl Into<BoxError>) -> Self {
        Failure::new(FailureKind::Processing, error)
    }

    /// Its kind.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The error that caused it.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.error
    }

    /// Takes the error out.
    pub fn into_error(self) -> BoxError {
        self.error
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.error)
    }
}

impl From<BoxError> for Failure {
    fn from(error: BoxError) -> Self {
        Failure::processing(error)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::processing(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::processing(message)
    }
}

impl From<StateError> for Failure {
    fn from(e: StateError) -> Self {
        Failure::processing(e)
    }
}

impl From<SerdeError> for Failure {
    fn from(e: SerdeError) -> Self {
        Failure::processing(e)
    }
}
