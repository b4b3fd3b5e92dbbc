//! A plain WebSocket echo endpoint, without Engine.IO: every message goes back as it came
//! (text as text, binary as binary), pings are answered, closes are echoed. It runs the framing
//! layer of the Engine.IO WebSocket transport on its own (the frame reader and its limits, the
//! bounded outbound queue, the close handshake), so that WebSocket conformance suites such as
//! Autobahn's fuzzing client can check it. There is no heartbeat: a connection lasts until
//! either side closes it or the server stops.

use std::cell::RefCell;

use crate::net::Stream;

use super::engine::{Engine, Handled};
use super::queue::OutQueue;
use super::websocket::{linger, negotiate_deflate, switching_protocols, websocket_key};
use super::ws_reader::{read_ready, FrameSink, WsMessage, WsTransport};
use crate::connection;
use crate::protocol::close::CloseReason;
use crate::protocol::engineio::HandshakeError;
use crate::protocol::frame::OutFrame;
use crate::protocol::http::RequestHead;

/// Serves one request to the echo endpoint: a WebSocket upgrade, or a refusal.
pub(super) async fn serve(
    engine: &Engine,
    mut stream: Stream,
    head: RequestHead,
    leftover: Vec<u8>,
) -> Handled {
    let key = head
        .is_websocket_upgrade()
        .then(|| websocket_key(&head))
        .flatten();
    let Some(key) = key else {
        return engine
            .refuse(stream, &head, leftover, HandshakeError::BadRequest)
            .await;
    };
    let deflate = negotiate_deflate(engine, &head);
    let response = switching_protocols(&key, None, deflate.as_ref());
    if !connection::write_raw(&mut stream, &response).await {
        return Handled::Done;
    }
    let mut ws = WsTransport::new(stream, leftover, engine.frame_limits.clone(), deflate);
    let out = RefCell::new(OutQueue::new(engine.config.max_buffered_bytes));
    // Messages of the threshold and more are echoed compressed where the client agreed.
    out.borrow_mut().set_deflate(deflate);
    let reason = echo(&mut ws, &out).await;
    engine.shard.metrics().disconnected(reason);
    if reason != CloseReason::SlowConsumer {
        if let Some(code) = reason.ws_close_code() {
            out.borrow_mut().push_close(OutFrame::close(code));
        }
        linger(ws.stream, &out).await;
    }
    Handled::Done
}

/// Echoes until the connection ends; returns why.
async fn echo(ws: &mut WsTransport, out: &RefCell<OutQueue>) -> CloseReason {
    let mut sink = Echo(out);
    let mut result = ws.reader.feed(&mut [], &mut sink).map(|()| false);
    loop {
        let more_waiting = match result {
            Ok(more) => more,
            Err(reason) => return reason,
        };
        let written = out.borrow_mut().write_to(&ws.stream);
        let flushed = match written {
            Ok(flushed) => flushed,
            Err(_) => return CloseReason::TransportError,
        };
        if more_waiting {
            // As the session loop does: let other connections run between full reads.
            tokio::task::yield_now().await;
        }
        tokio::select! {
            ready = ws.stream.readable() => {
                result = ready
                    .map_err(|_| CloseReason::TransportError)
                    .and_then(|()| read_ready(&ws.stream, &mut ws.reader, &mut sink));
            }
            ready = ws.stream.writable(), if !flushed => {
                if ready.is_err() {
                    return CloseReason::TransportError;
                }
                result = Ok(false);
            }
        }
    }
}

/// Queues every message back, within the endpoint's `max_buffered_bytes`.
struct Echo<'a>(&'a RefCell<OutQueue>);

impl FrameSink for Echo<'_> {
    fn is_open(&self) -> bool {
        true
    }

    fn message(&mut self, message: WsMessage<'_>) -> Result<(), CloseReason> {
        let frame = match message {
            WsMessage::Text(text) => {
                OutFrame::text(text.len(), |b| b.extend_from_slice(text.as_bytes()))
            }
            WsMessage::Binary(data) => OutFrame::binary(data),
        };
        if self.0.borrow_mut().push_all(&[frame]).is_some() {
            Ok(())
        } else {
            Err(CloseReason::SlowConsumer)
        }
    }

    fn control(&mut self, frame: OutFrame) -> Result<(), CloseReason> {
        if self.0.borrow_mut().push_control(frame) {
            Ok(())
        } else {
            Err(CloseReason::SlowConsumer)
        }
    }
}
