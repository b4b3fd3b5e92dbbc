//! Cross-origin resource sharing for the Engine.IO endpoints, as the `cors` npm middleware
//! that Node's engine.io runs before its own checks (docs/PROTOCOL.md §1.9). Pure: a policy and the
//! request's `Origin` in, response headers out.

/// Which origins may read the responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`: any origin.
    Any,
    /// Exactly these origins (e.g. `https://app.example.com`), compared as strings.
    List(Vec<String>),
}

/// A CORS policy. There is none by default: browsers then refuse cross-origin polling, as with
/// Node since Socket.IO v3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    /// Which origins may use the endpoint.
    pub origins: AllowedOrigins,
    /// Allow credentials (cookies): the exact origin is echoed instead of `*`, and
    /// `Access-Control-Allow-Credentials: true` is sent.
    pub credentials: bool,
}

/// The methods a preflight allows: the `cors` middleware's default list.
pub const ALLOW_METHODS: &str = "GET,HEAD,PUT,PATCH,POST,DELETE";

impl CorsPolicy {
    /// A policy from `--cors-origin` values (`*` anywhere means any origin); `None` when empty.
    pub fn from_origins(origins: &[String], credentials: bool) -> Option<CorsPolicy> {
        if origins.is_empty() {
            return None;
        }
        let origins = if origins.iter().any(|o| o == "*") {
            AllowedOrigins::Any
        } else {
            AllowedOrigins::List(origins.to_vec())
        };
        Some(CorsPolicy {
            origins,
            credentials,
        })
    }

    /// The headers of every response (errors included) to a request from `origin`.
    pub fn response_headers(&self, origin: Option<&str>) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(3);
        let mut vary = Vec::new();
        self.origin_headers(origin, &mut headers, &mut vary);
        if !vary.is_empty() {
            headers.push(("Vary", vary.join(", ")));
        }
        headers
    }

    /// The headers of the answer to a preflight (`OPTIONS`, answered 204 with no body).
    /// `request_headers` is the request's `Access-Control-Request-Headers`, echoed back.
    pub fn preflight_headers(
        &self,
        origin: Option<&str>,
        request_headers: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(5);
        let mut vary = Vec::new();
        self.origin_headers(origin, &mut headers, &mut vary);
        headers.push(("Access-Control-Allow-Methods", ALLOW_METHODS.to_string()));
        if let Some(requested) = request_headers {
            headers.push(("Access-Control-Allow-Headers", requested.to_string()));
            vary.push("Access-Control-Request-Headers");
        }
        if !vary.is_empty() {
            headers.push(("Vary", vary.join(", ")));
        }
        headers
    }

    fn origin_headers(
        &self,
        origin: Option<&str>,
        headers: &mut Vec<(&'static str, String)>,
        vary: &mut Vec<&'static str>,
    ) {
        let allowed = match (&self.origins, self.credentials) {
            // `*` is not accepted by browsers on credentialed requests: reflect the origin.
            (AllowedOrigins::Any, false) => Some("*"),
            (AllowedOrigins::Any, true) => {
                vary.push("Origin");
                origin
            }
            (AllowedOrigins::List(list), _) => {
                vary.push("Origin");
                origin.filter(|o| list.iter().any(|allowed| allowed == o))
            }
        };
        if let Some(allowed) = allowed {
            headers.push(("Access-Control-Allow-Origin", allowed.to_string()));
        }
        if self.credentials {
            headers.push(("Access-Control-Allow-Credentials", "true".to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str], credentials: bool) -> CorsPolicy {
        let origins: Vec<String> = origins.iter().map(|o| o.to_string()).collect();
        CorsPolicy::from_origins(&origins, credentials).expect("a policy")
    }

    #[test]
    fn no_origins_means_no_policy() {
        assert_eq!(CorsPolicy::from_origins(&[], true), None);
    }

    #[test]
    fn any_origin_answers_star_as_captured_from_node() {
        let p = policy(&["*"], false);
        assert_eq!(
            p.response_headers(Some("https://a.example")),
            vec![("Access-Control-Allow-Origin", "*".to_string())]
        );
        assert_eq!(
            p.response_headers(None),
            vec![("Access-Control-Allow-Origin", "*".to_string())]
        );
        assert_eq!(
            p.preflight_headers(Some("https://a.example"), Some("content-type, x-token")),
            vec![
                ("Access-Control-Allow-Origin", "*".to_string()),
                ("Access-Control-Allow-Methods", ALLOW_METHODS.to_string()),
                (
                    "Access-Control-Allow-Headers",
                    "content-type, x-token".to_string()
                ),
                ("Vary", "Access-Control-Request-Headers".to_string()),
            ]
        );
        assert_eq!(
            p.preflight_headers(None, None),
            vec![
                ("Access-Control-Allow-Origin", "*".to_string()),
                ("Access-Control-Allow-Methods", ALLOW_METHODS.to_string()),
            ]
        );
    }

    #[test]
    fn credentials_echo_the_exact_origin() {
        let p = policy(&["*"], true);
        assert_eq!(
            p.response_headers(Some("https://a.example")),
            vec![
                (
                    "Access-Control-Allow-Origin",
                    "https://a.example".to_string()
                ),
                ("Access-Control-Allow-Credentials", "true".to_string()),
                ("Vary", "Origin".to_string()),
            ]
        );
        assert_eq!(
            p.preflight_headers(Some("https://a.example"), Some("x-a")),
            vec![
                (
                    "Access-Control-Allow-Origin",
                    "https://a.example".to_string()
                ),
                ("Access-Control-Allow-Credentials", "true".to_string()),
                ("Access-Control-Allow-Methods", ALLOW_METHODS.to_string()),
                ("Access-Control-Allow-Headers", "x-a".to_string()),
                ("Vary", "Origin, Access-Control-Request-Headers".to_string()),
            ]
        );
    }

    #[test]
    fn a_list_allows_only_its_origins() {
        let p = policy(&["https://a.example", "https://b.example"], false);
        assert_eq!(
            p.response_headers(Some("https://b.example")),
            vec![
                (
                    "Access-Control-Allow-Origin",
                    "https://b.example".to_string()
                ),
                ("Vary", "Origin".to_string()),
            ]
        );
        assert_eq!(
            p.response_headers(Some("https://evil.example")),
            vec![("Vary", "Origin".to_string())]
        );
        assert_eq!(
            p.response_headers(None),
            vec![("Vary", "Origin".to_string())]
        );
    }
}
