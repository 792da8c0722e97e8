//! A worker's background thread (the upstream watch, the members topic,
//! the standbys): it runs until asked to stop, and is stopped and joined
//! when closed or dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::Error;

pub(crate) struct Background {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Runs `body` on a thread named `name` (`what` names it in an error);
    /// `body` returns once the flag it is given is set.
    pub(crate) fn spawn(
        name: &str,
        what: &str,
        body: impl FnOnce(&AtomicBool) + Send + 'static,
    ) -> Result<Self, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&flag))
            .map_err(|source| Error::Spawn {
                what: what.into(),
                source,
            })?;
        Ok(Background {
            stop,
            thread: Some(thread),
        })
    }

    /// Asks the thread to stop and waits for it.
    pub(crate) fn close(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.close();
    }
}
