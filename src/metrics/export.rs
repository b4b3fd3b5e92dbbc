//! The Prometheus exposition of [`Metrics`]: a `prometheus-client` collector that reads every
//! shard's counters at scrape time and writes one series per shard (label `shard`), then the
//! process's series (the Redis bridge, the API, JWT refusals).

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{self, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::bridge::RestoreResult;
use super::shard::{ConnectRefusal, RecoveryEvent, ShardMetrics};
use super::Metrics;
use crate::protocol::close::CloseReason;

/// A text exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4 (what Prometheus scrapes by default).
    Prometheus,
    /// OpenMetrics 1.0 text (asked for with `Accept: application/openmetrics-text`).
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The `Content-Type` of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

impl Metrics {
    /// Every series, in `format`.
    pub fn encode(self: &Arc<Self>, format: Format) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = match format {
            Format::Prometheus => encoding::prometheus_text::encode(&mut out, &registry),
            Format::OpenMetrics => encoding::text::encode(&mut out, &registry),
        };
        out
    }
}

/// Reads one number of a shard.
type Read = fn(&ShardMetrics) -> u64;

/// Counters with the `shard` label only: name (without `_total`), help, how to read it.
const SHARD_COUNTERS: &[(&str, &str, Read)] = &[
    ("shardio_handshakes", "Engine.IO sessions opened.", |s| {
        s.sessions_total.get()
    }),
    (
        "shardio_namespace_connects",
        "Socket.IO namespace CONNECTs accepted.",
        |s| s.namespace_connects.get(),
    ),
    (
        "shardio_messages_received",
        "Engine.IO messages received from clients.",
        |s| s.messages_in.get(),
    ),
    (
        "shardio_received_bytes",
        "Bytes of the Engine.IO messages received from clients.",
        |s| s.bytes_in.get(),
    ),
    (
        "shardio_messages_sent",
        "Engine.IO messages queued to clients (each recipient of a broadcast counts).",
        |s| s.messages_out.get(),
    ),
    (
        "shardio_sent_bytes",
        "Bytes of the Engine.IO messages queued to clients.",
        |s| s.bytes_out.get(),
    ),
    (
        "shardio_broadcasts",
        "Broadcasts started on the shard (by sockets, the application or the API).",
        |s| s.broadcasts.get(),
    ),
    (
        "shardio_deliveries",
        "Broadcast packets queued to the shard's sockets, whoever sent them.",
        |s| s.deliveries.get(),
    ),
    (
        "shardio_slow_consumers",
        "Sessions closed because their outbound queue passed --max-buffered-bytes.",
        |s| s.slow_consumers(),
    ),
    (
        "shardio_volatile_drops",
        "Volatile packets dropped because the receiver's queue was full.",
        |s| s.volatile_drops.get(),
    ),
    (
        "shardio_bus_refusals",
        "Messages to another shard dropped because its inbox was full.",
        |s| s.bus_overflows.get(),
    ),
    (
        "shardio_handoffs_sent",
        "Requests handed to the shard owning their session.",
        |s| s.handoffs_sent.get(),
    ),
    (
        "shardio_handoffs_received",
        "Requests other shards handed to this one.",
        |s| s.handoffs_received.get(),
    ),
    (
        "shardio_packets_over_limits",
        "Socket.IO packets refused for --max-json-depth or --max-name-length.",
        |s| s.packets_over_limits.get(),
    ),
    (
        "shardio_events_refused",
        "Socket.IO events refused for --max-event-rate.",
        |s| s.events_refused.get(),
    ),
    (
        "shardio_accept_errors",
        "Failed accepts (out of file descriptors, mostly).",
        |s| s.accept_errors.get(),
    ),
    (
        "shardio_panics",
        "Panics caught; each closed what it served and the shard went on.",
        |s| s.panics.get(),
    ),
    (
        "shardio_bus_received",
        "Messages taken from the shard's bus inbox (from other shards and the Redis bridge).",
        |s| s.bus_received.get(),
    ),
    (
        "shardio_bus_parcels",
        "Parcels taken from the shard's bus inbox: a sender's messages of one turn travel as one.",
        |s| s.bus_parcels.get(),
    ),
    (
        "shardio_websocket_deflate_negotiated",
        "WebSocket connections that negotiated permessage-deflate.",
        |s| s.deflate_negotiated.get(),
    ),
    (
        "shardio_messages_sent_compressed",
        "WebSocket messages queued compressed (each recipient counts; each message is compressed once).",
        |s| s.messages_out_compressed.get(),
    ),
    (
        "shardio_compression_saved_bytes",
        "Bytes permessage-deflate took off the frames queued to clients.",
        |s| s.compression_saved_bytes.get(),
    ),
    (
        "shardio_messages_received_compressed",
        "Compressed WebSocket messages received from clients.",
        |s| s.messages_in_compressed.get(),
    ),
];

/// Gauges with the `shard` label only.
const SHARD_GAUGES: &[(&str, &str, Read)] = &[(
    "shardio_http_connections",
    "HTTP connections being served (WebSockets are counted in shardio_connections).",
    |s| s.connection_tasks.get(),
)];

/// A series split by one more label: name, help, type, the label, its values, and how to read
/// the number for the value at an index.
struct Split {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    label: &'static str,
    values: Vec<&'static str>,
    read: fn(&ShardMetrics, usize) -> u64,
}

/// The `reason` values of [`ShardMetrics::refused`]'s counters, in the order `splits` reads them.
const REFUSED: [&str; 6] = [
    "head_too_large",
    "malformed",
    "head_timeout",
    "body_timeout",
    "max_connections",
    "handshake_rate",
];

fn splits() -> [Split; 7] {
    [
        Split {
            name: "shardio_connections",
            help: "Engine.IO sessions open, by transport (an upgrading session is polling).",
            kind: MetricType::Gauge,
            label: "transport",
            values: vec!["polling", "websocket"],
            read: |s, i| [&s.polling_open, &s.websocket_open][i].get(),
        },
        Split {
            name: "shardio_polling_requests",
            help: "Long-polling requests served, by method.",
            kind: MetricType::Counter,
            label: "method",
            values: vec!["GET", "POST"],
            read: |s, i| [&s.polling_gets, &s.polling_posts][i].get(),
        },
        Split {
            name: "shardio_namespace_refusals",
            help: "Socket.IO namespace CONNECTs refused, by reason.",
            kind: MetricType::Counter,
            label: "reason",
            values: ConnectRefusal::ALL.iter().map(|r| r.label()).collect(),
            read: |s, i| s.namespace_refusals[i].get(),
        },
        Split {
            name: "shardio_disconnects",
            help: "Sessions ended, by reason.",
            kind: MetricType::Counter,
            label: "reason",
            values: CloseReason::ALL.iter().map(|r| r.label()).collect(),
            read: |s, i| s.disconnects[i].get(),
        },
        Split {
            name: "shardio_tls_handshakes",
            help: "TLS handshakes on the public listener (--tls-cert), by result.",
            kind: MetricType::Counter,
            label: "result",
            values: vec!["ok", "failed"],
            read: |s, i| [&s.tls_handshakes, &s.tls_handshake_failures][i].get(),
        },
        Split {
            name: "shardio_requests_refused",
            help: "HTTP requests and handshakes refused by a limit, by limit.",
            kind: MetricType::Counter,
            label: "reason",
            values: REFUSED.to_vec(),
            read: |s, i| {
                [
                    &s.heads_too_large,
                    &s.requests_malformed,
                    &s.head_timeouts,
                    &s.body_timeouts,
                    &s.over_max_connections,
                    &s.over_handshake_rate,
                ][i]
                    .get()
            },
        },
        Split {
            name: "shardio_recovery_sessions",
            help: "Connection state recovery (--recovery-window): sessions kept, recovered, \
                   expired and evicted.",
            kind: MetricType::Counter,
            label: "event",
            values: RecoveryEvent::ALL.iter().map(|e| e.label()).collect(),
            read: |s, i| s.recovery[i].get(),
        },
    ]
}

/// Encodes one sample of a counter or a gauge.
fn sample(
    kind: MetricType,
    value: u64,
    encoder: prometheus_client::encoding::MetricEncoder<'_>,
) -> fmt::Result {
    match kind {
        MetricType::Gauge => ConstGauge::new(value).encode(encoder),
        _ => ConstCounter::new(value).encode(encoder),
    }
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let shards: Vec<String> = (0..self.shards.len()).map(|i| i.to_string()).collect();
        let plain = SHARD_COUNTERS
            .iter()
            .map(|m| (m, MetricType::Counter))
            .chain(SHARD_GAUGES.iter().map(|m| (m, MetricType::Gauge)));
        for ((name, help, read), kind) in plain {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (shard, id) in self.shards.iter().zip(&shards) {
                let labels = [("shard", id.as_str())];
                sample(kind, read(shard), family.encode_family(&labels)?)?;
            }
        }
        for split in splits() {
            let mut family = encoder.encode_descriptor(split.name, split.help, None, split.kind)?;
            for (shard, id) in self.shards.iter().zip(&shards) {
                for (i, value) in split.values.iter().enumerate() {
                    let labels = [("shard", id.as_str()), (split.label, value)];
                    sample(
                        split.kind,
                        (split.read)(shard, i),
                        family.encode_family(&labels)?,
                    )?;
                }
            }
        }
        self.encode_process(&mut encoder)
    }
}

impl Metrics {
    /// The series of the whole process: the shard count, the bridge, the API, JWT refusals.
    fn encode_process(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let gauges = [
            (
                "shardio_shards",
                "Shards (threads serving clients).",
                self.shards.len() as u64,
            ),
            (
                "shardio_redis_connected",
                "1 while the Redis bridge holds working connections (0 when Redis is off or away).",
                self.bridge.connected(),
            ),
            (
                "shardio_redis_room_channels",
                "Room channels the bridge subscribes to (--redis-subscribe rooms).",
                self.bridge.room_channels(),
            ),
            (
                "shardio_redis_stream_waiting",
                "Streams mode: entries waiting for Redis to be added to the stream.",
                self.bridge.stream_waiting(),
            ),
            (
                "shardio_redis_stream_lag_milliseconds",
                "Streams mode: age of the last entry read from the stream when it was read.",
                self.bridge.stream_lag_ms(),
            ),
        ];
        for (name, help, value) in gauges {
            sample(
                MetricType::Gauge,
                value,
                encoder.encode_descriptor(name, help, None, MetricType::Gauge)?,
            )?;
        }
        let b = &self.bridge;
        let counters = [
            (
                "shardio_redis_reconnects",
                "Times the bridge connected again after losing Redis.",
                b.reconnects(),
            ),
            (
                "shardio_redis_published",
                "Messages published to Redis.",
                b.published(),
            ),
            (
                "shardio_redis_received",
                "Messages from other servers accepted from Redis.",
                b.received(),
            ),
            (
                "shardio_redis_dropped",
                "Messages lost in the bridge (queue full, Redis away, shard inbox full).",
                b.dropped(),
            ),
            (
                "shardio_redis_malformed",
                "Messages from Redis that did not decode.",
                b.malformed(),
            ),
            (
                "shardio_redis_probes_lost",
                "Probes that did not come back through the subscription in time.",
                b.probes_lost(),
            ),
            (
                "shardio_redis_messages_in",
                "Messages that arrived from Redis on the subscription, own messages and probes included.",
                b.messages_in(),
            ),
            (
                "shardio_redis_bytes_in",
                "Payload bytes of the messages that arrived from Redis.",
                b.bytes_in(),
            ),
        ];
        for (name, help, value) in counters {
            sample(
                MetricType::Counter,
                value,
                encoder.encode_descriptor(name, help, None, MetricType::Counter)?,
            )?;
        }
        let mut restores = encoder.encode_descriptor(
            "shardio_redis_restores",
            "Streams mode with recovery: sessions restored from Redis, by result.",
            None,
            MetricType::Counter,
        )?;
        for result in RestoreResult::ALL {
            let labels = [("result", result.label())];
            let family = restores.encode_family(&labels)?;
            sample(MetricType::Counter, b.restores(result), family)?;
        }
        self.bridge.round_trips.encode(encoder.encode_descriptor(
            "shardio_redis_request_duration_seconds",
            "Seconds from publishing a request to the other servers to its answer (or its deadline).",
            None,
            MetricType::Histogram,
        )?)?;
        self.api_requests.encode(encoder.encode_descriptor(
            "shardio_api_requests",
            "Backend API requests, by route and status.",
            None,
            MetricType::Counter,
        )?)?;
        self.jwt_refusals.encode(encoder.encode_descriptor(
            "shardio_jwt_refusals",
            "CONNECTs refused because of their token, by reason.",
            None,
            MetricType::Counter,
        )?)
    }
}
