//! Who may connect, join and publish (JWT, the room policy, Origins), and the backend API.

use std::net::SocketAddr;

use clap::Args;

use super::{defaults, ConfigError};

/// Who may connect, join and publish: JWT verification of the CONNECT `auth.token`, the room
/// policy its claims carry, and the Origin allow-list. Without any JWT option the gateway is
/// open (anyone may join and publish anywhere), as a development default.
#[derive(Debug, Clone, Default, Args)]
pub struct AuthConfig {
    /// An HMAC secret for HS256/384/512 tokens (repeatable, for rotation). Prefer
    /// `--jwt-secret-file` or the environment: a flag shows in the process list. Default: none.
    #[arg(
        long = "jwt-secret",
        env = "SHARDIO_JWT_SECRET",
        value_delimiter = ',',
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_secrets: Vec<String>,
    /// A file holding an HMAC secret (repeatable); re-read on SIGHUP. Trailing newlines are
    /// not part of the secret. Default: none.
    #[arg(
        long = "jwt-secret-file",
        env = "SHARDIO_JWT_SECRET_FILE",
        value_delimiter = ',',
        value_name = "PATH"
    )]
    pub jwt_secret_files: Vec<String>,
    /// A PEM public key (RSA: RS/PS256-512, EC: ES256/384, Ed25519: EdDSA), optionally named by
    /// the key id tokens carry in their `kid` header: `KID=PATH` (repeatable); re-read on
    /// SIGHUP. Default: none.
    #[arg(
        long = "jwt-public-key",
        env = "SHARDIO_JWT_PUBLIC_KEY",
        value_delimiter = ',',
        value_name = "[KID=]PATH"
    )]
    pub jwt_public_keys: Vec<String>,
    /// The `aud` a token must carry. Default: not checked.
    #[arg(long, env = "SHARDIO_JWT_AUDIENCE", value_name = "AUD")]
    pub jwt_audience: Option<String>,
    /// The `iss` a token must carry. Default: not checked.
    #[arg(long, env = "SHARDIO_JWT_ISSUER", value_name = "ISS")]
    pub jwt_issuer: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[arg(long, env = "SHARDIO_JWT_LEEWAY", default_value_t = defaults::JWT_LEEWAY_S, value_name = "SECONDS")]
    pub jwt_leeway: u64,
    /// Close a connection when its token expires (the client gets `connect_error` with
    /// "token expired"). Default: a token is checked when the client connects only.
    #[arg(long, env = "SHARDIO_JWT_EXPIRE_CONNECTIONS")]
    pub jwt_expire_connections: bool,
    /// Whether clients may publish (`on`), or only the backend API (`off`).
    #[arg(
        long,
        env = "SHARDIO_CLIENT_PUBLISH",
        default_value_t = defaults::CLIENT_PUBLISH,
        action = clap::ArgAction::Set,
        value_parser = parse_on_off,
        value_name = "on|off"
    )]
    pub client_publish: bool,
    /// An origin allowed to connect (repeatable; exact, case-insensitive, e.g.
    /// `https://app.example.com`). Requests with another `Origin` get 403 before any session
    /// exists; requests without one (non-browser clients) are allowed. Default: any origin.
    #[arg(
        long = "allowed-origin",
        env = "SHARDIO_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub allowed_origins: Vec<String>,
}

impl AuthConfig {
    /// Whether any JWT key is configured (then every CONNECT needs a valid token).
    pub fn jwt_enabled(&self) -> bool {
        !(self.jwt_secrets.is_empty()
            && self.jwt_secret_files.is_empty()
            && self.jwt_public_keys.is_empty())
    }

    /// Checks the settings; the error names the flag to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_secrets.iter().any(String::is_empty) {
            return Err(ConfigError::Zero("jwt-secret length"));
        }
        let origin = |o: &String| {
            let o = o.to_ascii_lowercase();
            (o.starts_with("http://") || o.starts_with("https://"))
                && !o.contains('*')
                && !o.ends_with('/')
                && !o.bytes().any(|b| b.is_ascii_control() || b == b' ')
        };
        if let Some(bad) = self.allowed_origins.iter().find(|o| !origin(o)) {
            return Err(ConfigError::AllowedOrigin(bad.clone()));
        }
        Ok(())
    }
}

/// `on`/`off` (and the usual boolean spellings) for switches that default to on.
pub(super) fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("expected on or off, got {s:?}")),
    }
}

/// The HTTP API for backends (`/api/v1/`): off without an API key.
#[derive(Debug, Clone, Default, Args)]
pub struct ApiConfig {
    /// A key backends send as `Authorization: Bearer <key>` (repeatable, for rotation). Without
    /// any, the API is off (404). Default: none.
    #[arg(
        long = "api-key",
        env = "SHARDIO_API_KEYS",
        value_delimiter = ',',
        value_name = "KEY",
        hide_env_values = true
    )]
    pub keys: Vec<String>,
    /// Serve the API only on this address (a private one), not on `--listen`. Default: the API
    /// is under `/api/v1/` on `--listen`.
    #[arg(long, env = "SHARDIO_INTERNAL_LISTEN", value_name = "ADDR")]
    pub internal_listen: Option<SocketAddr>,
}
