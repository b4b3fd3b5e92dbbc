//! The HTTP API for backends, under `/api/v1/` on every shard: emit to rooms, make sockets join,
//! leave or disconnect, and see who is in a room, cluster-wide (every shard, and every machine
//! through Redis). Requests carry `Authorization: Bearer <key>` (one of `--api-key`, compared in
//! constant time); without any key the API is off and its paths are 404s.
//!
//! A request runs on the shard that accepted it, through the same Socket.IO operations an
//! application uses (`BroadcastOperator`): an emit is encoded once, delivered by every shard
//! that holds a member, and published to Redis. Bodies are JSON of at most `--max-payload`
//! bytes; errors are JSON `{"error": .., "field": ..}` with the status `Refusal` maps them to.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /api/v1/emit` | `{"nsp","rooms","except","event","data"}`, or an array of them | 202 |
//! | `POST /api/v1/join`, `/leave` | `{"nsp","rooms","except","room"}` | 202 |
//! | `POST /api/v1/disconnect` | `{"nsp","rooms","except","close"}` | 202 |
//! | `GET /api/v1/rooms/<room>?nsp=` | | 200: count and members |
//! | `GET /api/v1/rooms?nsp=` | | 200: every room with a member |
//!
//! Answers carry `"complete": false` when Redis is configured but away: what this machine could
//! do is done, the other machines were not reached (or did not all answer in time).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::net::Stream;
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;

use crate::connection;
use crate::metrics::Metrics;
use crate::protocol::http::{percent_decode, BodyError, BodyFraming, Refusal, RequestHead};
use crate::protocol::socketio::{is_reserved_event, Payload};
use crate::socketio::{BroadcastOperator, Incomplete, SioShard, SocketInfo};

/// The path prefix of every route.
pub(crate) const PREFIX: &str = "/api/v1/";

/// The API on one shard, acting on one Socket.IO endpoint (the gateway's).
pub(crate) struct Api {
    keys: Arc<[String]>,
    sio: Rc<SioShard>,
    metrics: Arc<Metrics>,
    /// Whether the endpoint is shared with other machines through Redis.
    bridged: bool,
    max_payload: usize,
    /// How long a request body may take in all (`--body-timeout`).
    body_timeout: Duration,
    /// How long a cluster-wide question waits for the other shards and machines.
    timeout: Duration,
}

/// A refusal and the JSON that explains it.
struct Failure {
    refusal: Refusal,
    error: String,
    field: Option<&'static str>,
}

impl Failure {
    fn new(refusal: Refusal, error: impl Into<String>) -> Self {
        Failure {
            refusal,
            error: error.into(),
            field: None,
        }
    }

    /// A body field that is missing or wrong.
    fn field(field: &'static str, error: impl Into<String>) -> Self {
        Failure {
            refusal: Refusal::InvalidRequest,
            error: error.into(),
            field: Some(field),
        }
    }
}

/// A success: its status and JSON body.
type Answer = (u16, Value);

impl Api {
    /// The API acting on `sio`, with these keys (at least one).
    pub(crate) fn new(
        keys: Arc<[String]>,
        sio: Rc<SioShard>,
        metrics: Arc<Metrics>,
        bridged: bool,
        (max_payload, body_timeout): (usize, Duration),
        timeout: Duration,
    ) -> Self {
        Api {
            keys,
            sio,
            metrics,
            bridged,
            max_payload,
            body_timeout,
            timeout,
        }
    }

    /// Serves one request under [`PREFIX`]; returns the connection and what was read of the
    /// next request when it may carry another.
    pub(crate) async fn handle(
        &self,
        mut stream: Stream,
        head: RequestHead,
        leftover: Vec<u8>,
    ) -> Option<(Stream, Vec<u8>)> {
        let (result, rest) = if self.authorized(&head) {
            self.route(&mut stream, &head, leftover).await
        } else {
            let failure = Failure::new(Refusal::Unauthorized, "a valid API key is needed");
            let rest = matches!(head.body_framing(), Ok(BodyFraming::None)).then_some(leftover);
            (Err(failure), rest)
        };
        let (status, body) = match result {
            Ok(answer) => answer,
            Err(failure) => {
                let mut body = json!({"error": failure.error});
                if let Some(field) = failure.field {
                    body["field"] = json!(field);
                }
                (failure.refusal.status(), body)
            }
        };
        self.metrics.api_request(route_label(&head.path), status);
        // A body left unread (or only partly read) ends the connection.
        let keep = head.keep_alive() && rest.is_some();
        let mut headers = vec![("Content-Type", "application/json")];
        match status {
            401 => headers.push(("WWW-Authenticate", "Bearer")),
            405 => headers.push(("Allow", allowed_methods(&head.path))),
            _ => {}
        }
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let kept = connection::respond(&mut stream, status, headers, &body, keep).await;
        kept.then(|| (stream, rest.unwrap_or_default()))
    }

    /// Whether the request carries one of the keys.
    fn authorized(&self, head: &RequestHead) -> bool {
        let Some(given) = head
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        // Every key is compared, in constant time, so neither the result nor the time tells
        // which key or how much of one matched.
        self.keys.iter().fold(false, |found, key| {
            found | bool::from(key.as_bytes().ct_eq(given.trim().as_bytes()))
        })
    }

    /// Dispatches by route; returns the result and the bytes after the request's body (`None`
    /// when the body was not read to its end).
    async fn route(
        &self,
        stream: &mut Stream,
        head: &RequestHead,
        leftover: Vec<u8>,
    ) -> (Result<Answer, Failure>, Option<Vec<u8>>) {
        let route = head.path.strip_prefix(PREFIX).unwrap_or_default();
        let method = head.method.as_str();
        // Without reading a body, the connection goes on only if the request had none.
        let unread =
            |leftover| matches!(head.body_framing(), Ok(BodyFraming::None)).then_some(leftover);
        let Some(allowed) = route_methods(route) else {
            let failure = Failure::new(Refusal::NotFound, "no such route");
            return (Err(failure), unread(leftover));
        };
        if method != allowed {
            let failure = Failure::new(
                Refusal::MethodNotAllowed,
                format!("{route} takes {allowed}"),
            );
            return (Err(failure), unread(leftover));
        }
        if method == "GET" {
            let nsp = head.query_param("nsp").unwrap_or_else(|| "/".to_owned());
            let result = match route.strip_prefix("rooms/") {
                Some(room) => self.room(&nsp, &percent_decode(room)).await,
                None => self.rooms(&nsp).await,
            };
            return (result, unread(leftover));
        }
        let (body, rest) = match connection::read_body(
            stream,
            head,
            leftover,
            self.max_payload,
            self.body_timeout,
        )
        .await
        {
            Ok(read) => read,
            Err(BodyError::TooLarge) => {
                let failure = Failure::new(
                    Refusal::Body(BodyError::TooLarge),
                    format!("the body is over {} bytes", self.max_payload),
                );
                return (Err(failure), None);
            }
            Err(e) => return (Err(Failure::new(Refusal::Body(e), e.to_string())), None),
        };
        let body: Value = match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(e) => {
                let failure = Failure::new(Refusal::InvalidRequest, format!("invalid JSON: {e}"));
                return (Err(failure), Some(rest));
            }
        };
        let result = match route {
            "emit" => self.emit(&body),
            "join" | "leave" => self.join_or_leave(route, &body),
            _ => self.disconnect(&body),
        };
        (result, Some(rest))
    }

    /// `POST emit`: one emit, or a batch (an array); every emit is checked before any goes out.
    fn emit(&self, body: &Value) -> Result<Answer, Failure> {
        let requests: Vec<&Value> = match body {
            Value::Array(batch) if batch.is_empty() => {
                return Err(Failure::field("emit", "an empty batch"))
            }
            Value::Array(batch) => batch.iter().collect(),
            other => vec![other],
        };
        let emits = requests
            .into_iter()
            .map(|r| self.one_emit(r))
            .collect::<Result<Vec<_>, _>>()?;
        let count = emits.len();
        for (op, event, data) in emits {
            op.emit(&event, Payload::from(data))
                .map_err(|e| Failure::field("event", e.to_string()))?;
        }
        Ok((202, self.done(json!({"ok": true, "emitted": count}))))
    }

    /// Checks one emit of a request; returns what to send.
    fn one_emit(&self, request: &Value) -> Result<(BroadcastOperator, String, Value), Failure> {
        let fields = object(request)?;
        let event = match fields.get("event") {
            Some(Value::String(e)) if !e.is_empty() && !is_reserved_event(e) => e.clone(),
            Some(Value::String(e)) if !e.is_empty() => {
                return Err(Failure::field(
                    "event",
                    format!("{e:?} is a reserved event name"),
                ))
            }
            _ => return Err(Failure::field("event", "a non-empty string is required")),
        };
        let op = self.select(fields)?;
        let data = fields.get("data").cloned().unwrap_or(Value::Null);
        Ok((op, event, data))
    }

    /// `POST join` / `POST leave`: the selected sockets join or leave `room`.
    fn join_or_leave(&self, route: &str, body: &Value) -> Result<Answer, Failure> {
        let fields = object(body)?;
        require(fields, "rooms")?;
        let op = self.select(fields)?;
        let rooms = match fields.get("room") {
            Some(v) => room_list(v, "room")?,
            None => {
                return Err(Failure::field(
                    "room",
                    "the room(s) to join or leave are required",
                ))
            }
        };
        if rooms.is_empty() {
            return Err(Failure::field("room", "at least one room"));
        }
        if route == "join" {
            op.sockets_join(rooms);
        } else {
            op.sockets_leave(rooms);
        }
        Ok((202, self.done(json!({"ok": true}))))
    }

    /// `POST disconnect`: the selected sockets leave their namespace (`close`: their whole
    /// connections).
    fn disconnect(&self, body: &Value) -> Result<Answer, Failure> {
        let fields = object(body)?;
        require(fields, "rooms")?;
        let op = self.select(fields)?;
        let close = match fields.get("close") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(Failure::field("close", "a boolean")),
        };
        op.disconnect_sockets(close);
        Ok((202, self.done(json!({"ok": true}))))
    }

    /// `GET rooms/<room>`: who is in `room`, on every shard and machine.
    async fn room(&self, nsp: &str, room: &str) -> Result<Answer, Failure> {
        if room.is_empty() {
            return Err(Failure::field("room", "a room name is required"));
        }
        let op = self.namespace(nsp)?.to(room);
        let (sockets, complete) = match op.fetch_sockets(self.timeout).await {
            Ok(sockets) => (sockets, true),
            Err(Incomplete { partial }) => (partial, false),
        };
        let members: Vec<Value> = sockets.iter().map(member).collect();
        Ok((
            200,
            json!({
                "nsp": nsp,
                "room": room,
                "count": members.len(),
                "members": members,
                "complete": complete,
            }),
        ))
    }

    /// `GET rooms`: every room of the namespace with a member, on every shard and machine
    /// (socket-id rooms included, as Node's `allRooms`).
    async fn rooms(&self, nsp: &str) -> Result<Answer, Failure> {
        let op = self.namespace(nsp)?;
        let (rooms, complete) = match op.all_rooms(self.timeout).await {
            Ok(rooms) => (rooms, true),
            Err(Incomplete { partial }) => (partial, false),
        };
        Ok((
            200,
            json!({"nsp": nsp, "rooms": rooms, "complete": complete}),
        ))
    }

    fn namespace(&self, nsp: &str) -> Result<BroadcastOperator, Failure> {
        self.sio
            .operator(nsp)
            .ok_or_else(|| Failure::field("nsp", format!("no namespace {nsp:?}")))
    }

    /// The sockets a request selects: namespace `nsp` (default `/`), in `rooms` (all when
    /// empty or absent), not in `except`.
    fn select(&self, fields: &Map<String, Value>) -> Result<BroadcastOperator, Failure> {
        let nsp = match fields.get("nsp") {
            None | Some(Value::Null) => "/",
            Some(Value::String(nsp)) => nsp.as_str(),
            Some(_) => return Err(Failure::field("nsp", "a namespace name such as \"/\"")),
        };
        let rooms = optional_rooms(fields, "rooms")?;
        let except = optional_rooms(fields, "except")?;
        Ok(self.namespace(nsp)?.to_rooms(rooms).except_rooms(except))
    }

    /// Adds the cluster's state to an answer: incomplete when Redis is configured but away
    /// (this machine did its part; the others were not reached).
    fn done(&self, mut answer: Value) -> Value {
        let complete = !self.bridged || self.metrics.bridge().connected() == 1;
        answer["complete"] = json!(complete);
        if !complete {
            answer["incomplete"] = json!("Redis is unreachable: other machines were not reached");
        }
        answer
    }
}

/// The method a route takes; `None` for no such route.
fn route_methods(route: &str) -> Option<&'static str> {
    match route {
        "emit" | "join" | "leave" | "disconnect" => Some("POST"),
        "rooms" => Some("GET"),
        room if room.starts_with("rooms/") => Some("GET"),
        _ => None,
    }
}

/// The `route` label of a request's counter: a route, `rooms/<room>` for every room, and
/// `other` for every path that is none (so a client cannot add series).
fn route_label(path: &str) -> &'static str {
    match path.strip_prefix(PREFIX).unwrap_or_default() {
        "emit" => "emit",
        "join" => "join",
        "leave" => "leave",
        "disconnect" => "disconnect",
        "rooms" => "rooms",
        room if room.starts_with("rooms/") => "rooms/<room>",
        _ => "other",
    }
}

/// The `Allow` header of a 405 on `path`.
fn allowed_methods(path: &str) -> &'static str {
    route_methods(path.strip_prefix(PREFIX).unwrap_or_default()).unwrap_or("GET, POST")
}

/// One member of a room, as the presence answer shows it.
fn member(socket: &SocketInfo) -> Value {
    let location = socket.location.as_ref();
    json!({
        "id": socket.id,
        "sub": socket.data.get("sub").cloned().unwrap_or(Value::Null),
        "shard": location.map(|l| l.shard),
        "machine": location.map(|l| l.machine.as_str()),
    })
}

fn object(value: &Value) -> Result<&Map<String, Value>, Failure> {
    value
        .as_object()
        .ok_or_else(|| Failure::field("body", "a JSON object is required"))
}

fn require(fields: &Map<String, Value>, field: &'static str) -> Result<(), Failure> {
    if fields.contains_key(field) {
        Ok(())
    } else {
        Err(Failure::field(
            field,
            format!("{field} is required (an empty array selects every socket)"),
        ))
    }
}

fn optional_rooms(
    fields: &Map<String, Value>,
    field: &'static str,
) -> Result<Vec<String>, Failure> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => room_list(v, field),
    }
}

/// A room name, or an array of them.
fn room_list(value: &Value, field: &'static str) -> Result<Vec<String>, Failure> {
    let wrong = || Failure::field(field, "a room name or an array of room names");
    match value {
        Value::String(room) if !room.is_empty() => Ok(vec![room.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(room) if !room.is_empty() => Ok(room.clone()),
                _ => Err(wrong()),
            })
            .collect(),
        _ => Err(wrong()),
    }
}
