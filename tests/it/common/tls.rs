//! TLS for the tests: self-signed certificates made with rcgen and written as PEM files, and a
//! blocking rustls client that trusts exactly those certificates and tells which one the
//! server presented.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::jwt::KeyDir;
use super::WAIT;

/// A client's end of a TLS connection.
pub(crate) type TlsConn = StreamOwned<ClientConnection, TcpStream>;

/// A certificate and key file pair in a directory of its own (a `KeyDir`, removed on drop), for
/// `--tls-cert` / `--tls-key`; [`CertFiles::renew`] overwrites both with a new pair.
pub(crate) struct CertFiles {
    _dir: KeyDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Every certificate written so far: what the client trusts.
    issued: Vec<CertificateDer<'static>>,
}

impl CertFiles {
    /// A new self-signed certificate for `localhost` and 127.0.0.1.
    pub(crate) fn new() -> CertFiles {
        let dir = KeyDir::new();
        let mut files = CertFiles {
            cert: dir.path.join("cert.pem"),
            key: dir.path.join("key.pem"),
            _dir: dir,
            issued: Vec::new(),
        };
        files.renew();
        files
    }

    /// Writes a new self-signed certificate and key over the files; returns its fingerprint.
    pub(crate) fn renew(&mut self) -> String {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let made = rcgen::generate_simple_self_signed(names).expect("rcgen makes a certificate");
        std::fs::write(&self.cert, made.cert.pem()).expect("write the certificate");
        std::fs::write(&self.key, made.key_pair.serialize_pem()).expect("write the key");
        let der = made.cert.der().clone();
        let fingerprint = fingerprint(&der);
        self.issued.push(der);
        fingerprint
    }

    /// The fingerprint of the certificate in the files now.
    pub(crate) fn fingerprint(&self) -> String {
        fingerprint(self.issued.last().expect("a certificate was issued"))
    }

    /// The certificate and key flags of the binary.
    pub(crate) fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }

    /// A client configuration trusting every certificate issued so far (and nothing else),
    /// offering ALPN `http/1.1`.
    pub(crate) fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for cert in &self.issued {
            roots.add(cert.clone()).expect("a trust anchor");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Connects and completes the handshake; returns the connection and the fingerprint of the
    /// certificate the server presented.
    pub(crate) fn connect(&self, addr: SocketAddr) -> (TlsConn, String) {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(WAIT)).expect("timeout");
        tcp.set_nodelay(true).expect("nodelay");
        let name = ServerName::try_from("localhost").expect("a server name");
        let conn = ClientConnection::new(self.client_config(), name).expect("a client");
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .expect("the TLS handshake completes");
        }
        assert_eq!(
            tls.conn.alpn_protocol(),
            Some(&b"http/1.1"[..]),
            "ALPN settles on http/1.1"
        );
        let presented = tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .expect("the server presents a certificate");
        let fingerprint = fingerprint(presented);
        (tls, fingerprint)
    }
}

/// SHA-256 of a certificate's DER, lowercase hex (as `shardio::tls::Certificates` logs it).
pub(crate) fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
