//! The driver of one session: a single task that owns the session's heartbeat and lifetime,
//! whichever transport carries it. A WebSocket session's driver is its connection's task and
//! runs the WebSocket loop itself (one task per connection). A polling session's driver is a
//! task of its own that only keeps time: the HTTP requests move the packets, on their
//! connections' tasks. When an upgrade finishes, the driver takes the WebSocket over and goes
//! on with the same heartbeat.

use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::websocket::{self, WsTransport};
use super::{CloseReason, Engine, EngineConfig, OutFrame, Session};
use crate::protocol::engineio::PacketType;

/// How long a polling session closed by the server waits for a GET to carry its last packets
/// and the close packet, as Node's `closeTimeout` does (shorter: a polling client has a GET
/// out nearly all the time, and shutdown must not wait long).
const POLL_CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Runs a session until it closes, then removes it from the shard (running `on_close`).
/// `ws`: the session's WebSocket, or `None` for a polling session.
pub(super) async fn drive(engine: Rc<Engine>, session: Rc<Session>, ws: Option<WsTransport>) {
    let mut heartbeat = Heartbeat::new(&engine.config, &session);
    // What runs once (the polling phase, the close) is boxed, so that the future that lives
    // as long as the session (the WebSocket loop) stays small: idle sessions must be cheap.
    let ws = match ws {
        Some(ws) => Some(ws),
        None => Box::pin(poll_until_upgrade(&session, &mut heartbeat)).await,
    };
    match ws {
        Some(ws) => {
            if let Some(ws) = websocket::run(&session, ws, &mut heartbeat).await {
                Box::pin(websocket::close(ws, &session)).await;
            }
        }
        None => Box::pin(linger(&session)).await,
    }
    engine.ctx.engine.finish(&session);
}

/// The polling phase: pings and pong timeouts until the session closes (`None`) or an upgrade
/// hands over its WebSocket.
async fn poll_until_upgrade(session: &Session, heartbeat: &mut Heartbeat) -> Option<WsTransport> {
    loop {
        if session.take_pong() {
            heartbeat.on_pong(session);
        }
        if let Some(ws) = session.upgraded.borrow_mut().take() {
            return Some(*ws);
        }
        if !session.is_open() {
            return None;
        }
        tokio::select! {
            _ = session.events.notified() => {}
            _ = heartbeat.due() => heartbeat.fire(session),
        }
    }
}

/// A polling session the server closed keeps its queue until a GET has carried it and the
/// close packet, or the linger time passed. Other closes are final at once: a pending GET has
/// been woken and answers by itself.
async fn linger(session: &Session) {
    let reason = session.closing.get().unwrap_or(CloseReason::TransportClose);
    if !reason.flushes_queue() {
        return;
    }
    let deadline = Instant::now() + POLL_CLOSE_LINGER;
    while !session.poll.close_delivered.get() {
        if tokio::time::timeout_at(deadline, session.events.notified())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The server-driven heartbeat of Engine.IO v4 (§1.6): a ping every `ping_interval`, a pong
/// expected within `ping_timeout`, the interval re-armed when the pong arrives.
pub(super) struct Heartbeat {
    sleep: Pin<Box<Sleep>>,
    awaiting_pong: bool,
    interval: Duration,
    timeout: Duration,
}

impl Heartbeat {
    /// The first ping is due `ping_interval` after the session opened.
    fn new(config: &EngineConfig, session: &Session) -> Self {
        let mut heartbeat = Heartbeat {
            sleep: Box::pin(tokio::time::sleep_until(session.opened_at)),
            awaiting_pong: false,
            interval: config.ping_interval,
            timeout: config.ping_timeout,
        };
        heartbeat.schedule_ping(session, session.opened_at + config.ping_interval);
        heartbeat
    }

    /// Arms the next ping; a session that answers no ping is dead `ping_timeout` after it.
    fn schedule_ping(&mut self, session: &Session, at: Instant) {
        self.sleep.as_mut().reset(at);
        session.alive_until.set(at + self.timeout);
    }

    /// Completes when it is time to ping, or when the pong is late.
    pub(super) fn due(&mut self) -> Pin<&mut Sleep> {
        self.sleep.as_mut()
    }

    /// Node re-arms the interval from the moment the pong arrives.
    pub(super) fn on_pong(&mut self, session: &Session) {
        if self.awaiting_pong {
            self.awaiting_pong = false;
            self.schedule_ping(session, Instant::now() + self.interval);
        }
    }

    /// The timer fired: ping, or close the session if the last ping went unanswered.
    pub(super) fn fire(&mut self, session: &Session) {
        if self.awaiting_pong {
            session.close(CloseReason::PingTimeout);
        } else {
            self.awaiting_pong = true;
            let _ = session.send(&[ping_frame()]);
            // Counted from when the ping was due, not from a late timer: the deadline is the
            // one requests already check (`alive_until`).
            self.sleep.as_mut().reset(session.alive_until.get());
        }
    }
}

fn ping_frame() -> OutFrame {
    thread_local! {
        static PING: OutFrame = OutFrame::text(1, |b| b.push(PacketType::Ping.digit()));
    }
    PING.with(OutFrame::clone)
}
