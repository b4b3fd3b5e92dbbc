//! Socket.IO v5 on Engine.IO (docs/PROTOCOL.md §2): namespaces, the per-connection client,
//! CONNECT and auth, events, acks in both directions, binary attachments, rooms, broadcasts
//! and cluster-wide operations.
//!
//! Handlers are registered once on a [`SocketIo`] and shared by every shard; each runs on the
//! shard that owns the socket, so a handler may keep the [`Socket`] (an `Rc`) and use it later
//! from `tokio::task::spawn_local`.
//!
//! # Layout
//!
//! This file holds `NsShard`, the state of one namespace on one shard, which every other
//! file works on; the files import each other only downwards:
//!
//! - `app.rs`: [`SocketIo`], the application (builder, per-shard instance, bus dispatch);
//! - `inbox.rs`: what a namespace does with messages from other shards and the bridge;
//! - `client.rs`: the Socket.IO side of one connection (packets, CONNECT, connect deadline);
//! - `cluster.rs`: fetch sockets, all rooms, join / leave / disconnect everywhere,
//!   server-side emit; `broadcast.rs`: [`BroadcastOperator`] and the fan-out itself;
//! - `namespace.rs`: [`Namespace`], the handlers; `socket.rs`: [`Socket`];
//! - `link.rs`: the link to the other shards and the bridge; `room.rs`: `RoomIndex`;
//! - `interest.rs`: every join and leave, and the rooms gained and lost told to the bridge.

mod app;
mod broadcast;
mod client;
mod cluster;
mod inbox;
mod interest;
mod link;
mod namespace;
pub(crate) mod room;
mod socket;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

pub(crate) use app::SioShard;
pub use app::{SocketIo, SocketIoConfig};
pub use broadcast::{BroadcastAckError, BroadcastOperator};
pub use cluster::{Incomplete, ServerSideAck};
pub use namespace::Namespace;
pub use socket::{
    AckError, AckSender, ConnectError, DisconnectReason, EmitError, Extensions, Socket, WeakSocket,
};

pub use crate::bus::cluster::{BroadcastOpts, SocketInfo, SocketLocation};

use crate::bus::cluster::{ack_id, Origin};
use crate::engineio::{Session, Sid};
use broadcast::Collectors;
use cluster::Gatherings;
use interest::RoomReports;
use link::ClusterLink;
use room::RoomIndex;

/// One namespace on one shard: its handlers, the sockets connected here and their rooms, the
/// broadcasts and queries it started and still collects answers for.
pub(crate) struct NsShard {
    pub(crate) name: String,
    def: Arc<Namespace>,
    link: Rc<ClusterLink>,
    /// This server's `--node-name`, for the locations of its sockets.
    node: Rc<str>,
    sockets: RefCell<HashMap<Sid, Socket, rustc_hash::FxBuildHasher>>,
    rooms: RefCell<RoomIndex<Sid, Rc<Session>>>,
    next_ack: Cell<u64>,
    collectors: Collectors,
    gatherings: Gatherings,
    /// Rooms gained and lost, for the bridge's per-room subscriptions.
    reports: RoomReports,
}

impl NsShard {
    fn new(name: String, def: Arc<Namespace>, link: Rc<ClusterLink>, node: Rc<str>) -> Self {
        NsShard {
            reports: RoomReports::new(&link),
            name,
            def,
            link,
            node,
            sockets: RefCell::new(HashMap::default()),
            rooms: RefCell::new(RoomIndex::default()),
            next_ack: Cell::new(0),
            collectors: RefCell::new(HashMap::new()),
            gatherings: RefCell::new(HashMap::new()),
        }
    }

    fn shard(&self) -> usize {
        self.link.shard()
    }

    /// A server ack (or query) id, unique across the shards of this process (the layout is
    /// `bus::cluster::ack_id`'s).
    fn next_ack_id(&self) -> u64 {
        let n = self.next_ack.get();
        self.next_ack.set(n.wrapping_add(1));
        ack_id(n, Origin::Shard(self.shard()))
    }
}
