//! Pure codecs: bytes in, values out. Nothing here knows of sockets or runtimes.

pub mod adapter;
pub mod cors;
pub mod engineio;
pub mod http;
pub mod socketio;
