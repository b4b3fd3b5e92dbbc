//! Wire formats of Node's `@socket.io/redis-adapter` (classic, v8) and `@socket.io/redis-emitter`
//! (`docs/PROTOCOL.md` §3.1-3.6 and §3.8). Pure: bytes in, values out.
//!
//! * Channel names: [`Channels`] (`channels.rs`).
//! * Broadcasts are msgpack `[uid, {type, data, nsp}, {rooms, except, flags}]`:
//!   [`BroadcastMessage`] (`broadcast.rs`).
//! * Requests and responses are JSON, except BROADCAST (7) requests and BROADCAST_ACK (9)
//!   responses, which are msgpack maps because they may carry binary. Receivers tell them apart by
//!   the first byte (`{` means JSON), as Node does: [`Request`] (`request.rs`), [`Response`]
//!   (`response.rs`); both read their fields with `fields.rs`.
//! * Packet data is arbitrary JavaScript data with binary anywhere: [`JsValue`] (`value.rs`). The
//!   server keeps it in Socket.IO's placeholder form (JSON plus attachments), see
//!   [`JsValue::into_placeholder_json`] and [`JsValue::from_placeholder_json`].
//! * `@socket.io/redis-streams-adapter` 0.3 and its emitter, and the sharded adapter, speak
//!   `socket.io-adapter`'s cluster messages instead: in a Redis stream and on Pub/Sub (§4), or
//!   on SPUBLISH, JSON unless the data holds binary (§3.7): [`ClusterMessage`] (`cluster.rs`),
//!   whose bodies are the classic adapter's values.
//! * A connection-recovery session as the streams adapter keeps it in Redis (§4.3), and its
//!   stream entry ids as offsets: [`StoredSession`] (`session.rs`).
//! * msgpack as notepack.io 3 writes it, and as notepack 2.x wrote it, over the `rmp` crate
//!   (`msgpack.rs`); JavaScript's date strings (`date.rs`).
//!
//! The golden vectors in the tests (`testdata.rs`) were recorded from Node's redis-adapter 8.3.0
//! and redis-emitter 5.1.0: PUBLISH payloads of the capture `monitor-classic.txt`.

mod broadcast;
mod channels;
mod cluster;
mod date;
mod fields;
mod msgpack;
mod request;
mod response;
mod session;
#[cfg(test)]
mod testdata;
mod value;

pub use broadcast::{BroadcastFlags, BroadcastMessage, BroadcastOpts, Packet};
pub use channels::Channels;
pub use cluster::{ClusterBody, ClusterMessage, ClusterType, StreamEntry};
pub use date::js_date_string;
pub use request::{Request, RequestBody, RequestType};
pub use response::{RemoteLocation, RemoteSocket, Response};
pub use session::{parse_entry_id, session_key, StoredSession};
pub use value::JsValue;

/// Channel prefix of Node's adapter and emitter (their `key` option).
pub const DEFAULT_PREFIX: &str = "socket.io";

/// The uid `@socket.io/redis-emitter` puts in its broadcasts and server-side emits.
pub const EMITTER_UID: &str = "emitter";

/// Deepest nesting of arrays and maps accepted in any message. It equals serde_json's own
/// recursion limit (which bounds the JSON messages), so data the server accepted from a client
/// can cross Redis, while a hostile message cannot exhaust the stack.
pub const MAX_DEPTH: usize = 128;

/// What can go wrong decoding an adapter message. Every variant means the message is unusable:
/// the caller drops it (Node ignores such messages too), counts it and logs at debug level; a
/// malformed message from another node is never a reason to disconnect anything.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The msgpack input ends inside a value. Drop the message: it was cut or is not msgpack.
    #[error("msgpack input ends early")]
    Truncated,
    /// Bytes remain after the top-level msgpack value (notepack rejects this as well). Drop it.
    #[error("{0} trailing bytes after the msgpack value")]
    TrailingBytes(usize),
    /// A byte that starts no msgpack value (0xc1). Drop the message.
    #[error("invalid msgpack marker 0x{0:02x}")]
    InvalidMarker(u8),
    /// A msgpack map key that is neither a string nor an integer, which no JavaScript object has.
    /// Drop the message.
    #[error("msgpack map key is neither a string nor an integer")]
    InvalidMapKey,
    /// Arrays and maps nested deeper than [`MAX_DEPTH`]: most likely hostile. Drop the message.
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The payload starts with `{` but is not valid JSON. Drop the message.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A field the message cannot be used without is absent or null. Drop the message.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field holds the wrong kind of value. Drop the message.
    #[error("field `{field}` is not {expected}")]
    WrongType {
        /// The field, as named on the wire.
        field: &'static str,
        /// What it should have been.
        expected: &'static str,
    },
    /// A request or response type that is unknown or has no meaning on this channel (Node ignores
    /// these). Drop the message.
    #[error("unexpected message type {0}")]
    UnexpectedType(i64),
    /// A binary placeholder whose `num` is not an index into the attachments. The packet is
    /// malformed: treat it as a Socket.IO parse error, as socket.io-parser does ("illegal
    /// attachments").
    #[error("illegal attachment placeholder")]
    IllegalAttachment,
}

type Result<T> = std::result::Result<T, AdapterError>;

/// [`AdapterError::TooDeep`] when a container at `depth` would nest past [`MAX_DEPTH`].
fn check_depth(depth: usize) -> Result<()> {
    if depth >= MAX_DEPTH {
        Err(AdapterError::TooDeep)
    } else {
        Ok(())
    }
}
