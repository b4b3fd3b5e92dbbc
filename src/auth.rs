//! JWT verification for the gateway: the keys of `--jwt-secret`, `--jwt-secret-file` and
//! `--jwt-public-key` (files re-read by [`Verifier::reload`], which the binary calls on
//! SIGHUP), the checks of a token, and the grants its claims carry.
//!
//! Only the algorithms of the configured keys are accepted: an HMAC secret verifies HS256/384/
//! 512 tokens, an RSA key RS/PS256-512, an EC key ES256/384, an Ed25519 key EdDSA. `alg: none`
//! does not parse, a token whose algorithm no key has is refused before any signature check (so
//! an RSA public key can never be used as an HMAC secret), and a `kid` that names no key is
//! refused. `exp` is required; `exp` and `nbf` are checked with `--jwt-leeway`; `aud` and `iss`
//! when configured.

use std::sync::{Arc, RwLock};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use thiserror::Error;
use wildmatch::WildMatch;

use crate::config::AuthConfig;

/// Why a token was refused: the reason class a client is told (`connect_error` message),
/// never anything of the keys.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// The CONNECT carried no `auth.token` string.
    #[error("token missing")]
    Missing,
    /// Not a JWT, or a header or claims that do not parse (`alg: none` included).
    #[error("invalid token")]
    Malformed,
    /// No configured key verifies the token's algorithm.
    #[error("algorithm not allowed")]
    Algorithm,
    /// The `kid` names no configured key.
    #[error("unknown key id")]
    UnknownKey,
    /// No key with the token's algorithm verifies its signature.
    #[error("invalid signature")]
    Signature,
    /// `exp` has passed (or is missing).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `aud` is not `--jwt-audience`.
    #[error("invalid audience")]
    Audience,
    /// `iss` is not `--jwt-issuer`.
    #[error("invalid issuer")]
    Issuer,
}

impl AuthError {
    /// A short machine-readable name of the reason (`connect_error`'s `data.reason`).
    pub fn code(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::Algorithm => "algorithm",
            AuthError::UnknownKey => "unknown_kid",
            AuthError::Signature => "signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::Audience => "audience",
            AuthError::Issuer => "issuer",
        }
    }
}

/// Why the keys could not be loaded: the server does not start, or a reload keeps the old keys.
#[derive(Debug, Error)]
pub enum KeyError {
    /// A key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file is not a PEM public key of a supported kind, or a secret file is empty.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The claims shardio reads; others are ignored.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user: the socket joins room `user:<sub>`.
    #[serde(default)]
    pub sub: Option<String>,
    /// Glob patterns (`*`, `?`) of the rooms the socket may join.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Glob patterns of the rooms the socket may publish to; `*` alone also allows a publish
    /// to the whole namespace.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Expiry, seconds since the epoch.
    #[serde(default)]
    pub exp: Option<u64>,
}

/// What a verified token allows, with its patterns compiled once per connection.
#[derive(Debug)]
pub struct Grants {
    /// The claims as they came.
    pub claims: Claims,
    rooms: Vec<WildMatch>,
    publish: Vec<WildMatch>,
}

impl Grants {
    /// The grants of `claims`.
    pub fn new(claims: Claims) -> Self {
        let compile = |patterns: &[String]| patterns.iter().map(|p| WildMatch::new(p)).collect();
        Grants {
            rooms: compile(&claims.rooms),
            publish: compile(&claims.publish),
            claims,
        }
    }

    /// Whether the socket may join `room`.
    pub fn may_join(&self, room: &str) -> bool {
        self.rooms.iter().any(|p| p.matches(room))
    }

    /// Whether the socket may publish to `room`.
    pub fn may_publish(&self, room: &str) -> bool {
        self.publish.iter().any(|p| p.matches(room))
    }

    /// Whether the socket may publish to the whole namespace (a `publish` pattern `*`).
    pub fn may_publish_everywhere(&self) -> bool {
        self.claims.publish.iter().any(|p| p == "*")
    }
}

/// One verification key.
struct Key {
    /// The `kid` it answers to, if named.
    kid: Option<String>,
    key: DecodingKey,
    algorithms: &'static [Algorithm],
}

/// Verifies tokens against the configured keys. Shared by every shard; a reload swaps the key
/// set while verifications in flight finish with the old one.
pub struct Verifier {
    config: AuthConfig,
    keys: RwLock<Arc<Vec<Key>>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.keys();
        let kids: Vec<Option<&str>> = keys.iter().map(|k| k.kid.as_deref()).collect();
        f.debug_struct("Verifier").field("keys", &kids).finish()
    }
}

impl Verifier {
    /// The verifier `config` asks for; `None` when no JWT option is given (the gateway is
    /// open). A key that cannot be loaded is an error.
    pub fn from_config(config: &AuthConfig) -> Result<Option<Arc<Verifier>>, KeyError> {
        if !config.jwt_enabled() {
            return Ok(None);
        }
        let keys = load_keys(config)?;
        Ok(Some(Arc::new(Verifier {
            config: config.clone(),
            keys: RwLock::new(Arc::new(keys)),
        })))
    }

    /// Re-reads every key file. On an error the old keys stay and the error is returned.
    pub fn reload(&self) -> Result<usize, KeyError> {
        let keys = load_keys(&self.config)?;
        let count = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(count)
    }

    fn keys(&self) -> Arc<Vec<Key>> {
        // The lock is held for an `Arc` clone only, never across a verification.
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Verifies `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let keys = self.keys();
        let named: Vec<&Key> = match &header.kid {
            Some(kid) => {
                let named: Vec<&Key> = keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                    .collect();
                if named.is_empty() {
                    return Err(AuthError::UnknownKey);
                }
                named
            }
            None => keys.iter().collect(),
        };
        let candidates: Vec<&Key> = named
            .into_iter()
            .filter(|k| k.algorithms.contains(&header.alg))
            .collect();
        if candidates.is_empty() {
            return Err(AuthError::Algorithm);
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.config.jwt_leeway;
        validation.validate_nbf = true;
        validation.validate_aud = self.config.jwt_audience.is_some();
        // A configured `aud` or `iss` must be present, not only right when present.
        if let Some(aud) = &self.config.jwt_audience {
            validation.set_audience(&[aud]);
            validation.required_spec_claims.insert("aud".into());
        }
        if let Some(iss) = &self.config.jwt_issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".into());
        }
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
                    continue
                }
                Err(e) => return Err(classify(e.kind())),
            }
        }
        Err(AuthError::Signature)
    }
}

/// The reason class of a decoding error.
fn classify(kind: &jsonwebtoken::errors::ErrorKind) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::ExpiredSignature => AuthError::Expired,
        K::ImmatureSignature => AuthError::NotYetValid,
        K::InvalidAudience => AuthError::Audience,
        K::InvalidIssuer => AuthError::Issuer,
        K::InvalidAlgorithm => AuthError::Algorithm,
        K::InvalidSignature => AuthError::Signature,
        // A required claim that is missing: an expired token for `exp`, the wrong audience or
        // issuer for the others.
        K::MissingRequiredClaim(claim) if claim == "exp" => AuthError::Expired,
        K::MissingRequiredClaim(claim) if claim == "aud" => AuthError::Audience,
        K::MissingRequiredClaim(claim) if claim == "iss" => AuthError::Issuer,
        _ => AuthError::Malformed,
    }
}

/// Reads every configured key.
fn load_keys(config: &AuthConfig) -> Result<Vec<Key>, KeyError> {
    const HMAC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
    let mut keys: Vec<Key> = config
        .jwt_secrets
        .iter()
        .map(|secret| Key {
            kid: None,
            key: DecodingKey::from_secret(secret.as_bytes()),
            algorithms: HMAC,
        })
        .collect();
    for path in &config.jwt_secret_files {
        let text = read(path)?;
        let secret = text.trim_end_matches(['\n', '\r']);
        if secret.is_empty() {
            return Err(invalid(path, "the secret file is empty"));
        }
        keys.push(Key {
            kid: None,
            key: DecodingKey::from_secret(secret.as_bytes()),
            algorithms: HMAC,
        });
    }
    for spec in &config.jwt_public_keys {
        let (kid, path) = match spec.split_once('=') {
            Some((kid, path)) if !kid.is_empty() && !kid.contains('/') => {
                (Some(kid.to_owned()), path)
            }
            _ => (None, spec.as_str()),
        };
        let pem = read(path)?;
        keys.push(public_key(kid, path, pem.as_bytes())?);
    }
    Ok(keys)
}

/// A PEM public key: its kind is read from the key itself, and decides the algorithms.
fn public_key(kid: Option<String>, path: &str, pem: &[u8]) -> Result<Key, KeyError> {
    const RSA: &[Algorithm] = &[
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ];
    const EC: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384];
    const ED: &[Algorithm] = &[Algorithm::EdDSA];
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok(Key {
            kid,
            key,
            algorithms: ED,
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Ok(Key {
            kid,
            key,
            algorithms: EC,
        });
    }
    match DecodingKey::from_rsa_pem(pem) {
        Ok(key) => Ok(Key {
            kid,
            key,
            algorithms: RSA,
        }),
        Err(_) => Err(invalid(
            path,
            "not a PEM public key (RSA, EC P-256/P-384 or Ed25519)",
        )),
    }
}

fn read(path: &str) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })
}

fn invalid(path: &str, reason: &str) -> KeyError {
    KeyError::Invalid {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn hs_verifier(secret: &str) -> Arc<Verifier> {
        let config = AuthConfig {
            jwt_secrets: vec![secret.into()],
            jwt_leeway: 5,
            ..AuthConfig::default()
        };
        Verifier::from_config(&config).unwrap().unwrap()
    }

    fn hs_token(secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn no_option_means_no_verifier() {
        assert!(Verifier::from_config(&AuthConfig::default())
            .unwrap()
            .is_none());
    }

    #[test]
    fn an_hs256_token_is_verified_and_its_claims_read() {
        let v = hs_verifier("0123456789abcdef0123456789abcdef");
        let token = hs_token(
            "0123456789abcdef0123456789abcdef",
            json!({"sub": "42", "rooms": ["chat:*"], "publish": ["chat:1"], "exp": now() + 60}),
        );
        let claims = v.verify(&token).unwrap();
        assert_eq!(claims.sub.as_deref(), Some("42"));
        let grants = Grants::new(claims);
        assert!(grants.may_join("chat:anything") && !grants.may_join("admin"));
        assert!(grants.may_publish("chat:1") && !grants.may_publish("chat:2"));
        assert!(!grants.may_publish_everywhere());
    }

    #[test]
    fn refusals_name_their_reason() {
        let secret = "0123456789abcdef0123456789abcdef";
        let v = hs_verifier(secret);
        let cases = [
            (
                hs_token(secret, json!({"exp": now() - 3600})),
                AuthError::Expired,
            ),
            (hs_token(secret, json!({})), AuthError::Expired),
            (
                hs_token(secret, json!({"exp": now() + 60, "nbf": now() + 3600})),
                AuthError::NotYetValid,
            ),
            (
                hs_token("another secret, not ours", json!({"exp": now() + 60})),
                AuthError::Signature,
            ),
            ("not.a.jwt".to_owned(), AuthError::Malformed),
            (
                // alg: none, unsigned.
                "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJleHAiOjk5OTk5OTk5OTl9.".to_owned(),
                AuthError::Malformed,
            ),
            (
                hs_token(secret, json!({"exp": now() + 60, "rooms": "not a list"})),
                AuthError::Malformed,
            ),
        ];
        for (token, want) in cases {
            assert_eq!(v.verify(&token), Err(want), "{token}");
        }
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("nobody".into());
        let token = jsonwebtoken::encode(
            &header,
            &json!({"exp": now() + 60}),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        assert_eq!(v.verify(&token), Err(AuthError::UnknownKey));
        let other_alg = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &json!({"exp": now() + 60}),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        assert!(v.verify(&other_alg).is_ok(), "every HMAC size is allowed");
    }

    #[test]
    fn a_tampered_payload_fails_the_signature() {
        let secret = "0123456789abcdef0123456789abcdef";
        let v = hs_verifier(secret);
        let token = hs_token(secret, json!({"sub": "1", "exp": now() + 60}));
        let mut parts: Vec<&str> = token.split('.').collect();
        use base64::Engine as _;
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"sub": "admin", "exp": now() + 60}).to_string());
        parts[1] = &forged;
        assert_eq!(v.verify(&parts.join(".")), Err(AuthError::Signature));
    }

    #[test]
    fn audience_and_issuer_are_checked_when_configured() {
        let secret = "0123456789abcdef0123456789abcdef";
        let config = AuthConfig {
            jwt_secrets: vec![secret.into()],
            jwt_audience: Some("rt".into()),
            jwt_issuer: Some("https://auth.example".into()),
            ..AuthConfig::default()
        };
        let v = Verifier::from_config(&config).unwrap().unwrap();
        let exp = now() + 60;
        let good = json!({"aud": "rt", "iss": "https://auth.example", "exp": exp});
        assert!(v.verify(&hs_token(secret, good)).is_ok());
        let cases = [
            (
                json!({"aud": "other", "iss": "https://auth.example", "exp": exp}),
                AuthError::Audience,
            ),
            (
                json!({"aud": "rt", "iss": "https://evil.example", "exp": exp}),
                AuthError::Issuer,
            ),
        ];
        for (claims, want) in cases {
            assert_eq!(v.verify(&hs_token(secret, claims)), Err(want));
        }
        assert!(
            v.verify(&hs_token(
                secret,
                json!({"iss": "https://auth.example", "exp": exp})
            ))
            .is_err(),
            "a missing aud is refused when one is configured"
        );
    }

    #[test]
    fn a_secret_file_loses_its_trailing_newline_and_an_empty_one_is_an_error() {
        let dir = std::env::temp_dir().join(format!("shardio-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "file-secret-0123456789abcdef\n").unwrap();
        let config = AuthConfig {
            jwt_secret_files: vec![file.to_string_lossy().into_owned()],
            ..AuthConfig::default()
        };
        let v = Verifier::from_config(&config).unwrap().unwrap();
        let token = hs_token("file-secret-0123456789abcdef", json!({"exp": now() + 60}));
        assert!(v.verify(&token).is_ok());
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(v.reload(), Err(KeyError::Invalid { .. })));
        assert!(v.verify(&token).is_ok(), "a failed reload keeps the keys");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_namespace_wide_publish_needs_the_star_pattern() {
        let everything = Grants::new(Claims {
            publish: vec!["*".into()],
            ..Claims::default()
        });
        assert!(everything.may_publish_everywhere() && everything.may_publish("x"));
        let some = Grants::new(Claims {
            publish: vec!["news*".into()],
            ..Claims::default()
        });
        assert!(!some.may_publish_everywhere() && some.may_publish("news:1"));
    }
}
