//! A namespace's handlers, registered once on [`crate::socketio::SocketIo`] and shared by every
//! shard: who may connect, and what runs on connect, on each event and on disconnect.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::broadcast::BroadcastOperator;
use super::cluster::ServerSideAck;
use super::socket::{AckSender, ConnectError, DisconnectReason, Socket};
use crate::engineio::RequestInfo;
use crate::protocol::socketio::Payload;

type AuthorizeFn = dyn Fn(&RequestInfo, &Value) -> Result<(), ConnectError> + Send + Sync;
type MiddlewareFn = dyn Fn(&Socket) -> Result<(), ConnectError> + Send + Sync;
type ConnectFn = dyn Fn(&Socket) + Send + Sync;
type EventFn = dyn Fn(&Socket, Payload, Option<AckSender>) + Send + Sync;
type AnyEventFn = dyn Fn(&Socket, &str, Payload, Option<AckSender>) + Send + Sync;
type DisconnectFn = dyn Fn(&Socket, DisconnectReason) + Send + Sync;
type ServerSideEmitFn =
    dyn Fn(&BroadcastOperator, &str, Payload, Option<ServerSideAck>) + Send + Sync;

/// The handlers of one namespace.
#[derive(Default, Clone)]
pub struct Namespace {
    pub(super) authorize: Option<Arc<AuthorizeFn>>,
    pub(super) middlewares: Vec<Arc<MiddlewareFn>>,
    pub(super) on_connect: Option<Arc<ConnectFn>>,
    pub(super) events: HashMap<String, Arc<EventFn>>,
    pub(super) on_any: Option<Arc<AnyEventFn>>,
    pub(super) on_disconnect: Option<Arc<DisconnectFn>>,
    pub(super) on_server_side_emit: Option<Arc<ServerSideEmitFn>>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut events: Vec<&String> = self.events.keys().collect();
        events.sort_unstable();
        f.debug_struct("Namespace")
            .field("authorize", &self.authorize.is_some())
            .field("on_connect", &self.on_connect.is_some())
            .field("events", &events)
            .field("on_any", &self.on_any.is_some())
            .field("on_disconnect", &self.on_disconnect.is_some())
            .field("on_server_side_emit", &self.on_server_side_emit.is_some())
            .finish()
    }
}

impl Namespace {
    /// Decides whether a client may connect, from its request and CONNECT auth payload
    /// (socket.io's middleware). An error is sent to the client as CONNECT_ERROR.
    pub fn authorize(
        &mut self,
        f: impl Fn(&RequestInfo, &Value) -> Result<(), ConnectError> + Send + Sync + 'static,
    ) -> &mut Self {
        self.authorize = Some(Arc::new(f));
        self
    }

    /// Runs for every new socket before it joins the namespace (socket.io's `io.use`), in the
    /// order added: it may keep data on the socket ([`Socket::set_data`],
    /// [`Socket::extensions`]) or refuse it; a refused client gets CONNECT_ERROR with the
    /// error and its socket joins nothing.
    pub fn middleware(
        &mut self,
        f: impl Fn(&Socket) -> Result<(), ConnectError> + Send + Sync + 'static,
    ) -> &mut Self {
        self.middlewares.push(Arc::new(f));
        self
    }

    /// Runs once a socket is connected (after the CONNECT reply went out).
    pub fn on_connect(&mut self, f: impl Fn(&Socket) + Send + Sync + 'static) -> &mut Self {
        self.on_connect = Some(Arc::new(f));
        self
    }

    /// Handles one event; `ack` is present when the client asked for an acknowledgement.
    pub fn on(
        &mut self,
        event: &str,
        f: impl Fn(&Socket, Payload, Option<AckSender>) + Send + Sync + 'static,
    ) -> &mut Self {
        self.events.insert(event.to_string(), Arc::new(f));
        self
    }

    /// Handles events that have no handler of their own.
    pub fn on_any(
        &mut self,
        f: impl Fn(&Socket, &str, Payload, Option<AckSender>) + Send + Sync + 'static,
    ) -> &mut Self {
        self.on_any = Some(Arc::new(f));
        self
    }

    /// Runs when a socket leaves the namespace, for whatever reason.
    pub fn on_disconnect(
        &mut self,
        f: impl Fn(&Socket, DisconnectReason) + Send + Sync + 'static,
    ) -> &mut Self {
        self.on_disconnect = Some(Arc::new(f));
        self
    }

    /// Handles the events other servers send with `serverSideEmit` (Node's `io.on(event)`),
    /// once per process, on one of its shards. The handler gets the namespace (as `io.of(nsp)`),
    /// the event, its arguments, and `ack` when the sender waits for one answer per server.
    /// Without a handler, a sender that waits gets `null` from this server at once.
    pub fn on_server_side_emit(
        &mut self,
        f: impl Fn(&BroadcastOperator, &str, Payload, Option<ServerSideAck>) + Send + Sync + 'static,
    ) -> &mut Self {
        self.on_server_side_emit = Some(Arc::new(f));
        self
    }
}
