//! Pure codecs: bytes in, values out. Nothing here knows of sockets or runtimes; every decoder
//! is bounded against hostile input.

pub mod adapter;
pub mod close;
pub mod cors;
pub(crate) mod deflate;
pub mod engineio;
pub mod frame;
pub mod http;
pub mod socketio;
