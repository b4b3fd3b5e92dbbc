//! socketioxide peer for shardio-bench: the gateway protocol on namespace `/`.
//!
//! - `join` / `leave` with a room name or an array of names, optional ack -> `{"ok":true}`
//!   (or `{"error":".."}`);
//! - `publish` with `{"to": room | [rooms] (absent = whole namespace), "event", "data",
//!   "except": [rooms]}`, optional ack: every socket in those rooms except the sender receives
//!   `event` with `data`; ack `{"ok":true}`.
//!
//! Usage: `socketioxide-peer [--port 3000]`; it listens on 127.0.0.1 only. The worker thread
//! count is tokio's default (the cores this process may run on, so `taskset -c 0` gives one).

use std::convert::Infallible;

use serde_json::{json, Value};
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;

/// A room argument: a name or an array of names. Numbers are accepted as names, as Node does.
fn rooms_of(v: &Value) -> Result<Vec<String>, &'static str> {
    fn one(v: &Value) -> Result<String, &'static str> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err("room must be a string or a number"),
        }
    }
    match v {
        Value::Array(items) => items.iter().map(one).collect(),
        other => one(other).map(|r| vec![r]),
    }
}

fn reply(ack: AckSender, result: Result<(), &str>) {
    let body = match result {
        Ok(()) => json!({ "ok": true }),
        Err(e) => json!({ "error": e }),
    };
    // No ack requested is not an error: the client asked for fire-and-forget.
    let _ = ack.send(&body);
}

async fn publish(s: &SocketRef, msg: &Value) -> Result<(), &'static str> {
    let Value::Object(m) = msg else {
        return Err("publish expects an object");
    };
    let Some(Value::String(event)) = m.get("event") else {
        return Err("publish needs an event name");
    };
    let data = m.get("data").unwrap_or(&Value::Null);
    let mut op = s.broadcast();
    if let Some(to) = m.get("to").filter(|v| !v.is_null()) {
        op = op.to(rooms_of(to)?);
    }
    if let Some(except) = m.get("except").filter(|v| !v.is_null()) {
        op = op.except(rooms_of(except)?);
    }
    op.emit(event, data).await.map_err(|_| "broadcast failed")
}

fn on_connect(s: SocketRef) {
    s.on(
        "join",
        async |s: SocketRef, Data::<Value>(v), ack: AckSender| {
            reply(ack, rooms_of(&v).map(|r| s.join(r)));
        },
    );
    s.on(
        "leave",
        async |s: SocketRef, Data::<Value>(v), ack: AckSender| {
            reply(ack, rooms_of(&v).map(|r| s.leave(r)));
        },
    );
    s.on(
        "publish",
        async |s: SocketRef, Data::<Value>(v), ack: AckSender| {
            let result = publish(&s, &v).await;
            reply(ack, result);
        },
    );
}

fn port_from_args() -> Result<u16, String> {
    let mut args = std::env::args().skip(1);
    let mut port = 3000;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => {
                let v = args.next().ok_or("--port needs a value")?;
                port = v.parse().map_err(|e| format!("--port {v}: {e}"))?;
            }
            other => return Err(format!("unknown argument {other}; usage: --port N")),
        }
    }
    Ok(port)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = port_from_args()?;
    let (layer, io) = SocketIo::new_layer();
    // Handlers are registered in a connect middleware, not in the connect handler: socketioxide
    // sends the CONNECT reply first and then spawns the handler, so a client that emits right
    // after CONNECT (as the generator does with `join`) could find no handler yet and get no
    // ack. Middlewares run before the reply is sent.
    let register = async |s: SocketRef| {
        on_connect(s);
        Ok::<(), Infallible>(())
    };
    io.ns("/", { async || () }.with(register));
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
