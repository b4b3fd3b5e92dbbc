//! One Engine.IO endpoint (a path) on one shard: its settings, its app, and what every
//! transport needs of it: opening sessions and answering HTTP requests (with the endpoint's
//! CORS headers, and the keep-alive rules).

use std::rc::Rc;

use crate::net::Stream;
use tokio::io::AsyncWriteExt;

use super::app::EngineApp;
use super::config::EngineConfig;
use super::request::RequestInfo;
use super::session::{Session, Transport};
use super::shard::EngineShard;
use super::ws_reader::FrameLimits;
use crate::bus::Bus;
use crate::connection;
use crate::protocol::close::CloseReason;
use crate::protocol::engineio::HandshakeError;
use crate::protocol::frame::OutFrame;
use crate::protocol::http::{BodyFraming, Refusal, RequestHead};

/// One Engine.IO endpoint (a path) on one shard.
pub(crate) struct Engine {
    pub(crate) config: EngineConfig,
    /// The app on top; `None` for a plain WebSocket echo endpoint (no Engine.IO).
    pub(super) app: Option<Rc<dyn EngineApp>>,
    /// The limits of every WebSocket of the endpoint, from `config`.
    pub(super) frame_limits: Rc<FrameLimits>,
    pub(crate) shard: Rc<EngineShard>,
    /// The endpoint's index in the server's list: sessions remember it, so that a request for
    /// a session must come to the endpoint that opened it.
    pub(super) endpoint: usize,
    /// Hands requests to the shard that owns their session.
    pub(super) bus: Bus,
}

/// What became of a connection after `Engine::handle`.
pub(crate) enum Handled {
    /// The response was written; the connection may carry another request, which starts with
    /// these bytes already read.
    KeepAlive(Stream, Vec<u8>),
    /// The connection was taken over (WebSocket, another shard) or closed.
    Done,
}

impl Engine {
    /// Endpoint `endpoint` of shard `shard`, serving `app` over Engine.IO, or (`None`) a plain
    /// WebSocket echo.
    pub(crate) fn new(
        config: EngineConfig,
        app: Option<Rc<dyn EngineApp>>,
        shard: Rc<EngineShard>,
        endpoint: usize,
        bus: Bus,
    ) -> Self {
        Engine {
            frame_limits: Rc::new(FrameLimits::new(&config)),
            config,
            app,
            shard,
            endpoint,
            bus,
        }
    }

    /// Registers a new session and lets the app attach its handler.
    pub(super) fn open_session(
        self: &Rc<Self>,
        request: RequestInfo,
        transport: Transport,
    ) -> Rc<Session> {
        let session = Rc::new_cyclic(|me| {
            Session::new(
                self.shard.next_sid(),
                self.endpoint,
                request,
                self.config.max_buffered_bytes,
                transport,
                self.config.ping_interval + self.config.ping_timeout,
                (me.clone(), self.shard.home.clone()),
            )
        });
        self.shard.insert(session.clone());
        session
    }

    /// Lets the app attach its handler to a session whose open packet is on its way. An app
    /// that panics here gets no session: it closes, and its driver removes it.
    pub(super) fn attach(&self, session: &Rc<Session>) {
        let Some(app) = &self.app else {
            return;
        };
        session.in_span(
            || match self.shard.contain_now("open handler", || app.open(session)) {
                Some(conn) => *session.conn.borrow_mut() = Some(conn),
                None => session.close(CloseReason::TransportError),
            },
        );
    }

    /// The open packet of a new session (docs/PROTOCOL.md §1.2): polling advertises the
    /// WebSocket upgrade.
    pub(super) fn open_packet(&self, session: &Session) -> OutFrame {
        let upgrades: &[&str] = match session.transport.get() {
            Transport::WebSocket => &[],
            Transport::Polling | Transport::Upgrading => &["websocket"],
        };
        let cfg = &self.config;
        let open = crate::protocol::engineio::open_packet(
            session.sid().as_str(),
            upgrades,
            cfg.ping_interval.as_millis() as u64,
            cfg.ping_timeout.as_millis() as u64,
            cfg.max_payload as u64,
        );
        OutFrame::text(open.len(), |b| b.extend_from_slice(open.as_bytes()))
    }

    /// The `Set-Cookie` value of a handshake response, when `cookie` is configured.
    pub(super) fn cookie(&self, session: &Session) -> Option<String> {
        let name = self.config.cookie.as_deref()?;
        Some(format!(
            "{name}={}; Path=/; HttpOnly; SameSite=Lax",
            session.sid()
        ))
    }

    /// Answers a request the endpoint refuses. Engine.IO's own refusals carry Node's JSON
    /// `{"code","message"}` (docs/PROTOCOL.md §1.5); a refused WebSocket upgrade gets Node's
    /// raw `abortUpgrade` response.
    pub(super) async fn refuse(
        &self,
        stream: Stream,
        head: &RequestHead,
        leftover: Vec<u8>,
        refusal: impl Into<Refusal>,
    ) -> Handled {
        let refusal = refusal.into();
        self.shard.metrics().refused(refusal);
        tracing::debug!(
            method = %head.method,
            query = %head.query,
            ?refusal,
            "request refused"
        );
        if head.is_websocket_upgrade() {
            abort_upgrade(stream, refusal).await;
            return Handled::Done;
        }
        let status = refusal.status();
        let json;
        let (reply, leftover) = match (refusal.engineio_error(), refusal) {
            (Some(err), _) => {
                json = err.json_body();
                let reply = Reply::new(status, json.as_bytes()).content_type("application/json");
                (reply, leftover)
            }
            // What follows on the connection cannot be trusted to start a request; a refused
            // handshake frees its connection at once.
            (None, Refusal::Body(_) | Refusal::OwnerBusy | Refusal::Overloaded(_)) => {
                (Reply::new(status, b"").closing(), Vec::new())
            }
            (None, _) => (Reply::new(status, b""), leftover),
        };
        self.reply(stream, head, leftover, reply).await
    }

    /// Writes an HTTP response with the endpoint's CORS headers. The connection is kept for
    /// another request when the client wants it and the request's body is not left unread.
    pub(super) async fn reply(
        &self,
        mut stream: Stream,
        head: &RequestHead,
        rest: Vec<u8>,
        reply: Reply<'_>,
    ) -> Handled {
        let body_unread =
            reply.body_unread && !matches!(head.body_framing(), Ok(BodyFraming::None));
        let keep = head.keep_alive() && !reply.close && !body_unread;
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(8);
        if let Some(content_type) = reply.content_type {
            headers.push(("Content-Type", content_type));
        }
        headers.extend(reply.headers.iter().map(|(k, v)| (*k, v.as_str())));
        let cors = match &self.config.cors {
            Some(cors) if !reply.cors_included => cors.response_headers(head.header("origin")),
            _ => Vec::new(),
        };
        headers.extend(cors.iter().map(|(k, v)| (*k, v.as_str())));
        if !keep {
            headers.push(("Connection", "close"));
        } else if head.http10 {
            headers.push(("Connection", "keep-alive"));
        }
        if !connection::write(&mut stream, reply.status, &headers, reply.body).await {
            return Handled::Done;
        }
        if keep {
            Handled::KeepAlive(stream, rest)
        } else {
            let _ = stream.shutdown().await;
            Handled::Done
        }
    }
}

/// An HTTP response of the Engine.IO endpoint, before the CORS and connection headers.
pub(super) struct Reply<'a> {
    status: u16,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: &'a [u8],
    /// The request's body (if it has one) was not read: the connection cannot be reused.
    body_unread: bool,
    /// Close the connection after this response whatever the client asked.
    close: bool,
    /// `headers` already hold the CORS headers (a preflight answer).
    cors_included: bool,
}

impl<'a> Reply<'a> {
    pub(super) fn new(status: u16, body: &'a [u8]) -> Self {
        Reply {
            status,
            content_type: None,
            headers: Vec::new(),
            body,
            body_unread: true,
            close: false,
            cors_included: false,
        }
    }

    pub(super) fn content_type(mut self, content_type: &'static str) -> Self {
        self.content_type = Some(content_type);
        self
    }

    pub(super) fn headers(mut self, headers: Vec<(&'static str, String)>) -> Self {
        self.headers.extend(headers);
        self
    }

    /// The request's body has been read completely.
    pub(super) fn body_read(mut self) -> Self {
        self.body_unread = false;
        self
    }

    pub(super) fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    pub(super) fn cors_included(mut self) -> Self {
        self.cors_included = true;
        self
    }
}

/// Node's `abortUpgrade`: a raw response, then the connection is closed.
async fn abort_upgrade(mut stream: Stream, refusal: Refusal) {
    let status = refusal.upgrade_status();
    let message = refusal.engineio_error().map_or_else(
        || crate::protocol::http::reason(status),
        HandshakeError::message,
    );
    let headers = [("Connection", "close"), ("Content-type", "text/html")];
    if connection::write(&mut stream, status, &headers, message.as_bytes()).await {
        let _ = stream.shutdown().await;
    }
}
