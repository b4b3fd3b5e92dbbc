//! Every default of shardio, in one place. Times are in milliseconds, sizes in bytes.

/// `--listen`.
pub const LISTEN: &str = "0.0.0.0:3000";
/// `--shutdown-timeout`: how long shutdown waits for sessions to drain.
pub const SHUTDOWN_TIMEOUT_MS: u64 = 30_000;
/// `--drain-delay`: how long a shutting-down server keeps serving with `/readyz` at 503.
pub const DRAIN_DELAY_MS: u64 = 0;
/// `--bus-capacity`: messages each shard's bus inbox holds.
pub const BUS_CAPACITY: usize = 16 * 1024;
/// `--path`: the HTTP path of the Socket.IO endpoint.
pub const PATH: &str = "/socket.io/";
/// `--ping-interval`: Engine.IO's server ping period (Node's `pingInterval`).
pub const PING_INTERVAL_MS: u64 = 25_000;
/// `--ping-timeout`: how long a pong may take (Node's `pingTimeout`).
pub const PING_TIMEOUT_MS: u64 = 20_000;
/// `--max-payload`: the largest message a client may send (Node's `maxHttpBufferSize`).
pub const MAX_PAYLOAD: usize = 1_000_000;
/// `--max-buffered-bytes`: outbound bytes queued per session before it is disconnected as
/// a slow consumer.
pub const MAX_BUFFERED_BYTES: usize = 1 << 20;
/// How long a WebSocket upgrading a polling session may take to send the upgrade packet
/// (Node's `upgradeTimeout`). Not a flag.
pub const UPGRADE_TIMEOUT_MS: u64 = 10_000;
/// `--connect-timeout`: time a connection has to join a namespace (Node's `connectTimeout`).
pub const CONNECT_TIMEOUT_MS: u64 = 45_000;
/// Binary attachments accepted per Socket.IO packet (socket.io-parser's `maxAttachments`).
/// Not a flag.
pub const MAX_ATTACHMENTS: usize = 10;
/// `--max-rooms-per-socket`: rooms one gateway client may join.
pub const MAX_ROOMS_PER_SOCKET: usize = 128;
/// `--redis-prefix`: Node's adapter `key` option.
pub const REDIS_PREFIX: &str = "socket.io";
/// `--redis-requests-timeout` (Node's `requestsTimeout`).
pub const REDIS_REQUESTS_TIMEOUT_MS: u64 = 5_000;
/// `--redis-queue`: messages the shards may queue for the Redis bridge.
pub const REDIS_QUEUE: usize = 16 * 1024;
/// `--redis-probe-interval`.
pub const REDIS_PROBE_INTERVAL_MS: u64 = 2_000;
/// `--redis-reconnect-max`: the longest wait between two reconnection attempts.
pub const REDIS_RECONNECT_MAX_MS: u64 = 2_000;
/// The shortest wait between two connection attempts to Redis (and the first one), so a
/// dead Redis never makes the bridge spin. Not a flag.
pub const REDIS_RECONNECT_MIN_MS: u64 = 250;
/// `--jwt-leeway`: seconds of clock skew allowed on `exp` and `nbf`.
pub const JWT_LEEWAY_S: u64 = 5;
/// `--client-publish`: clients may publish (the gateway's `publish` event).
pub const CLIENT_PUBLISH: bool = true;
/// `--node-name` when not given: the machine's host name, else this.
pub const NODE_NAME: &str = "shardio";

/// The default `--node-name`: the host name the kernel reports.
pub fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| NODE_NAME.to_owned())
}
/// `--ws-max-fragments`: frames one WebSocket message may come in. Browsers and Node's `ws`
/// never fragment what they send, and libraries that do use fragments of kilobytes: 1024
/// fragments of a 1 MB message average 1 KB each.
pub const WS_MAX_FRAGMENTS: usize = 1024;
/// `--ws-control-rate`: WebSocket control frames (pings, pongs) one client may send per
/// second, in bursts of as many. Browsers cannot send any; other clients ping every few
/// seconds.
pub const WS_CONTROL_RATE: u32 = 20;
/// `--max-json-depth`: nesting of arrays and objects in a Socket.IO packet's JSON, checked
/// before it is parsed (serde_json's own limit is 128, reached by recursion).
pub const MAX_JSON_DEPTH: usize = 32;
/// `--max-name-length`: bytes of a namespace name or an event name in a client's packet.
pub const MAX_NAME_LENGTH: usize = 256;
/// `--max-event-rate`: Socket.IO events one client may send per second; 0, the default,
/// is no limit. Off by default because one connection may rightly carry a great many: a
/// backend that publishes through the gateway, a benchmark publisher (tens of thousands a
/// second flat out). Browser-facing deployments should set it (e.g. 100).
pub const MAX_EVENT_RATE: u32 = 0;
/// `--max-event-burst`: events one client may send at once above the rate; also how many
/// refused events (since the client last stayed within its rate) close the connection.
pub const MAX_EVENT_BURST: u32 = 200;
/// `--max-head-bytes`: the largest HTTP request head (request line and headers).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// `--max-headers`: header lines one HTTP request may carry.
pub const MAX_HEADERS: usize = 100;
/// `--head-timeout`: time a client has to send a complete request head; also how long a
/// kept-alive connection may idle between two requests.
pub const HEAD_TIMEOUT_MS: u64 = 10_000;
/// `--body-timeout`: time a client has to send a complete request body (a polling POST),
/// however it trickles. 30 s lets a body of the default `--max-payload` (1 MB) through at
/// 33 KB/s (267 kbit/s, below a weak 3G link), and a typical POST of a few hundred bytes
/// at a few bytes per second; Node's whole-request limit (`server.requestTimeout`) is
/// 300 s, too long to hold a descriptor for a client that never finishes.
pub const BODY_TIMEOUT_MS: u64 = 30_000;
/// `--max-connections`: Engine.IO sessions (client connections) one process holds. Just
/// under the 1,048,576 descriptors the systemd unit allows, so that a full server answers
/// 503 instead of running out of descriptors.
pub const MAX_CONNECTIONS: usize = 1_000_000;
/// `--max-handshakes-per-second`: new sessions one process opens per second, in bursts of
/// as many. At the measured 11,600 handshakes per CPU second (benches/RESULTS.md) this is
/// under two cores' worth: a reconnection storm cannot take every core of a large machine
/// from the clients already connected, and one core never reaches it.
pub const MAX_HANDSHAKES_PER_SECOND: u32 = 20_000;
/// `--serve-client`: the socket.io-client bundle is served under `--path`, as Node's
/// `serveClient` (on by default there too).
pub const SERVE_CLIENT: bool = true;

/// `--demo` when not given: the demo page is served when no JWT key is configured (an open
/// page beside an open gateway), not when one is (the page has no token to give).
pub fn demo(jwt_enabled: bool) -> bool {
    !jwt_enabled
}

/// `--log-format`: human-readable lines.
pub const LOG_FORMAT: &str = "text";
/// `--redis-subscribe`: Node's classic pattern subscription, until per-room subscriptions are
/// measured in every deployment shape (benches/RESULTS-cluster.md).
pub const REDIS_SUBSCRIBE: &str = "pattern";

/// `--redis-mode`: Node's classic Redis adapter.
pub const REDIS_MODE: &str = "classic";
/// `--redis-stream`: the streams adapter's `streamName`.
pub const REDIS_STREAM: &str = "socket.io";
/// `--redis-stream-maxlen`: the streams adapter's `maxLen`.
pub const REDIS_STREAM_MAXLEN: u64 = 10_000;
/// `--redis-subscription-mode`: Node's `createShardedAdapter` default (`dynamic`: a channel per
/// public room).
pub const REDIS_SUBSCRIPTION_MODE: &str = "dynamic";

/// Slots of the interest table (`bus::interest`): a broadcast to a room goes to the shards
/// marked in the room's slot. 65,536 slots of one word (up to 64 shards) are 512 KiB, of which
/// only the pages of used slots are touched; rooms beyond a few tens of thousands per process
/// start to share slots, and a shared slot only sends a broadcast to a shard that has no member
/// (as every broadcast did before the table).
pub const INTEREST_SLOTS: usize = 1 << 16;

/// `--websocket-compression`: permessage-deflate is off unless asked for; it costs CPU per
/// message and, for clients that keep their compression context, an inflater per connection.
pub const WEBSOCKET_COMPRESSION: bool = false;
/// `--recovery-window` given without a value: Node's `maxDisconnectionDuration` (2 minutes).
/// Without the flag recovery is off.
pub const RECOVERY_WINDOW_MS: &str = "120000";
/// `--recovery-session-bytes`: missed packets one session may get back, in bytes. 512 KiB is
/// thousands of chat messages, and half of `--max-buffered-bytes`, so that the missed packets
/// fit in the new connection's queue; a client that missed more gets a fresh start.
pub const RECOVERY_SESSION_BYTES: usize = 512 * 1024;
/// `--recovery-process-bytes`: what the kept sessions and the recoverable packets may take in
/// the whole process (each shard holds an even share).
pub const RECOVERY_PROCESS_BYTES: usize = 256 * 1024 * 1024;
/// How long a shard waits for another shard to hand over a session a client brings back (a
/// CONNECT answered later than this gets a fresh session). Not a flag: shards answer within
/// microseconds unless the process is overloaded.
pub const RECOVERY_ASK_TIMEOUT_MS: u64 = 2_000;

/// How long a shard waits for the Redis bridge to restore a session (streams mode): the
/// session's read and delete, then the stream after the client's offset. The bridge gives up
/// a second earlier, so that a session it took is never answered to nobody. Not a flag.
pub const RECOVERY_REDIS_TIMEOUT_MS: u64 = 5_000;
