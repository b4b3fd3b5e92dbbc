//! A socket: one client connected to one namespace, and what the server can do with it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use thiserror::Error;
use tokio::sync::oneshot;

use super::{control_frame, Client, DisconnectReason, NsShard};
use crate::engineio::{CloseReason, OutFrame, RequestInfo, SendError, Session, Sid};
use crate::protocol::socketio::{self as codec, PacketType, Payload, RESERVED_EVENTS};

/// Why an emit did not go out.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum EmitError {
    /// The event name is reserved by Socket.IO (`connect`, `disconnect`, ...); pick another.
    #[error("reserved event name")]
    ReservedEvent,
    /// The socket is no longer connected; drop the message.
    #[error("socket disconnected")]
    Disconnected,
    /// The client reads too slowly; it is being disconnected.
    #[error("slow consumer")]
    SlowConsumer,
}

impl From<SendError> for EmitError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Closed => EmitError::Disconnected,
            SendError::SlowConsumer => EmitError::SlowConsumer,
        }
    }
}

/// Why an acknowledgement did not arrive.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    #[error("ack timed out")]
    Timeout,
    #[error("socket disconnected before acknowledging")]
    Disconnected,
    #[error("emit failed: {0}")]
    Emit(#[from] EmitError),
}

/// A client connected to a namespace. Cheap to clone; lives on the shard that owns it.
#[derive(Clone)]
pub struct Socket(Rc<SocketInner>);

struct SocketInner {
    id: Sid,
    ns: Rc<NsShard>,
    session: Rc<Session>,
    client: Weak<Client>,
    auth: Value,
    connected: Cell<bool>,
    next_ack: Cell<u64>,
    acks: RefCell<HashMap<u64, oneshot::Sender<Payload>>>,
}

impl Socket {
    pub(super) fn new(
        id: Sid,
        ns: Rc<NsShard>,
        session: Rc<Session>,
        client: Weak<Client>,
        auth: Value,
    ) -> Socket {
        Socket(Rc::new(SocketInner {
            id,
            ns,
            session,
            client,
            auth,
            connected: Cell::new(true),
            next_ack: Cell::new(0),
            acks: RefCell::new(HashMap::new()),
        }))
    }

    /// The socket id (20 characters, distinct from the Engine.IO session id).
    pub fn id(&self) -> Sid {
        self.0.id
    }

    /// The namespace name, e.g. `/`.
    pub fn nsp(&self) -> &str {
        &self.0.ns.name
    }

    /// The CONNECT auth payload (`{}` when the client sent none).
    pub fn auth(&self) -> &Value {
        &self.0.auth
    }

    /// The HTTP request that opened the connection.
    pub fn request(&self) -> &RequestInfo {
        self.0.session.request()
    }

    /// The Engine.IO session id of the connection.
    pub fn session_id(&self) -> Sid {
        self.0.session.sid()
    }

    pub fn connected(&self) -> bool {
        self.0.connected.get()
    }

    /// Sends `event` with `data` to this client.
    pub fn emit(&self, event: &str, data: impl Into<Payload>) -> Result<(), EmitError> {
        self.send_event(event, None, &data.into())
    }

    /// Sends `event` and waits up to `timeout` for the client's acknowledgement.
    pub fn emit_with_ack(
        &self,
        event: &str,
        data: impl Into<Payload>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Payload, AckError>> + 'static {
        let id = self.0.next_ack.get();
        self.0.next_ack.set(id.wrapping_add(1));
        let (tx, rx) = oneshot::channel();
        self.0.acks.borrow_mut().insert(id, tx);
        // Dropping the future (or its end) forgets the pending ack.
        let guard = PendingAck {
            socket: self.clone(),
            id,
        };
        let sent = self.send_event(event, Some(id), &data.into());
        async move {
            let _guard = guard;
            sent?;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(payload)) => Ok(payload),
                Ok(Err(_)) => Err(AckError::Disconnected),
                Err(_) => Err(AckError::Timeout),
            }
        }
    }

    /// Removes the socket from its namespace: the client gets DISCONNECT for it, and the
    /// connection stays open for its other namespaces.
    pub fn disconnect(&self) {
        if !self.connected() {
            return;
        }
        let _ = self
            .0
            .session
            .send(&[control_frame(PacketType::Disconnect, self.nsp(), None)]);
        self.forget_in_client();
        self.left(DisconnectReason::ServerNamespaceDisconnect);
    }

    /// Closes the whole connection (every namespace of this client).
    pub fn close(&self) {
        self.0.session.close(CloseReason::ForcedClose);
    }

    fn send_event(&self, event: &str, ack: Option<u64>, data: &Payload) -> Result<(), EmitError> {
        if RESERVED_EVENTS.contains(&event) {
            return Err(EmitError::ReservedEvent);
        }
        if !self.connected() {
            return Err(EmitError::Disconnected);
        }
        let frames = event_frames(self.nsp(), Some(event), ack, data);
        Ok(self.0.session.send(&frames)?)
    }

    pub(super) fn on_event(&self, data: Option<Value>, bins: Vec<Bytes>, id: Option<u64>) {
        let Some(Value::Array(mut args)) = data else {
            return;
        };
        // The decoder guarantees a first element that is a string or a number.
        let name = match args.remove(0) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let payload = Payload { args, bins };
        let ack = id.map(|id| AckSender {
            socket: self.clone(),
            id,
        });
        let def = &self.0.ns.def;
        if let Some(handler) = def.events.get(&name) {
            handler(self, payload, ack);
        } else if let Some(any) = &def.on_any {
            any(self, &name, payload, ack);
        }
    }

    pub(super) fn on_ack(&self, id: Option<u64>, data: Option<Value>, bins: Vec<Bytes>) {
        let Some(id) = id else {
            return;
        };
        let args = match data {
            Some(Value::Array(args)) => args,
            _ => Vec::new(),
        };
        let waiter = self.0.acks.borrow_mut().remove(&id);
        if let Some(tx) = waiter {
            let _ = tx.send(Payload { args, bins });
        }
    }

    fn forget_in_client(&self) {
        if let Some(client) = self.0.client.upgrade() {
            client.forget(self);
        }
    }

    /// Leaves the namespace: unregisters, fails pending acks, runs the disconnect handler.
    pub(super) fn left(&self, reason: DisconnectReason) {
        if !self.0.connected.replace(false) {
            return;
        }
        self.0.ns.sockets.borrow_mut().remove(&self.0.id);
        self.0.acks.borrow_mut().clear();
        if let Some(handler) = &self.0.ns.def.on_disconnect {
            handler(self, reason);
        }
    }
}

struct PendingAck {
    socket: Socket,
    id: u64,
}

impl Drop for PendingAck {
    fn drop(&mut self) {
        self.socket.0.acks.borrow_mut().remove(&self.id);
    }
}

/// Answers one acknowledgement the client asked for. Consumed by `send`, so an ack is answered
/// at most once.
pub struct AckSender {
    socket: Socket,
    id: u64,
}

impl AckSender {
    pub fn send(self, data: impl Into<Payload>) -> Result<(), EmitError> {
        if !self.socket.connected() {
            return Err(EmitError::Disconnected);
        }
        let frames = ack_frames(self.socket.nsp(), self.id, &data.into());
        Ok(self.socket.0.session.send(&frames)?)
    }
}

/// An EVENT (or BINARY_EVENT plus attachments) as Engine.IO frames.
pub(crate) fn event_frames(
    nsp: &str,
    event: Option<&str>,
    ack: Option<u64>,
    data: &Payload,
) -> Vec<OutFrame> {
    packet_frames(PacketType::Event, nsp, event, ack, data)
}

fn ack_frames(nsp: &str, id: u64, data: &Payload) -> Vec<OutFrame> {
    packet_frames(PacketType::Ack, nsp, None, Some(id), data)
}

fn packet_frames(
    ty: PacketType,
    nsp: &str,
    event: Option<&str>,
    id: Option<u64>,
    data: &Payload,
) -> Vec<OutFrame> {
    let mut frames = Vec::with_capacity(1 + data.bins.len());
    frames.push(OutFrame::text(64, |b| {
        b.push(b'4');
        codec::encode_header(ty, nsp, id, data.bins.len(), b);
        match event {
            Some(event) => codec::encode_event_args(event, &data.args, b),
            None => codec::encode_args(&data.args, b),
        }
    }));
    frames.extend(data.bins.iter().map(|bin| OutFrame::binary(bin)));
    frames
}
