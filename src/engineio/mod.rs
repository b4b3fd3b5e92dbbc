//! Engine.IO v4 sessions (docs/PROTOCOL.md §1): the handshake, the session table of one shard,
//! the per-session outbound queue and the transports. Usable on its own, without Socket.IO:
//! an [`EngineApp`] receives raw Engine.IO messages. Knows nothing of Socket.IO or Redis.
//!
//! # Layout
//!
//! - `config.rs`: [`EngineConfig`], the settings of one endpoint.
//! - `app.rs`: [`EngineApp`] and [`EngineAppFactory`], what sits on top.
//! - `session.rs`: [`Session`], state only (queue, close flag, transport state), and the
//!   [`Connection`] that handles its messages ([`CloseReason`] is `protocol::close`'s);
//!   `request.rs`: [`RequestInfo`]; `sid.rs`: [`Sid`]; `queue.rs`: the bounded outbound queue;
//!   `span.rs`: the session's log span, made when it first logs.
//! - `shard.rs`: [`EngineShard`], the sessions of one shard; `flusher.rs`: the shard's writer
//!   of WebSocket sessions; `admission.rs`: the process's limits on sessions, shared by the
//!   shards.
//! - `engine.rs`: one endpoint on one shard (opening sessions, answering HTTP);
//!   `handle.rs`: serving one request (checks, new session, existing session, hand-off).
//! - `driver.rs`: one task per session owns its lifetime; `heartbeat.rs`: pings and pongs.
//! - `polling.rs`: long polling; `websocket.rs`: the WebSocket loop and the upgrade probe;
//!   `ws_reader.rs`: the frame reader and its limits; `ws_echo.rs`: a plain WebSocket echo on
//!   the same framing (for WebSocket conformance suites); `rate.rs`: per-connection rate
//!   limits; `ws_fuzz.rs`: the reader driven without a connection, for fuzzing.
//!
//! A request for a session another shard owns is handed to that shard over the bus.

mod admission;
mod app;
mod config;
mod driver;
mod engine;
mod flusher;
mod handle;
mod heartbeat;
mod polling;
mod queue;
mod rate;
mod request;
mod session;
mod shard;
mod sid;
mod span;
mod websocket;
mod ws_echo;
pub(crate) mod ws_fuzz;
mod ws_reader;

pub use crate::protocol::close::{CloseReason, Limit};
pub use app::{EngineApp, EngineAppFactory};
pub use config::EngineConfig;
pub use request::RequestInfo;
pub use session::{Connection, Message, SendError, Session};
pub use shard::EngineShard;
pub use sid::{Sid, SidGenerator};

pub use crate::protocol::frame::{FrameKind, OutFrame};

pub(crate) use admission::Admission;
pub(crate) use engine::{Engine, Handled};
pub(crate) use rate::{RateLimit, RateState, Verdict};
pub(crate) use span::SpanOnLog;
