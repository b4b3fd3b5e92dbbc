//! An async Socket.IO test client (raw frames over tokio-tungstenite), for tests with many
//! concurrent clients. It answers pings by itself.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::{Frame, WAIT};

pub(crate) struct AClient {
    /// The Socket.IO socket id of namespace `/`.
    pub sid: String,
    out: mpsc::UnboundedSender<Message>,
    frames: mpsc::UnboundedReceiver<Frame>,
}

impl AClient {
    /// Connects and joins namespace `nsp` (`/` or e.g. `/chat`).
    pub(crate) async fn connect(addr: SocketAddr, nsp: &str) -> AClient {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("websocket handshake");
        let (mut sink, mut stream) = ws.split();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (frame_tx, frames) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let pong = out_tx.clone();
        tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                let frame = match msg {
                    Ok(Message::Text(t)) if t.as_str() == "2" => {
                        let _ = pong.send(Message::text("3"));
                        continue;
                    }
                    Ok(Message::Text(t)) => Frame::Text(t.to_string()),
                    Ok(Message::Binary(b)) => Frame::Binary(b.to_vec()),
                    Ok(Message::Close(c)) => Frame::Closed(c.map(|c| u16::from(c.code))),
                    Ok(_) => continue,
                    Err(_) => Frame::Closed(None),
                };
                let closed = matches!(frame, Frame::Closed(_));
                if frame_tx.send(frame).is_err() || closed {
                    break;
                }
            }
        });
        let mut c = AClient {
            sid: String::new(),
            out: out_tx,
            frames,
        };
        let open = c.recv_text().await;
        assert!(open.starts_with('0'), "{open}");
        if nsp == "/" {
            c.send("40");
        } else {
            c.send(&format!("40{nsp},"));
        }
        let reply = c.recv_text().await;
        let json = reply
            .strip_prefix("40")
            .map(|r| r.strip_prefix(&format!("{nsp},")).unwrap_or(r))
            .expect("CONNECT reply");
        let v: serde_json::Value = serde_json::from_str(json).expect("CONNECT JSON");
        c.sid = v["sid"].as_str().expect("sid").to_string();
        c
    }

    pub(crate) fn send(&self, text: &str) {
        let _ = self.out.send(Message::text(text));
    }

    pub(crate) fn send_binary(&self, data: &[u8]) {
        let _ = self.out.send(Message::binary(data.to_vec()));
    }

    /// The next frame, failing the test after `WAIT`.
    pub(crate) async fn recv(&mut self) -> Frame {
        tokio::time::timeout(WAIT, self.frames.recv())
            .await
            .expect("a frame in time")
            .unwrap_or(Frame::Closed(None))
    }

    /// The next frame if one comes within `wait`.
    pub(crate) async fn try_recv(&mut self, wait: Duration) -> Option<Frame> {
        tokio::time::timeout(wait, self.frames.recv())
            .await
            .ok()
            .flatten()
    }

    pub(crate) async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Frame::Text(t) => t,
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// Sends `event` with a JSON argument and ack id `id`, and returns the ack's first argument.
    pub(crate) async fn call(
        &mut self,
        nsp_prefix: &str,
        id: u64,
        event: &str,
        arg: serde_json::Value,
    ) -> serde_json::Value {
        self.send(&format!(
            "42{nsp_prefix}{id}{}",
            serde_json::json!([event, arg])
        ));
        let want = format!("43{nsp_prefix}{id}");
        loop {
            let t = self.recv_text().await;
            if let Some(rest) = t.strip_prefix(&want) {
                let v: serde_json::Value = serde_json::from_str(rest).expect("ack JSON");
                return v[0].clone();
            }
        }
    }
}
