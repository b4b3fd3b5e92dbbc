//! TLS on the public listener: the certificate and key files.

use std::path::PathBuf;

use clap::Args;

use super::ConfigError;

/// HTTPS and WSS on `--listen`: a PEM certificate chain and its private key, re-read on SIGHUP.
/// Without them the listener speaks plain HTTP.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsConfig {
    /// A PEM certificate chain (the server's certificate first) to serve HTTPS and WSS on
    /// `--listen`; needs `--tls-key`. Re-read on SIGHUP. Default: plain HTTP.
    #[arg(long = "tls-cert", env = "SHARDIO_TLS_CERT", value_name = "PATH")]
    pub cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of `--tls-cert`. Re-read on SIGHUP.
    /// Default: none.
    #[arg(long = "tls-key", env = "SHARDIO_TLS_KEY", value_name = "PATH")]
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }

    /// Both files or neither; the error names the missing flag. Whether the files hold a
    /// certificate and its key is checked when they are loaded (`tls::Certificates::load`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => Err(ConfigError::Needs("--tls-cert", "--tls-key")),
            (None, Some(_)) => Err(ConfigError::Needs("--tls-key", "--tls-cert")),
            _ => Ok(()),
        }
    }
}
