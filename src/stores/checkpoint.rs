//! Checkpoint files: the changelog offset each store of a task holds.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The checkpoint of one task: store name → last changelog offset applied.
/// Written atomically (temporary file, fsync, rename).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Offsets by store.
    pub offsets: BTreeMap<String, i64>,
}

const VERSION: &str = "eddy-checkpoint 1";

impl Checkpoint {
    /// The checkpoint file of a task directory.
    pub fn path(task_dir: &Path) -> PathBuf {
        task_dir.join(".checkpoint")
    }

    /// Reads a checkpoint; `None` if missing or malformed (then stores are
    /// wiped and restored from the start).
    pub fn read(task_dir: &Path) -> Option<Checkpoint> {
        let text = fs::read_to_string(Self::path(task_dir)).ok()?;
        let mut lines = text.lines();
        if lines.next()? != VERSION {
            return None;
        }
        let mut offsets = BTreeMap::new();
        for line in lines {
            let (store, offset) = line.rsplit_once(' ')?;
            offsets.insert(store.to_owned(), offset.parse().ok()?);
        }
        Some(Checkpoint { offsets })
    }

    /// Writes the checkpoint atomically.
    pub fn write(&self, task_dir: &Path) -> std::io::Result<()> {
        fs::create_dir_all(task_dir)?;
        let tmp = task_dir.join(".checkpoint.tmp");
        let mut f = fs::File::create(&tmp)?;
        writeln!(f, "{VERSION}")?;
        for (store, offset) in &self.offsets {
            writeln!(f, "{store} {offset}")?;
        }
        f.sync_all()?;
        fs::rename(&tmp, Self::path(task_dir))?;
        if let Ok(dir) = fs::File::open(task_dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Deletes the checkpoint (the stores then count as not restored).
    pub fn remove(task_dir: &Path) {
        let _ = fs::remove_file(Self::path(task_dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let dir = std::env::temp_dir().join(format!("eddy-ckpt-{}", std::process::id()));
        let mut c = Checkpoint::default();
        c.offsets.insert("counts".into(), 41);
        c.offsets.insert("windows x".into(), 7);
        c.write(&dir).unwrap();
        assert_eq!(Checkpoint::read(&dir), Some(c));
        fs::write(
            Checkpoint::path(&dir),
            "eddy-checkpoint 1\ncounts notanumber\n",
        )
        .unwrap();
        assert_eq!(Checkpoint::read(&dir), None);
        Checkpoint::remove(&dir);
        assert_eq!(Checkpoint::read(&dir), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
