//! Where a worker's stores live: RocksDB directories under the state
//! directory (locked so two workers cannot share it), or memory.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::TaskId;
use crate::error::Error;
use crate::stores::{Engine, MemoryEngine, RocksEngine, RocksShared, StoreError, StoreSpec};

/// Opens the engines of the stores of tasks.
#[derive(Clone)]
pub(crate) enum StoreProvider {
    /// Every store in memory (the test driver).
    Memory,
    /// RocksDB under `<dir>/<task>/<store>`, sharing one memory budget.
    Rocks {
        dir: PathBuf,
        shared: RocksShared,
        _lock: Arc<File>,
    },
}

impl StoreProvider {
    /// Locks `dir` (an application's state directory) for this process.
    pub(crate) fn rocks(dir: PathBuf, shared: RocksShared) -> Result<Self, Error> {
        let io = |source| Error::StateDir {
            dir: dir.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(io)?;
        let lock = File::create(dir.join(".lock")).map_err(io)?;
        lock.try_lock()
            .map_err(|_| Error::StateDirLocked { dir: dir.clone() })?;
        Ok(StoreProvider::Rocks {
            dir,
            shared,
            _lock: Arc::new(lock),
        })
    }

    /// The directory of a task's stores and checkpoint, if persistent.
    pub(crate) fn task_dir(&self, task: TaskId) -> Option<PathBuf> {
        match self {
            StoreProvider::Memory => None,
            StoreProvider::Rocks { dir, .. } => Some(dir.join(task.to_string())),
        }
    }

    fn store_dir(task_dir: &Path, spec: &StoreSpec) -> PathBuf {
        task_dir.join(&spec.name)
    }

    /// Opens a store's engine.
    pub(crate) fn open(
        &self,
        task: TaskId,
        spec: &StoreSpec,
    ) -> Result<Box<dyn Engine>, StoreError> {
        match (self, self.task_dir(task)) {
            (StoreProvider::Rocks { shared, .. }, Some(task_dir)) if !spec.in_memory => {
                Ok(Box::new(RocksEngine::open(
                    &Self::store_dir(&task_dir, spec),
                    shared,
                )?))
            }
            _ => Ok(Box::new(MemoryEngine::new())),
        }
    }

    /// Deletes a store's files and opens it empty.
    pub(crate) fn wipe(
        &self,
        task: TaskId,
        spec: &StoreSpec,
    ) -> Result<Box<dyn Engine>, StoreError> {
        if let (StoreProvider::Rocks { .. }, Some(task_dir)) = (self, self.task_dir(task)) {
            let dir = Self::store_dir(&task_dir, spec);
            if dir.exists() {
                fs::remove_dir_all(&dir).map_err(StoreError::Io)?;
            }
        }
        self.open(task, spec)
    }
}

impl StoreProvider {
    /// This worker's process id, part of its transactional ids: kept in
    /// the state directory (`process.id`), so that a worker restarted on
    /// the same directory fences its former self at once and aborts what
    /// it left open (Kafka Streams keeps its process id there too). Without
    /// a state directory, or when it cannot be read or written, a new one
    /// (and `false`: the id does not outlive the process).
    pub(crate) fn process_id(&self) -> (String, bool) {
        match self.stable_process_id() {
            Some(id) => (id, true),
            None => (random_id(), false),
        }
    }

    /// The process id kept in the state directory; `None` without one.
    fn stable_process_id(&self) -> Option<String> {
        let StoreProvider::Rocks { dir, .. } = self else {
            return None;
        };
        let path = dir.join("process.id");
        if let Ok(id) = fs::read_to_string(&path) {
            let id = id.trim();
            if !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()) {
                return Some(id.to_owned());
            }
        }
        let id = random_id();
        match fs::write(&path, &id) {
            Ok(()) => Some(id),
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot keep the process id: {e}");
                None
            }
        }
    }
}

/// 64 random bits in hex, from the standard library's randomly seeded
/// hasher, the clock and the process id.
fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}
