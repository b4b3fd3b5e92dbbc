//! TLS on the public listener, with rustls and its `ring` provider: the certificate and key of
//! `--tls-cert` / `--tls-key` ([`Certificates`], re-read by [`Certificates::reload`], which the
//! binary calls on SIGHUP), the server configuration every shard accepts with (TLS 1.2 and
//! 1.3, ALPN `http/1.1`), and the encrypted connection itself (`stream.rs`).
//!
//! A reload swaps the certificate behind a lock held only to clone an `Arc`: a handshake that
//! starts after the swap gets the new certificate, connections already open keep theirs (their
//! keys were agreed in their handshake and do not depend on the certificate any more).

mod stream;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use thiserror::Error;

use crate::config::TlsConfig;

pub(crate) use stream::TlsStream;

/// Why the certificate or its key could not be loaded: the server does not start, or a reload
/// keeps the certificate in use. Every message names the file.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate, or one that does not parse.
    #[error("{path}: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file holds no PEM private key of a supported kind (PKCS#8, PKCS#1, SEC1).
    #[error("{path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error("{key} is not the private key of the certificate in {cert}: {reason}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

/// The server's certificate chain and key, from two PEM files, swappable while the server runs.
#[derive(Debug)]
pub struct Certificates {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    /// Loads `--tls-cert` and `--tls-key`; `None` when TLS is not configured. The
    /// configuration must have passed `validate` (both files or neither).
    pub fn from_config(config: &TlsConfig) -> Result<Option<Arc<Certificates>>, TlsError> {
        match (&config.cert, &config.key) {
            (Some(cert), Some(key)) => Certificates::load(cert, key).map(Some),
            _ => Ok(None),
        }
    }

    /// Loads a PEM certificate chain and the PEM private key that belongs to it.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Certificates>, TlsError> {
        let current = load_pair(cert, key)?;
        Ok(Arc::new(Certificates {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            current: RwLock::new(Arc::new(current)),
        }))
    }

    /// Re-reads both files. On an error the certificate in use stays and the error is
    /// returned. Returns the new certificate's SHA-256 fingerprint (hex), for the log.
    pub fn reload(&self) -> Result<String, TlsError> {
        let loaded = Arc::new(load_pair(&self.cert_path, &self.key_path)?);
        let fingerprint = fingerprint(&loaded);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(fingerprint)
    }

    /// The SHA-256 fingerprint (lowercase hex) of the certificate new connections get.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.current())
    }

    fn current(&self) -> Arc<CertifiedKey> {
        // The lock is held for an `Arc` clone only, never across a handshake.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The configuration every shard accepts with: TLS 1.2 and 1.3 (ring's safe defaults), no
    /// client certificates, ALPN `http/1.1` (the only protocol served), the certificate looked
    /// up here per handshake.
    pub(crate) fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let mut config = builder
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// Hands every handshake the certificate in use when it starts.
#[derive(Debug)]
struct Resolver(Arc<Certificates>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The chain of `cert` and the key of `key`, checked to belong together.
fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_error = |reason: String| TlsError::Certificate {
        path: cert.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(format!("not a PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(cert_error(
            "no PEM certificate (BEGIN CERTIFICATE) in it".into(),
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: format!("no PEM private key (PKCS#8, PKCS#1 or SEC1) in it ({e})"),
    })?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) | rustls::Error::InvalidCertificate(_) => {
            TlsError::Mismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
                reason: e.to_string(),
            }
        }
        e => TlsError::Key {
            path: key.to_owned(),
            reason: format!("not a usable private key ({e})"),
        },
    })
}

/// The SHA-256 of the end-entity certificate's DER, lowercase hex (what `openssl x509
/// -fingerprint -sha256` prints, without the colons).
fn fingerprint(key: &CertifiedKey) -> String {
    let der = key.end_entity_cert().map(|c| c.as_ref()).unwrap_or(&[]);
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
