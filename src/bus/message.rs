//! The envelopes the bus carries: one enum per direction. Shard to shard and bridge to shard
//! share [`ShardMsg`] (the sender is in it); shard to bridge is [`ToBridge`].

use std::net::SocketAddr;

use super::cluster::{BridgeMsg, Origin, SioMsg};
use crate::net::Detached;
use crate::protocol::http::RequestHead;

/// One message to a shard's inbox.
#[derive(Debug)]
pub(crate) enum ShardMsg {
    /// An HTTP request for a session the receiving shard owns, with its connection.
    Handoff(Box<Handoff>),
    /// For the Socket.IO layer of endpoint `endpoint` on the receiving shard, from another
    /// shard or the bridge.
    SocketIo {
        from: Origin,
        endpoint: usize,
        msg: SioMsg,
    },
}

/// A connection handed to the shard that owns the session its request asks for, with the
/// request head and the bytes already read past it.
#[derive(Debug)]
pub(crate) struct Handoff {
    pub(crate) stream: Detached,
    pub(crate) head: RequestHead,
    pub(crate) leftover: Vec<u8>,
    pub(crate) address: SocketAddr,
}

/// One message from shard `from`'s Socket.IO layer to the Redis bridge.
#[derive(Debug)]
pub(crate) struct ToBridge {
    pub(crate) from: usize,
    pub(crate) msg: BridgeMsg,
}
