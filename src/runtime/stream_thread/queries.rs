//! Interactive queries served by the stream thread from its tasks' stores
//! between batches. Under exactly-once they read committed state alone
//! (the engines), never a write of a transaction that may still abort.

use super::ThreadState;
use crate::runtime::query::{Answer, QueryOp};

impl ThreadState {
    /// Answers pending interactive queries from this thread's tasks.
    pub(super) fn answer_queries(&mut self) {
        while let Ok(q) = self.queries.try_recv() {
            let mut answer = Answer::default();
            for task in self.tasks.values() {
                let Some(store) = task.ctx.store(&q.store) else {
                    continue;
                };
                answer.held.push(task.ctx.id.partition);
                let store = store.borrow();
                let committed = self.exactly_once;
                let found = match &q.op {
                    QueryOp::Get(k) => match committed {
                        true => store.committed_get(k),
                        false => store.get(k),
                    }
                    .map(|v| {
                        if let Some(v) = v {
                            answer.entries.push((k.clone(), v));
                        }
                    }),
                    QueryOp::Range(from, to) => {
                        let (from, to) = (from.as_deref(), to.as_deref());
                        let visit = &mut |k: &[u8], v: &[u8]| {
                            answer.entries.push((k.to_vec(), v.to_vec()));
                            true
                        };
                        match committed {
                            true => store.committed_range(from, to, visit),
                            false => store.range(from, to, visit),
                        }
                    }
                };
                if let Err(e) = found {
                    tracing::warn!(store = %q.store, "query failed: {e}");
                }
            }
            let _ = q.reply.send(answer);
        }
    }
}
