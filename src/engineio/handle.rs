//! Serving one Engine.IO request: the checks of Node's `verify()` and `handshake()` in their
//! order (docs/PROTOCOL.md §1.5), a new session on the transport asked for, a request for an
//! existing session on its transport, or the hand-off of a request to the shard that owns its
//! session.

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;

use futures_util::FutureExt as _;

use super::driver;
use super::engine::{Engine, Handled, Reply};
use super::polling;
use super::request::RequestInfo;
use super::session::{Session, Transport};
use super::sid::Sid;
use super::websocket;
use super::ws_echo;
use crate::bus::{Handoff, Refused, ShardMsg};
use crate::net::Stream;
use crate::protocol::close::CloseReason;
use crate::protocol::engineio::HandshakeError;
use crate::protocol::http::{Refusal, RequestHead};

/// The transport a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requested {
    Polling,
    WebSocket,
}

impl Engine {
    /// Serves one Engine.IO request whose head has been read (`leftover`: bytes read past it).
    /// Follows the order of checks of Node's `verify()` and `handshake()` (docs/PROTOCOL.md §1.5); a request
    /// for a session another shard owns goes to that shard first, which then checks it.
    pub(crate) async fn handle(
        self: &Rc<Self>,
        stream: Stream,
        head: RequestHead,
        leftover: Vec<u8>,
        address: SocketAddr,
    ) -> Handled {
        if !self.origin_allowed(&head) {
            return self
                .refuse(stream, &head, leftover, Refusal::OriginNotAllowed)
                .await;
        }
        if self.app.is_none() {
            return ws_echo::serve(self, stream, head, leftover).await;
        }
        let upgrade = head.is_websocket_upgrade();
        if !upgrade && head.method == "OPTIONS" {
            if let Some(cors) = &self.config.cors {
                // The cors middleware answers every OPTIONS itself, before Engine.IO looks.
                let headers = cors.preflight_headers(
                    head.header("origin"),
                    head.header("access-control-request-headers"),
                );
                let reply = Reply::new(204, b"").headers(headers).cors_included();
                return self.reply(stream, &head, leftover, reply).await;
            }
        }
        let requested = match head.query_param("transport").as_deref() {
            Some("polling") => Requested::Polling,
            Some("websocket") => Requested::WebSocket,
            _ => {
                return self
                    .refuse(stream, &head, leftover, HandshakeError::UnknownTransport)
                    .await
            }
        };
        let Some(sid) = head.query_param("sid") else {
            return self
                .handshake(stream, head, leftover, address, requested)
                .await;
        };
        let sid = Sid::parse(&sid);
        let shard = &self.shard;
        if let Some(owner) = sid
            .map(|s| s.shard())
            .filter(|&s| s != shard.id && s < shard.count)
        {
            return self.hand_off(owner, stream, head, leftover, address).await;
        }
        let session = sid
            .and_then(|sid| shard.session(&sid))
            .filter(|s| s.endpoint == self.endpoint && s.takes_requests());
        let Some(session) = session else {
            return self
                .refuse(stream, &head, leftover, HandshakeError::UnknownSid)
                .await;
        };
        if upgrade {
            let Some(key) = websocket::websocket_key(&head) else {
                return self
                    .refuse(stream, &head, leftover, HandshakeError::BadRequest)
                    .await;
            };
            // One upgrade per session. A WebSocket that cannot carry it (during or after the
            // upgrade, or for the polling transport) is accepted and closed at once, as Node
            // does (`client.upgrading || client.upgraded`, `!handlesUpgrades`).
            if requested != Requested::WebSocket || session.transport.get() != Transport::Polling {
                websocket::accept_and_close(stream, &key).await;
            } else {
                let deflate = websocket::negotiate_deflate(self, &head);
                let upgrading =
                    websocket::upgrade(self, stream, (&key, deflate), session.clone(), leftover);
                self.contain(&session, upgrading).await;
            }
            return Handled::Done;
        }
        if requested != Requested::Polling || session.is_websocket() {
            // TRANSPORT_MISMATCH: e.g. polling on a session that upgraded to WebSocket.
            return self
                .refuse(stream, &head, leftover, HandshakeError::BadRequest)
                .await;
        }
        // Built in place: a long poll waits in this future for up to a ping interval.
        self.contain(
            &session,
            polling::serve(self, session.clone(), stream, head, leftover),
        )
        .await
        .unwrap_or(Handled::Done)
    }

    /// Serves a request of `session`. A panic while doing so (in the app's message handler,
    /// say) drops the request's connection and closes the session, which its driver then
    /// removes; `None` tells the caller. It runs in the session's span.
    fn contain<'a, T>(
        &'a self,
        session: &'a Session,
        serving: impl Future<Output = T> + 'a,
    ) -> impl Future<Output = Option<T>> + 'a {
        session
            .run_in_span(self.shard.contain("request", serving))
            .map(move |served| {
                if served.is_none() {
                    session.close(CloseReason::TransportError);
                }
                served
            })
    }

    /// Whether the request's `Origin` (if it has one) is on the allow-list (if there is one).
    fn origin_allowed(&self, head: &RequestHead) -> bool {
        match (&self.config.allowed_origins, head.header("origin")) {
            (Some(allowed), Some(origin)) => allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)),
            _ => true,
        }
    }

    /// A request without a sid: a new session, if `handshake()` agrees.
    async fn handshake(
        self: &Rc<Self>,
        stream: Stream,
        head: RequestHead,
        leftover: Vec<u8>,
        address: SocketAddr,
        requested: Requested,
    ) -> Handled {
        let upgrade = head.is_websocket_upgrade();
        let refused = if head.method != "GET" {
            Some(HandshakeError::BadHandshakeMethod)
        } else if requested == Requested::WebSocket && !upgrade {
            Some(HandshakeError::BadRequest)
        } else if head.query_param("EIO").as_deref() != Some("4") {
            Some(HandshakeError::UnsupportedProtocolVersion)
        } else if requested == Requested::Polling && upgrade {
            Some(HandshakeError::BadRequest)
        } else {
            None
        };
        if let Some(err) = refused {
            return self.refuse(stream, &head, leftover, err).await;
        }
        let key = match requested {
            Requested::Polling => None,
            Requested::WebSocket => match websocket::websocket_key(&head) {
                Some(key) => Some(key),
                None => {
                    return self
                        .refuse(stream, &head, leftover, HandshakeError::BadRequest)
                        .await
                }
            },
        };
        // Last, once the request is known to be a valid handshake: the process's limits.
        if let Err(over) = self.shard.admit() {
            return self
                .refuse(stream, &head, leftover, Refusal::Overloaded(over))
                .await;
        }
        let Some(key) = key else {
            return polling::handshake(self, stream, head, leftover, address).await;
        };
        let deflate = websocket::negotiate_deflate(self, &head);
        let request = RequestInfo::from_head(head, address);
        let opened = websocket::open(self, stream, (&key, deflate), request, leftover).await;
        if let Some((session, ws)) = opened {
            // The driver gets a task of its own, sized for the session's life; this HTTP task,
            // whose future is sized for every kind of request, ends here and frees its memory.
            tokio::task::spawn_local(driver::drive(self.clone(), session, Some(Box::new(ws))));
        }
        Handled::Done
    }

    /// Sends the connection to the shard that owns the session, with what was read of it.
    async fn hand_off(
        &self,
        owner: usize,
        stream: Stream,
        head: RequestHead,
        leftover: Vec<u8>,
        address: SocketAddr,
    ) -> Handled {
        let stream = match stream.detach() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "could not detach a connection to hand it over");
                return Handled::Done;
            }
        };
        let handoff = Handoff {
            stream,
            head,
            leftover,
            address,
        };
        let msg = ShardMsg::Handoff(Box::new(handoff));
        let handoff = match self.bus.send(self.shard.id, owner, msg) {
            Ok(()) => {
                self.shard.metrics().handoff_sent();
                return Handled::Done;
            }
            Err(Refused(ShardMsg::Handoff(handoff))) => handoff,
            Err(Refused(_)) => return Handled::Done,
        };
        // The owner cannot take it now (inbox full, or stopping): the client may retry.
        let Handoff { stream, head, .. } = *handoff;
        let Ok(stream) = Stream::adopt(stream) else {
            return Handled::Done;
        };
        self.refuse(stream, &head, Vec::new(), Refusal::OwnerBusy)
            .await
    }
}
