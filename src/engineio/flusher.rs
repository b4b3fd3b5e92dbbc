//! The shard's writer of WebSocket sessions. A send to a session whose queue was empty marks it
//! dirty and lists it here, instead of waking the session's own task; this task writes the
//! listed sessions in chunks and yields between chunks. Reads (new publishes) are handled in
//! between, so a session not reached yet collects more frames and gets them in the same
//! `writev`: under load, one syscall carries many messages. A session whose socket is full is
//! handed back to its own task, which waits for the socket to drain.

use std::cell::RefCell;
use std::rc::Rc;

use tokio::sync::Notify;

/// Sessions written per turn before the flusher lets other tasks (reads) run.
const CHUNK: usize = 256;
/// Sessions brought into the cache together before they are written.
const TOUCH_AHEAD: usize = 16;

/// What the flusher needs of a session (implemented by `Session`; generic so that this file
/// does not depend on the session it serves).
pub(super) trait Flush {
    /// Bytes queued and not written yet; read first to bring the session into the cache.
    fn queued_bytes(&self) -> usize;
    /// Writes what the socket takes now.
    fn flush_now(&self);
}

/// The list of sessions with frames to write, and the task that writes them.
pub(super) struct Flusher<S> {
    dirty: RefCell<Vec<Rc<S>>>,
    wake: Notify,
}

impl<S> Default for Flusher<S> {
    fn default() -> Self {
        Flusher {
            dirty: RefCell::new(Vec::new()),
            wake: Notify::new(),
        }
    }
}

impl<S: Flush> Flusher<S> {
    /// Lists a session to be written; the caller marked it dirty, so it is listed once.
    pub(super) fn push(&self, session: Rc<S>) {
        let mut dirty = self.dirty.borrow_mut();
        dirty.push(session);
        if dirty.len() == 1 {
            self.wake.notify_one();
        }
    }

    /// Runs for the shard's life.
    pub(super) async fn run(self: Rc<Self>) {
        loop {
            let batch = std::mem::take(&mut *self.dirty.borrow_mut());
            if batch.is_empty() {
                self.wake.notified().await;
                continue;
            }
            for chunk in batch.chunks(CHUNK) {
                for group in chunk.chunks(TOUCH_AHEAD) {
                    // As a broadcast does: read every session of the group first, so that their
                    // cache misses overlap, then write them.
                    for session in group {
                        std::hint::black_box(session.queued_bytes());
                    }
                    for session in group {
                        session.flush_now();
                    }
                }
                tokio::task::yield_now().await;
            }
        }
    }
}
