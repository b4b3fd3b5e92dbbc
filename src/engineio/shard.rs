//! The Engine.IO state of one shard: its session table, its id generator, its counters and its
//! WebSocket flusher.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::Notify;

use super::admission::Admission;
use super::session::{Home, Session};
use super::sid::{Sid, SidGenerator};
use crate::connection::HttpLimits;
use crate::metrics::{ConnectionTask, Metrics, ShardMetrics};
use crate::protocol::close::CloseReason;
use crate::protocol::http::Overload;

/// The Engine.IO state of one shard: its sessions and its id generator.
pub struct EngineShard {
    /// This shard's index, `0..count`; also the shard byte of the ids it issues.
    pub id: usize,
    /// How many shards the server runs.
    pub count: usize,
    sessions: RefCell<HashMap<Sid, Rc<Session>>>,
    sids: RefCell<SidGenerator>,
    all_metrics: Arc<Metrics>,
    /// Signalled when the last session goes away.
    drained: Notify,
    /// What its sessions share: the WebSocket writer, the counters.
    pub(super) home: Rc<Home>,
    /// The process's limits on sessions, shared with the other shards.
    admission: Arc<Admission>,
    /// The bounds of HTTP requests.
    pub(crate) http: HttpLimits,
}

impl std::fmt::Debug for EngineShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineShard")
            .field("id", &self.id)
            .field("count", &self.count)
            .field("sessions", &self.session_count())
            .finish_non_exhaustive()
    }
}

impl EngineShard {
    /// The state of shard `id` of `count`.
    pub(crate) fn new(
        id: usize,
        count: usize,
        metrics: Arc<Metrics>,
        admission: Arc<Admission>,
        http: HttpLimits,
    ) -> Self {
        EngineShard {
            id,
            count,
            sessions: RefCell::new(HashMap::new()),
            sids: RefCell::new(SidGenerator::new(id)),
            home: Rc::new(Home::new(metrics.clone(), id)),
            all_metrics: metrics,
            drained: Notify::new(),
            admission,
            http,
        }
    }

    /// The shard's WebSocket writer; the shard runs it for its whole life.
    pub(crate) fn run_flusher(&self) -> impl std::future::Future<Output = ()> + 'static {
        self.home.flusher.clone().run()
    }

    /// Counts a task serving a connection of this shard while the guard lives.
    pub(crate) fn connection_task(&self) -> ConnectionTask {
        self.all_metrics.connection_task(self.id)
    }

    /// This shard's counters.
    pub fn metrics(&self) -> &ShardMetrics {
        &self.all_metrics.shards()[self.id]
    }

    /// A fresh id owned by this shard (sessions and Socket.IO sockets use the same kind).
    pub fn next_sid(&self) -> Sid {
        self.sids.borrow_mut().next_sid()
    }

    /// The session `sid`, if this shard holds it.
    pub fn session(&self, sid: &Sid) -> Option<Rc<Session>> {
        self.sessions.borrow().get(sid).cloned()
    }

    /// Sessions open on this shard.
    pub fn session_count(&self) -> usize {
        self.sessions.borrow().len()
    }

    /// Asks every session to close with `reason`.
    pub(crate) fn close_all(&self, reason: CloseReason) {
        let sessions: Vec<_> = self.sessions.borrow().values().cloned().collect();
        for s in sessions {
            s.close(reason);
        }
    }

    /// Waits until no session is left.
    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            if self.sessions.borrow().is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Takes a place for a new session within the process's limits; the session gives it
    /// back when [`EngineShard::finish`] removes it.
    pub(super) fn admit(&self) -> Result<(), Overload> {
        self.admission.admit()
    }

    /// Runs `work` (the serving of one connection or session); a panic in it is caught here,
    /// logged and counted, and `None` returned: what `work` owned (its connection) is dropped,
    /// the rest of the shard goes on. Unwinding has released every `RefCell` borrow `work`
    /// held, so the shard's state stays usable.
    ///
    /// Not an `async fn`: its future would keep `work` twice, as the argument and as the
    /// catching future it is moved into (an async fn's arguments and the locals it holds across
    /// an await get places of their own), and `work` is a session's whole life.
    pub(crate) fn contain<'a, F: Future + 'a>(
        &'a self,
        what: &'static str,
        work: F,
    ) -> impl Future<Output = Option<F::Output>> + 'a {
        AssertUnwindSafe(work)
            .catch_unwind()
            .map(move |out| match out {
                Ok(out) => Some(out),
                Err(panic) => {
                    self.panicked(what, &*panic);
                    None
                }
            })
    }

    /// [`EngineShard::contain`] for work that does not wait.
    pub(crate) fn contain_now<T>(&self, what: &'static str, work: impl FnOnce() -> T) -> Option<T> {
        match std::panic::catch_unwind(AssertUnwindSafe(work)) {
            Ok(out) => Some(out),
            Err(panic) => {
                self.panicked(what, &*panic);
                None
            }
        }
    }

    fn panicked(&self, what: &'static str, panic: &(dyn Any + Send)) {
        self.metrics().panicked();
        let message = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(not a string)");
        tracing::error!(
            shard = self.id,
            what,
            panic = message,
            "panic caught: closed what it served, the shard goes on"
        );
    }

    pub(super) fn insert(&self, session: Rc<Session>) {
        let transport = session.transport.get().kind();
        self.sessions.borrow_mut().insert(session.sid(), session);
        self.metrics().session_opened(transport);
    }

    /// Removes a closed session, runs its connection's `on_close` and breaks the
    /// session <-> connection cycle.
    pub(super) fn finish(&self, session: &Rc<Session>) {
        session.in_span(|| self.remove(session));
    }

    fn remove(&self, session: &Rc<Session>) {
        let reason = session.closing.get().unwrap_or(CloseReason::TransportClose);
        session.closing.set(Some(reason));
        tracing::debug!(
            reason = reason.as_str(),
            transport = session.transport.get().name(),
            "session closed"
        );
        let conn = session.conn.borrow_mut().take();
        if let Some(conn) = conn {
            // The app's close handler may panic too: the session is removed all the same.
            self.contain_now("close handler", || conn.on_close(session, reason));
        }
        session.out.borrow_mut().clear();
        session.upgraded.borrow_mut().take();
        // The flusher's handle on the socket: a session ended by a caught panic still has it.
        session.ws.borrow_mut().take();
        let mut sessions = self.sessions.borrow_mut();
        if sessions.remove(&session.sid()).is_some() {
            let transport = session.transport.get().kind();
            self.metrics().session_closed(transport, reason);
            self.admission.release();
        }
        if sessions.is_empty() {
            self.drained.notify_waiters();
        }
    }
}
