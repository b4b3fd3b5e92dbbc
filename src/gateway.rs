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
//!
//! Policy ([`GatewayConfig`]): with a JWT verifier, a client connects only with a valid token
//! in its CONNECT `auth.token`; it joins room `user:<sub>` at once, may join only the rooms its
//! `rooms` claim patterns allow and publish only to those of its `publish` claim (the whole
//! namespace only with the pattern `*`). `client_publish: false` leaves publishing to the
//! backend API. Without a verifier anyone may join and publish anywhere.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::auth::{AuthError, Grants, Verifier};
use crate::config::Config;
use crate::engineio::EngineConfig;
use crate::protocol::socketio::Payload;
use crate::shard::Endpoint;
use crate::socketio::{AckSender, ConnectError, EmitError, Socket, SocketIo, SocketIoConfig};

/// The longest room name accepted, in bytes.
pub const MAX_ROOM_NAME: usize = 255;

/// What the gateway allows, and limits on what clients ask.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Namespaces served besides `/`.
    pub namespaces: Vec<String>,
    /// Rooms one socket may be in, not counting the room of its own id (nor its user room).
    pub max_rooms_per_socket: usize,
    /// Verifies the CONNECT token; `None`: the gateway is open.
    pub verifier: Option<Arc<Verifier>>,
    /// Whether clients may publish at all.
    pub client_publish: bool,
    /// Close a connection when its token expires.
    pub expire_connections: bool,
}

impl GatewayConfig {
    /// The gateway settings a [`Config`] asks for, with the verifier built from its keys.
    pub fn from_config(config: &Config, verifier: Option<Arc<Verifier>>) -> Self {
        GatewayConfig {
            namespaces: config.namespaces.clone(),
            max_rooms_per_socket: config.max_rooms_per_socket,
            verifier,
            client_publish: config.auth.client_publish,
            expire_connections: config.auth.jwt_expire_connections,
        }
    }
}

/// The demo chat page: plain HTML and JavaScript on the client bundle, no build step. Its
/// `{{path}}` marks stand for the Socket.IO endpoint's path.
const DEMO_PAGE: &str = include_str!("demo.html");

/// How long a join's acknowledgement waits for the rooms' subscriptions in Redis, at most
/// (they take one Redis round trip; only a lost confirmation would wait this long).
const JOIN_SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

/// The demo chat page for the gateway on `path`: it loads the client bundle from there and
/// connects there. Pick a name and a room, send; every page in the room sees it, whatever
/// shard or machine it is connected to (it speaks the gateway protocol: `join`, `publish`).
pub fn demo_page(path: &str) -> String {
    let mut escaped = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    DEMO_PAGE.replace("{{path}}", &escaped)
}

/// What `shardio` serves out of the box: the gateway app on `config.path`, its policy from
/// `config` and `verifier` (see [`Verifier::from_config`]), and the demo page at `/` when
/// [`Config::demo_enabled`].
pub fn endpoints(config: &Config, verifier: Option<Arc<Verifier>>) -> Vec<Endpoint> {
    if verifier.is_none() && !config.runtime.listen.ip().is_loopback() {
        tracing::warn!(
            address = %config.runtime.listen,
            "no JWT option given: anyone who reaches this address may join and publish to any room (see --jwt-secret, --jwt-public-key)"
        );
    }
    let io = gateway(
        SocketIoConfig::from_config(config),
        &GatewayConfig::from_config(config, verifier),
    );
    let mut endpoints = vec![Endpoint::socketio(
        config.path.clone(),
        EngineConfig::from_config(config),
        io,
    )];
    if config.demo_enabled() {
        endpoints.push(Endpoint::page("/", demo_page(&config.path)));
    }
    endpoints
}

/// The gateway as a Socket.IO app.
pub fn gateway(io_config: SocketIoConfig, config: &GatewayConfig) -> SocketIo {
    let mut io = SocketIo::new(io_config);
    let names = std::iter::once("/".to_string()).chain(config.namespaces.iter().cloned());
    for name in names {
        let max_rooms = config.max_rooms_per_socket;
        let client_publish = config.client_publish;
        let ns = io.namespace(&name);
        ns.on("join", move |socket, data, ack| {
            let result = join(socket, &data, max_rooms);
            acknowledge_join(socket, ack, result);
        })
        .on("leave", |socket, data, ack| {
            reply(ack, leave(socket, &data));
        })
        .on("publish", move |socket, data, ack| {
            let result = if client_publish {
                publish(socket, data)
            } else {
                Err("publishing is reserved to the backend API".into())
            };
            reply(ack, result);
        });
        if let Some(verifier) = &config.verifier {
            let verifier = verifier.clone();
            ns.middleware(move |socket| authenticate(&verifier, socket));
            let expire = config.expire_connections;
            ns.on_connect(move |socket| on_authenticated(socket, expire));
        }
    }
    io
}

/// Verifies the CONNECT token and keeps its grants on the socket.
fn authenticate(verifier: &Verifier, socket: &Socket) -> Result<(), ConnectError> {
    let token = socket.auth().get("token").and_then(Value::as_str);
    let verified = token
        .ok_or(AuthError::Missing)
        .and_then(|t| verifier.verify(t));
    let claims = verified.map_err(|e| {
        tracing::debug!(reason = e.code(), "CONNECT refused");
        socket.metrics().jwt_refused(e.code());
        ConnectError::new(format!("unauthorized: {e}")).with_data(json!({"reason": e.code()}))
    })?;
    if let Some(sub) = &claims.sub {
        socket.set_data(json!({"sub": sub}));
    }
    socket.extensions().insert(Grants::new(claims));
    Ok(())
}

/// A verified socket joins its user's room, and is closed when its token expires if asked.
fn on_authenticated(socket: &Socket, expire: bool) {
    let Some(grants) = socket.extensions().get::<Grants>() else {
        return;
    };
    if let Some(sub) = &grants.claims.sub {
        socket.join(&user_room(sub));
    }
    let Some(exp) = grants.claims.exp.filter(|_| expire) else {
        return;
    };
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(exp);
    let left = at.duration_since(SystemTime::now()).unwrap_or_default();
    let socket = socket.downgrade();
    tokio::task::spawn_local(async move {
        tokio::time::sleep(left).await;
        if let Some(socket) = socket.upgrade() {
            let expired = ConnectError::new(format!("unauthorized: {}", AuthError::Expired))
                .with_data(json!({"reason": AuthError::Expired.code()}));
            socket.disconnect_with(&expired);
        }
    });
}

/// The room every socket of user `sub` is in.
pub fn user_room(sub: &str) -> String {
    format!("user:{sub}")
}

/// Answers a join once the machine receives the rooms' broadcasts from the other machines
/// (`Socket::rooms_subscribed`; at once unless the bridge subscribes per room), so that a
/// client whose join was acknowledged gets every broadcast to its rooms published after the
/// acknowledgement, wherever it is published. Waits at most `JOIN_SUBSCRIBE_WAIT`.
fn acknowledge_join(socket: &Socket, ack: Option<AckSender>, result: Result<(), String>) {
    use futures_util::FutureExt as _;
    let Some(ack) = ack else { return };
    if result.is_err() {
        return reply(Some(ack), result);
    }
    let mut subscribed = Box::pin(socket.rooms_subscribed());
    if subscribed.as_mut().now_or_never().is_some() {
        return reply(Some(ack), result);
    }
    tokio::task::spawn_local(async move {
        let _ = tokio::time::timeout(JOIN_SUBSCRIBE_WAIT, subscribed).await;
        reply(Some(ack), result);
    });
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
    let grants = socket.extensions().get::<Grants>();
    if let Some(grants) = &grants {
        if let Some(room) = rooms.iter().find(|r| !grants.may_join(r)) {
            return Err(format!("not allowed to join {room:?}"));
        }
    }
    let current = socket.rooms();
    let new = rooms
        .iter()
        .filter(|r| !current.contains(r))
        .collect::<std::collections::HashSet<_>>()
        .len();
    // The socket's own id room, and its user room, do not count against the limit.
    let given =
        1 + usize::from(user_room_of(grants.as_deref()).is_some_and(|r| current.contains(&r)));
    if current.len().saturating_sub(given) + new > max_rooms {
        return Err(format!("at most {max_rooms} rooms per socket"));
    }
    for room in &rooms {
        socket.join(room);
    }
    Ok(())
}

/// The user room of a verified socket.
fn user_room_of(grants: Option<&Grants>) -> Option<String> {
    grants?.claims.sub.as_deref().map(user_room)
}

fn leave(socket: &Socket, data: &Payload) -> Result<(), String> {
    let rooms = room_list(data.first(), "leave")?;
    if let Some(own) = user_room_of(socket.extensions().get::<Grants>().as_deref()) {
        if rooms.contains(&own) {
            return Err(format!("a socket cannot leave its user room {own:?}"));
        }
    }
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
    if let Some(grants) = socket.extensions().get::<Grants>() {
        if to.is_empty() && !grants.may_publish_everywhere() {
            return Err("not allowed to publish to the whole namespace".into());
        }
        if let Some(room) = to.iter().find(|r| !grants.may_publish(r)) {
            return Err(format!("not allowed to publish to {room:?}"));
        }
    }
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
