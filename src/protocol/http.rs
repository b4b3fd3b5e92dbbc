//! HTTP/1.1 request heads and simple responses. Pure: bytes in, values out.

use thiserror::Error;

/// A parsed request head. Header names are lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// HTTP/1.0 closes the connection after the response unless asked otherwise.
    pub http10: bool,
}

/// Why a request head was refused; answered with the status code, then the connection closes.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP/1.x; answered 400.
    #[error("malformed request head")]
    Malformed,
    /// The head is larger than the configured limit; answered 431.
    #[error("request head too large")]
    TooLarge,
}

impl HeadError {
    pub fn status(&self) -> u16 {
        match self {
            HeadError::Malformed => 400,
            HeadError::TooLarge => 431,
        }
    }
}

const MAX_HEADERS: usize = 64;

/// Parses a request head from the start of `buf`. `Ok(None)` means more bytes are needed;
/// `Ok(Some((head, n)))` means the head took the first `n` bytes.
pub fn parse_head(buf: &[u8], max_head: usize) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => {
            if buf.len() >= max_head {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            }
        }
        Ok(httparse::Status::Complete(n)) if n > max_head => Err(HeadError::TooLarge),
        Ok(httparse::Status::Complete(n)) => {
            let target = req.path.unwrap_or("/");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let head = RequestHead {
                method: req.method.unwrap_or("").to_string(),
                path: path.to_string(),
                query: query.to_string(),
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect(),
                http10: req.version == Some(0),
            };
            Ok(Some((head, n)))
        }
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(_) => Err(HeadError::Malformed),
    }
}

impl RequestHead {
    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a header holds `token` in its comma-separated list, ignoring case.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// A query parameter, percent-decoded; the first occurrence wins.
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == key).then(|| percent_decode(v))
        })
    }

    /// Whether this is a WebSocket upgrade request (`Connection: upgrade` + `Upgrade: websocket`).
    pub fn is_websocket_upgrade(&self) -> bool {
        self.header_has_token("connection", "upgrade")
            && self
                .header("upgrade")
                .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
    }

    /// Whether the client wants the connection kept open after the response.
    pub fn keep_alive(&self) -> bool {
        if self.http10 {
            self.header_has_token("connection", "keep-alive")
        } else {
            !self.header_has_token("connection", "close")
        }
    }
}

/// Decodes `%xx` escapes and `+` (as a space), as URLSearchParams does.
pub fn percent_decode(s: &str) -> String {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The reason phrase of the statuses shardio sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Encodes a complete response with a `Content-Length` body.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"GET /socket.io/?EIO=4&transport=websocket&t=N%20x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\nrest";

    #[test]
    fn parses_a_head_and_reports_its_length() {
        let (head, n) = parse_head(REQ, 8192).unwrap().unwrap();
        assert_eq!(&REQ[n..], b"rest");
        assert_eq!(head.method, "GET");
        assert_eq!(head.path, "/socket.io/");
        assert_eq!(head.query_param("EIO").as_deref(), Some("4"));
        assert_eq!(head.query_param("t").as_deref(), Some("N x"));
        assert_eq!(head.query_param("sid"), None);
        assert_eq!(head.header("host"), Some("a"));
        assert!(head.is_websocket_upgrade());
        assert!(head.keep_alive());
    }

    #[test]
    fn partial_and_oversized_heads() {
        assert_eq!(parse_head(&REQ[..20], 8192), Ok(None));
        assert_eq!(parse_head(&REQ[..20], 10), Err(HeadError::TooLarge));
        assert_eq!(parse_head(REQ, 40), Err(HeadError::TooLarge));
        assert_eq!(
            parse_head(b"\x00\x01garbage\r\n\r\n", 8192),
            Err(HeadError::Malformed)
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("%é1"), "%é1");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn encodes_responses() {
        let r = response(400, &[("Content-Type", "application/json")], b"{}");
        assert_eq!(
            r,
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
    }
}
