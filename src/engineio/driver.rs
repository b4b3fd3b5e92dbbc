//! The driver of one session: a single task that owns the session's heartbeat and lifetime,
//! whichever transport carries it. A WebSocket session's driver is its connection's task and
//! runs the WebSocket loop itself (one task per connection). A polling session's driver is a
//! task of its own that only keeps time: the HTTP requests move the packets, on their
//! connections' tasks. When an upgrade finishes, the driver takes the WebSocket over and goes
//! on with the same heartbeat.

use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use super::engine::Engine;
use super::heartbeat::Heartbeat;
use super::session::Session;
use super::websocket;
use super::ws_reader::WsTransport;
use crate::protocol::close::CloseReason;

/// How long a polling session closed by the server waits for a GET to carry its last packets
/// and the close packet, as Node's `closeTimeout` does (shorter: a polling client has a GET
/// out nearly all the time, and shutdown must not wait long).
const POLL_CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Runs a session until it closes, then removes it from the shard (running `on_close`).
/// `ws`: the session's WebSocket, or `None` for a polling session. A panic while the session
/// runs (in the app's message handler, say) is caught here: the session's connection is
/// dropped with the task's state, and the session closes and is removed like any other.
/// Everything runs in the session's span (`span.rs`), entered on each poll. `ws` is boxed:
/// each async fn it passes through keeps a place for it in the task for the session's life.
pub(super) async fn drive(engine: Rc<Engine>, session: Rc<Session>, ws: Option<Box<WsTransport>>) {
    // Built in place (no `let`): a future moved out of a local would keep that local's place
    // in this one too.
    session
        .run_in_span(async {
            if engine
                .shard
                .contain("session", run(&engine, &session, ws))
                .await
                .is_none()
            {
                session.close(CloseReason::TransportError);
            }
            engine.shard.finish(&session);
        })
        .await;
}

async fn run(engine: &Engine, session: &Rc<Session>, ws: Option<Box<WsTransport>>) {
    let mut heartbeat = Heartbeat::new(&engine.config, session);
    // What runs once (the polling phase, the close) is boxed, so that the future that lives
    // as long as the session (the WebSocket loop) stays small: idle sessions must be cheap.
    let ws = match ws {
        Some(ws) => Some(ws),
        None => Box::pin(poll_until_upgrade(session, &mut heartbeat)).await,
    };
    match ws {
        Some(ws) => {
            if let Some(ws) = websocket::run(session, ws, &mut heartbeat).await {
                Box::pin(websocket::close(ws, session)).await;
            }
        }
        None => Box::pin(linger(session)).await,
    }
}

/// The polling phase: pings and pong timeouts until the session closes (`None`) or an upgrade
/// hands over its WebSocket.
async fn poll_until_upgrade(
    session: &Session,
    heartbeat: &mut Heartbeat,
) -> Option<Box<WsTransport>> {
    loop {
        if session.take_pong() {
            heartbeat.on_pong(session);
        }
        if let Some(ws) = session.upgraded.borrow_mut().take() {
            return Some(ws);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn returns, from the fn item alone.
    fn size_of_future<A, B, C, F: std::future::Future>(_: impl FnOnce(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// The guard on what an idle WebSocket session's task keeps: this future is the task's
    /// state for the session's whole life (the heartbeat, the WebSocket loop and its waits on
    /// the socket, the wake-up and the ping timer, the frame reader, the panic boundary, the
    /// span scope). 1,032 bytes in the test profile (the release build's differs a little). It
    /// was 2,984 when `EngineShard::contain` was an `async fn`, which kept the session's whole
    /// future twice, and 1,648 with the WebSocket passed unboxed through three async fns.
    #[test]
    fn an_idle_websocket_session_s_task_stays_small() {
        let size = size_of_future(drive);
        assert!(size <= 1_100, "the driver's future grew to {size} bytes");
    }
}
