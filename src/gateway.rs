//! The default app: what `shardio` does with no server code. Clients `join` and `leave` rooms
//! and `publish` events to rooms; every socket in those rooms, on every shard, receives the
//! event, except the publisher.
//!
//! Protocol (namespace `/` and every `--namespace`):
//! - `join` with a room name or an array of names, optional ack -> `{"ok":true}` or
//!   `{"error":"<reason>"}`;
//! - `leave`, the same shape;
//! - `publish` with `{"to": room | [rooms] (absent: the whole namespace), "event": "<name>",
//!   "data": <any JSON, binary allowed>, "except": [rooms]}`, optional ack -> `{"ok":true}`.

use serde_json::{json, Value};

use crate::config::Config;
use crate::engineio::EngineConfig;
use crate::protocol::socketio::Payload;
use crate::shard::Endpoint;
use crate::socketio::{AckSender, EmitError, Socket, SocketIo, SocketIoConfig};

/// The longest room name accepted, in bytes.
pub const MAX_ROOM_NAME: usize = 255;

/// Limits the gateway enforces on what clients ask.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Namespaces served besides `/`.
    pub namespaces: Vec<String>,
    /// Rooms one socket may be in, not counting the room of its own id.
    pub max_rooms_per_socket: usize,
}

impl GatewayConfig {
    /// The gateway settings a [`Config`] asks for.
    pub fn from_config(config: &Config) -> Self {
        GatewayConfig {
            namespaces: config.namespaces.clone(),
            max_rooms_per_socket: config.max_rooms_per_socket,
        }
    }
}

/// What `shardio` serves out of the box: the gateway app on `config.path`.
pub fn endpoints(config: &Config) -> Vec<Endpoint> {
    let io = gateway(
        SocketIoConfig::from_config(config),
        &GatewayConfig::from_config(config),
    );
    vec![Endpoint::socketio(
        config.path.clone(),
        EngineConfig::from_config(config),
        io,
    )]
}

/// The gateway as a Socket.IO app.
pub fn gateway(io_config: SocketIoConfig, config: &GatewayConfig) -> SocketIo {
    let mut io = SocketIo::new(io_config);
    let names = std::iter::once("/".to_string()).chain(config.namespaces.iter().cloned());
    for name in names {
        let max_rooms = config.max_rooms_per_socket;
        io.namespace(&name)
            .on("join", move |socket, data, ack| {
                reply(ack, join(socket, &data, max_rooms));
            })
            .on("leave", |socket, data, ack| {
                reply(ack, leave(socket, &data));
            })
            .on("publish", |socket, data, ack| {
                reply(ack, publish(socket, data));
            });
    }
    io
}

fn reply(ack: Option<AckSender>, result: Result<(), String>) {
    if let Some(ack) = ack {
        let answer = match result {
            Ok(()) => json!({"ok": true}),
            Err(reason) => json!({"error": reason}),
        };
        let _ = ack.send(answer);
    }
}

/// Reads a room or a list of rooms, checking every name.
fn room_list(v: &Value, what: &str) -> Result<Vec<String>, String> {
    let names = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                _ => Err(format!(
                    "{what} must be a room name or an array of room names"
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(format!(
                "{what} must be a room name or an array of room names"
            ))
        }
    };
    for name in &names {
        if name.is_empty() || name.len() > MAX_ROOM_NAME {
            return Err(format!(
                "room names must be 1 to {MAX_ROOM_NAME} bytes of UTF-8"
            ));
        }
    }
    Ok(names)
}

fn join(socket: &Socket, data: &Payload, max_rooms: usize) -> Result<(), String> {
    let rooms = room_list(data.first(), "join")?;
    let current = socket.rooms();
    let new = rooms
        .iter()
        .filter(|r| !current.contains(r))
        .collect::<std::collections::HashSet<_>>()
        .len();
    // The socket's own id room does not count against the limit.
    if current.len().saturating_sub(1) + new > max_rooms {
        return Err(format!("at most {max_rooms} rooms per socket"));
    }
    for room in &rooms {
        socket.join(room);
    }
    Ok(())
}

fn leave(socket: &Socket, data: &Payload) -> Result<(), String> {
    let rooms = room_list(data.first(), "leave")?;
    for room in &rooms {
        socket.leave(room);
    }
    Ok(())
}

fn publish(socket: &Socket, data: Payload) -> Result<(), String> {
    let Payload { mut args, bins } = data;
    let Some(Value::Object(mut req)) = (!args.is_empty()).then(|| args.swap_remove(0)) else {
        return Err("publish takes an object {to, event, data, except}".into());
    };
    let event = match req.get("event") {
        Some(Value::String(e)) if !e.is_empty() => e.clone(),
        _ => return Err("publish needs a non-empty string \"event\"".into()),
    };
    let to = match req.get("to") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => room_list(v, "to")?,
    };
    let except = match req.get("except") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => room_list(v, "except")?,
    };
    let body = req.remove("data").unwrap_or(Value::Null);
    socket
        .broadcast()
        .to_rooms(to)
        .except_rooms(except)
        .emit(
            &event,
            Payload {
                args: vec![body],
                bins,
            },
        )
        .map_err(|e| match e {
            EmitError::ReservedEvent => format!("\"{event}\" is a reserved event name"),
            other => other.to_string(),
        })
}
