//! The application on top of Engine.IO: what opens a handler for each new session. Socket.IO
//! (`crate::socketio`) is one such application; a raw Engine.IO app (the conformance echo) is
//! another.

use std::rc::Rc;

use super::session::{Connection, Session};
use super::shard::EngineShard;

/// The application of one endpoint on one shard.
pub trait EngineApp {
    /// A session was opened; returns the handler of its messages.
    fn open(&self, session: &Rc<Session>) -> Rc<dyn Connection>;
}

/// Builds the per-shard app; shared by all shard threads.
pub trait EngineAppFactory: Send + Sync + 'static {
    /// The app instance of the shard `shard` (its sessions, ids and counters).
    fn for_shard(&self, shard: &Rc<EngineShard>) -> Rc<dyn EngineApp>;
}
