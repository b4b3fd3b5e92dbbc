//! The server-driven heartbeat of one session (docs/PROTOCOL.md §1.6), whichever transport
//! carries it.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::config::EngineConfig;
use super::session::Session;
use crate::protocol::close::CloseReason;
use crate::protocol::engineio::PacketType;
use crate::protocol::frame::OutFrame;

/// The server-driven heartbeat of Engine.IO v4: a ping every `ping_interval`, a pong
/// expected within `ping_timeout`, the interval re-armed when the pong arrives.
pub(super) struct Heartbeat {
    sleep: Pin<Box<Sleep>>,
    awaiting_pong: bool,
    interval: Duration,
    timeout: Duration,
}

impl Heartbeat {
    /// The first ping is due `ping_interval` after the session opened.
    pub(super) fn new(config: &EngineConfig, session: &Session) -> Self {
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
            // The ping went out and nothing else is waiting: an idle session keeps no queue
            // slots until the next ping.
            session.out.borrow_mut().release_if_empty();
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
