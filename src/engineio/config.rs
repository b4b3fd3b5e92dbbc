//! The Engine.IO settings of one endpoint.

use std::time::Duration;

use crate::config::{defaults, Config};
use crate::protocol::cors::CorsPolicy;

/// Engine.IO settings of one endpoint. Defaults are Node's, from [`crate::config::defaults`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How often the server pings (ms on the wire).
    pub ping_interval: Duration,
    /// How long a pong may take before the session closes.
    pub ping_timeout: Duration,
    /// The largest message a client may send, in bytes (advertised as `maxPayload`).
    pub max_payload: usize,
    /// Outbound bytes queued for one session before it is disconnected as a slow consumer.
    pub max_buffered_bytes: usize,
    /// How long a WebSocket upgrading a polling session may take to send the upgrade packet
    /// before that candidate WebSocket (only) is closed.
    pub upgrade_timeout: Duration,
    /// Cross-origin policy of the endpoint's responses. Default none (off, as in Node).
    pub cors: Option<CorsPolicy>,
    /// Name of a cookie set to the sid on the handshake response, for load balancers that stick
    /// by cookie. Default none.
    pub cookie: Option<String>,
    /// Origins allowed to make requests, lower-cased; a request with another `Origin` header
    /// gets 403 before any session exists, one without it is allowed. Default none (any).
    pub allowed_origins: Option<Vec<String>>,
    /// Frames one WebSocket message may come in; more close the connection with 1008.
    pub max_fragments: usize,
    /// WebSocket control frames (pings, pongs) a client may send per second, in bursts of as
    /// many; faster closes the connection with 1008. 0: no limit.
    pub control_frame_rate: u32,
    /// Accept permessage-deflate (RFC 7692) when a WebSocket client offers it. Default off.
    pub websocket_compression: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ping_interval: Duration::from_millis(defaults::PING_INTERVAL_MS),
            ping_timeout: Duration::from_millis(defaults::PING_TIMEOUT_MS),
            max_payload: defaults::MAX_PAYLOAD,
            max_buffered_bytes: defaults::MAX_BUFFERED_BYTES,
            upgrade_timeout: Duration::from_millis(defaults::UPGRADE_TIMEOUT_MS),
            cors: None,
            cookie: None,
            allowed_origins: None,
            max_fragments: defaults::WS_MAX_FRAGMENTS,
            control_frame_rate: defaults::WS_CONTROL_RATE,
            websocket_compression: defaults::WEBSOCKET_COMPRESSION,
        }
    }
}

impl EngineConfig {
    /// The Engine.IO settings a [`Config`] asks for.
    pub fn from_config(config: &Config) -> Self {
        EngineConfig {
            ping_interval: Duration::from_millis(config.ping_interval),
            ping_timeout: Duration::from_millis(config.ping_timeout),
            max_payload: config.max_payload,
            max_buffered_bytes: config.max_buffered_bytes,
            cors: CorsPolicy::from_origins(&config.cors_origins, config.cors_credentials),
            cookie: config.cookie.clone(),
            allowed_origins: (!config.auth.allowed_origins.is_empty()).then(|| {
                config
                    .auth
                    .allowed_origins
                    .iter()
                    .map(|o| o.to_ascii_lowercase())
                    .collect()
            }),
            max_fragments: config.ws_max_fragments,
            control_frame_rate: config.ws_control_rate,
            websocket_compression: config.websocket_compression,
            ..EngineConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_default_is_the_binarys_default() {
        let lib = EngineConfig::default();
        let bin = EngineConfig::from_config(&Config::default());
        assert_eq!(
            (lib.ping_interval, lib.ping_timeout, lib.max_payload),
            (bin.ping_interval, bin.ping_timeout, bin.max_payload)
        );
        assert_eq!(lib.max_buffered_bytes, bin.max_buffered_bytes);
        assert_eq!(
            (lib.max_fragments, lib.control_frame_rate),
            (bin.max_fragments, bin.control_frame_rate)
        );
        assert!(bin.cors.is_none() && bin.cookie.is_none());
        assert_eq!(lib.websocket_compression, bin.websocket_compression);
    }
}
