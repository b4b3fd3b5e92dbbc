//! shardio: a Socket.IO-compatible real-time server.
pub mod protocol;
