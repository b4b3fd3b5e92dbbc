//! Keys and tokens for the JWT tests: key pairs made by `openssl` (as an operator would make
//! them) in a directory removed on drop, and tokens signed with `jsonwebtoken`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

/// A directory of key files (JWT keys, TLS certificates), removed on drop.
pub(crate) struct KeyDir {
    pub path: PathBuf,
}

impl KeyDir {
    pub(crate) fn new() -> KeyDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "shardio-keys-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create the key directory");
        KeyDir { path }
    }

    /// Makes a key pair `name` of `kind` ("rsa", "ec", "ed25519"); returns the paths of the
    /// private and the public PEM.
    pub(crate) fn pair(&self, name: &str, kind: &str) -> (PathBuf, PathBuf) {
        let private = self.path.join(format!("{name}.key"));
        let public = self.path.join(format!("{name}.pub"));
        let mut genpkey = Command::new("openssl");
        genpkey.arg("genpkey");
        match kind {
            "rsa" => genpkey.args(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
            "ec" => genpkey.args(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
            "ed25519" => genpkey.args(["-algorithm", "ed25519"]),
            other => panic!("unknown key kind {other}"),
        };
        run(genpkey.arg("-out").arg(&private));
        run(Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public));
        (private, public)
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn run(command: &mut Command) {
    let out = command
        .output()
        .expect("openssl runs (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A token signed with an HMAC secret.
pub(crate) fn hs256(secret: &str, claims: &Value) -> String {
    sign(
        Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// A token signed with the private PEM at `private`, with `alg` and `kid`.
pub(crate) fn signed(
    alg: Algorithm,
    kid: Option<&str>,
    private: &PathBuf,
    claims: &Value,
) -> String {
    let pem = std::fs::read(private).expect("read the private key");
    let key = match alg {
        Algorithm::RS256 | Algorithm::PS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        other => panic!("no test key for {other:?}"),
    }
    .expect("a private key of that kind");
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    sign(header, claims, &key)
}

/// A token signed with HS256 and a `kid`, using `secret` bytes (e.g. a public key's PEM, as an
/// attacker who knows the public key would).
pub(crate) fn hs256_with_kid(kid: &str, secret: &[u8], claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    sign(header, claims, &EncodingKey::from_secret(secret))
}

fn sign(header: Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, claims, key).expect("sign the token")
}
