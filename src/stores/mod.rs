//! State stores: key-value, window and session stores over a byte engine
//! (RocksDB or in memory), with a write cache that dedupes updates per key
//! until commit, changelogging to Kafka, checkpoints and restore.
//!
//! Processors reach stores through their context
//! ([`ProcessorContext::key_value_store`](crate::processor::ProcessorContext::key_value_store)
//! and friends), giving the serdes to use; the handles are cheap to keep in
//! the processor.

mod checkpoint;
pub mod engine;
mod global;
mod kv;
mod session;
mod state;
mod window;

pub use checkpoint::Checkpoint;
pub use engine::{Engine, MemoryEngine, RocksConfig, RocksEngine, RocksShared, StoreError};
pub use global::GlobalStore;
pub(crate) use global::GlobalTables;
pub use kv::KeyValueStore;
pub use session::SessionStore;
pub(crate) use state::{CacheBudget, StoreOps, StoreState};
pub use window::WindowStore;

/// What kind of store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// Keys to values.
    KeyValue,
    /// (key, window start) to values, expired by retention.
    Window,
    /// (key, session window) to values, expired by retention.
    Session,
}

/// A store declared in a topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// Store name, unique in the topology.
    pub name: String,
    /// Its kind.
    pub kind: StoreKind,
    /// Whether writes go to the changelog topic `<application.id>-<name>-changelog`.
    pub logged: bool,
    /// Kept in memory instead of RocksDB (still changelogged if `logged`).
    pub in_memory: bool,
    /// For window and session stores: how long windows are kept, in
    /// milliseconds (Kafka Streams' default is one day).
    pub retention: i64,
    /// For window stores: lay keys out key first within time segments of
    /// half the retention, rather than time first, so that fetching one
    /// key's windows reads only them (joins); expiry is then per segment.
    pub key_first: bool,
    /// For key-first window stores: values written with
    /// [`WindowStore::put_duplicate`] are kept beside the others of the
    /// same key and window start, told apart by a sequence at the end of
    /// the store key (Kafka Streams' `retainDuplicates`, used by
    /// stream-stream joins). A write then needs no read.
    pub duplicates: bool,
}

impl StoreSpec {
    /// A persistent, changelogged key-value store.
    pub fn key_value(name: &str) -> Self {
        StoreSpec {
            name: name.to_owned(),
            kind: StoreKind::KeyValue,
            logged: true,
            in_memory: false,
            retention: 0,
            key_first: false,
            duplicates: false,
        }
    }

    /// Lays a window store's keys out key first (see
    /// [`key_first`](Self::key_first)).
    pub fn with_key_first_layout(mut self) -> Self {
        self.key_first = true;
        self
    }

    /// Keeps duplicates (see [`duplicates`](Self::duplicates)); implies the
    /// key-first layout.
    pub fn with_duplicates(mut self) -> Self {
        self.key_first = true;
        self.duplicates = true;
        self
    }

    /// A persistent, changelogged window store keeping `retention` ms.
    pub fn window(name: &str, retention: i64) -> Self {
        StoreSpec {
            kind: StoreKind::Window,
            retention,
            ..Self::key_value(name)
        }
    }

    /// A persistent, changelogged session store keeping `retention` ms.
    pub fn session(name: &str, retention: i64) -> Self {
        StoreSpec {
            kind: StoreKind::Session,
            retention,
            ..Self::key_value(name)
        }
    }

    /// Turns changelogging off.
    pub fn without_logging(mut self) -> Self {
        self.logged = false;
        self
    }

    /// Keeps the store in memory.
    pub fn in_memory(mut self) -> Self {
        self.in_memory = true;
        self
    }

    /// The changelog topic's name (without the application id prefix).
    pub(crate) fn changelog_suffix(&self) -> String {
        format!("{}-changelog", self.name)
    }

    /// Topic configuration of the changelog: compacted for key-value
    /// stores; compacted and deleted after retention + 1 day for windows and
    /// sessions, as in Kafka Streams.
    pub fn changelog_config(&self) -> Vec<(&'static str, String)> {
        const DAY: i64 = 24 * 60 * 60 * 1000;
        match self.kind {
            StoreKind::KeyValue => vec![("cleanup.policy", "compact".into())],
            StoreKind::Window | StoreKind::Session => vec![
                ("cleanup.policy", "compact,delete".into()),
                ("retention.ms", (self.retention + DAY).to_string()),
            ],
        }
    }
}

/// Why a typed store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The engine failed.
    #[error("store {store}: {source}")]
    Store {
        /// The store.
        store: String,
        /// The engine's error.
        source: StoreError,
    },
    /// A stored value could not be encoded or decoded.
    #[error("store {store}: {source}")]
    Serde {
        /// The store.
        store: String,
        /// The serde's error.
        source: crate::serde::SerdeError,
    },
    /// No store of that name and kind is connected to this processor.
    #[error("no {kind:?} store named {store:?} is connected to this processor")]
    Unknown {
        /// The store asked for.
        store: String,
        /// The kind asked for.
        kind: StoreKind,
    },
    /// The topology declares no global table of that name.
    #[error("no global table named {store:?}")]
    UnknownGlobal {
        /// The store asked for.
        store: String,
    },
}

/// `state`'s engine error as a typed-store error naming the store.
pub(crate) fn store_error(
    state: &std::cell::RefCell<StoreState>,
    source: StoreError,
) -> StateError {
    StateError::Store {
        store: state.borrow().name().to_owned(),
        source,
    }
}

/// A serde error as a typed-store error naming `state`'s store.
pub(crate) fn serde_error(
    state: &std::cell::RefCell<StoreState>,
    source: crate::serde::SerdeError,
) -> StateError {
    StateError::Serde {
        store: state.borrow().name().to_owned(),
        source,
    }
}

/// Appends `key length (u32, big-endian) ‖ key` to `out`: no key's prefix
/// is a prefix of another's, so one key's entries form one range.
pub(crate) fn length_prefixed<K: 'static>(
    serde: &dyn crate::serde::Serde<K>,
    key: &K,
    out: &mut Vec<u8>,
) -> Result<(), crate::serde::SerdeError> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    serde.serialize(key, out)?;
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// `t` as 8 bytes whose byte order is the numeric order (big-endian with
/// the sign bit flipped): a key prefix that makes a store iterate in time
/// order. [`unsortable`] reads it back.
///
/// ```
/// use eddy::stores::{sortable, unsortable};
/// assert!(sortable(-1) < sortable(0) && sortable(0) < sortable(1));
/// assert_eq!(unsortable(&sortable(-42)), -42);
/// ```
pub fn sortable(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// The number [`sortable`] encoded in the first 8 bytes of `b`.
///
/// # Panics
///
/// If `b` is shorter than 8 bytes.
pub fn unsortable(b: &[u8]) -> i64 {
    (u64::from_be_bytes(b[..8].try_into().expect("8 bytes")) ^ (1 << 63)) as i64
}
