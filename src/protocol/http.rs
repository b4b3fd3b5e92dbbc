//! HTTP/1.1 request heads and simple responses. Pure: bytes in, values out.

use thiserror::Error;

use super::engineio::HandshakeError;

/// A parsed request head. Header names are lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, as sent.
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// The headers in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// HTTP/1.0 closes the connection after the response unless asked otherwise.
    pub http10: bool,
}

/// Why a request head was refused; answered with [`Refusal::Head`], then the connection closes.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP/1.x, or a body framing that cannot be trusted (RFC 9112 §6.1: both
    /// `Content-Length` and `Transfer-Encoding`, or a coding other than `chunked`); answered 400.
    #[error("malformed request head")]
    Malformed,
    /// The head has more bytes or header lines than the configured limits; answered 431.
    #[error("request head too large")]
    TooLarge,
}

/// Why a request body could not be read.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the limit: refused before it is read; the connection cannot be reused.
    #[error("request body too large")]
    TooLarge,
    /// Framing that cannot be read (bad length, bad chunks): refused, the connection closes.
    #[error("malformed request body")]
    Malformed,
    /// The client closed the connection, or stalled past the idle timeout, mid-body.
    #[error("connection closed during the request body")]
    Closed,
    /// The body did not arrive in full within the body deadline (`--body-timeout`), however
    /// steadily it trickled; answered 408, the connection closes.
    #[error("request body not complete within the body timeout")]
    TimedOut,
}

impl From<ChunkedError> for BodyError {
    fn from(e: ChunkedError) -> Self {
        match e {
            ChunkedError::TooLarge => BodyError::TooLarge,
            ChunkedError::Malformed => BodyError::Malformed,
        }
    }
}

/// Every way shardio refuses an HTTP request. [`Refusal::status`] is the one place that
/// decides the status of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The head does not parse, or is over the size limit.
    Head(HeadError),
    /// The head did not arrive within the head timeout.
    HeadTimeout,
    /// No endpoint serves the path.
    NotFound,
    /// Engine.IO refused the request (Node's `code` and `message` go in the body).
    EngineIo(HandshakeError),
    /// The request body could not be read.
    Body(BodyError),
    /// A polling request that breaks the transport's rules (overlapping requests, binary
    /// content): the session ends.
    PollingMisuse,
    /// A polling request with a method other than GET or POST; the session lives on.
    PollingMethod,
    /// The shard that owns the session cannot take the request now (its inbox is full, or it
    /// is stopping); the client may retry.
    OwnerBusy,
    /// The request's `Origin` is not on the allow-list (`--allowed-origin`).
    OriginNotAllowed,
    /// An API request without a valid `Authorization: Bearer` key.
    Unauthorized,
    /// A route that exists, asked with a method it does not take.
    MethodNotAllowed,
    /// An API request whose body is not the JSON the route takes.
    InvalidRequest,
    /// A handshake over a limit of the process; the client may retry later.
    Overloaded(Overload),
    /// `/readyz` while the server should not get traffic (draining, or its Redis away).
    NotReady,
}

/// Which limit of the process a refused handshake is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overload {
    /// `--max-connections`: the process holds as many sessions as it may.
    Connections,
    /// `--max-handshakes-per-second`: the process opened as many sessions as it may this second.
    HandshakeRate,
}

impl From<HandshakeError> for Refusal {
    fn from(err: HandshakeError) -> Self {
        Refusal::EngineIo(err)
    }
}

impl Refusal {
    /// The HTTP status of the refusal, as Node's engine.io answers where it has an answer.
    pub fn status(self) -> u16 {
        match self {
            Refusal::Head(HeadError::Malformed) => 400,
            Refusal::Head(HeadError::TooLarge) => 431,
            Refusal::HeadTimeout => 408,
            Refusal::NotFound => 404,
            Refusal::EngineIo(HandshakeError::Forbidden) => 403,
            Refusal::EngineIo(_) => 400,
            Refusal::Body(BodyError::TooLarge) => 413,
            Refusal::Body(BodyError::Malformed | BodyError::Closed) => 400,
            Refusal::Body(BodyError::TimedOut) => 408,
            Refusal::PollingMisuse => 400,
            // Node's polling transport answers any other method 500.
            Refusal::PollingMethod => 500,
            Refusal::OwnerBusy | Refusal::Overloaded(_) | Refusal::NotReady => 503,
            Refusal::OriginNotAllowed => 403,
            Refusal::Unauthorized => 401,
            Refusal::MethodNotAllowed => 405,
            Refusal::InvalidRequest => 400,
        }
    }

    /// The Engine.IO error a polling client is told in Node's JSON body, if the refusal is one:
    /// Engine.IO's own, and a disallowed Origin (Node's `Forbidden`).
    pub fn engineio_error(self) -> Option<HandshakeError> {
        match self {
            Refusal::EngineIo(err) => Some(err),
            Refusal::OriginNotAllowed => Some(HandshakeError::Forbidden),
            _ => None,
        }
    }

    /// The status of the refusal of a WebSocket upgrade request: Node's `abortUpgrade` answers
    /// 400 whatever Engine.IO's reason.
    pub fn upgrade_status(self) -> u16 {
        match self {
            Refusal::EngineIo(_) => 400,
            other => other.status(),
        }
    }
}

/// Header slots parsed on the stack (the default `--max-headers`; 3.2 KB, under a page, so the
/// frame needs no stack probe); a larger `max_headers` parses into the heap.
const STACK_HEADERS: usize = crate::config::defaults::MAX_HEADERS;

/// Parses a request head from the start of `buf`: at most `max_head` bytes and `max_headers`
/// header lines, or [`HeadError::TooLarge`]. `Ok(None)` means more bytes are needed;
/// `Ok(Some((head, n)))` means the head took the first `n` bytes.
pub fn parse_head(
    buf: &[u8],
    max_head: usize,
    max_headers: usize,
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    use std::mem::MaybeUninit;
    if max_headers <= STACK_HEADERS {
        let mut slots = [const { MaybeUninit::uninit() }; STACK_HEADERS];
        parse_head_into(buf, max_head, &mut slots[..max_headers])
    } else {
        let mut slots = Vec::new();
        slots.resize_with(max_headers, MaybeUninit::uninit);
        parse_head_into(buf, max_head, &mut slots)
    }
}

fn parse_head_into<'b>(
    buf: &'b [u8],
    max_head: usize,
    slots: &mut [std::mem::MaybeUninit<httparse::Header<'b>>],
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, slots) {
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

/// How a request's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no `Content-Length`, or `Content-Length: 0`).
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl RequestHead {
    /// How the body of this request is delimited. A transfer coding other than `chunked`, a
    /// `Content-Length` that is not a number (or disagrees with a second one), or both a
    /// `Transfer-Encoding` and a `Content-Length` (the shape of request smuggling: a proxy in
    /// front may have framed the body the other way; RFC 9112 §6.1) is malformed.
    pub fn body_framing(&self) -> Result<BodyFraming, HeadError> {
        if let Some(te) = self.header("transfer-encoding") {
            if self.header("content-length").is_some() {
                return Err(HeadError::Malformed);
            }
            // Only `chunked` alone is understood; anything else could not be framed safely.
            return if te.trim().eq_ignore_ascii_case("chunked") {
                Ok(BodyFraming::Chunked)
            } else {
                Err(HeadError::Malformed)
            };
        }
        let mut length = None;
        for (_, value) in self.headers.iter().filter(|(n, _)| n == "content-length") {
            let value = value.trim();
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HeadError::Malformed);
            }
            let n: u64 = value.parse().map_err(|_| HeadError::Malformed)?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Malformed);
            }
            length = Some(n);
        }
        Ok(match length {
            None | Some(0) => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
        })
    }
}

/// Why a chunked body could not be decoded.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// The chunk framing is broken; answer 400 and close the connection.
    #[error("malformed chunked body")]
    Malformed,
    /// The decoded body would pass the limit; answer 413 and close the connection.
    #[error("chunked body too large")]
    TooLarge,
}

/// Longest chunk extension or trailer section accepted, in bytes: they are skipped, never
/// stored, but a peer must not keep a request open forever by sending them.
const MAX_CHUNK_METADATA: usize = 8 * 1024;

/// An incremental decoder of a `Transfer-Encoding: chunked` body (RFC 9112 §7.1). Feed it the
/// bytes as they arrive; it appends the data to the caller's buffer, never more than `limit`
/// bytes in all, and skips extensions and trailers.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    limit: usize,
    decoded: usize,
    /// Bytes of extensions and trailers skipped so far.
    metadata: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size; `digits` so far.
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size: optional whitespace, then `;extension` or CR.
    SizeEnd {
        size: u64,
    },
    /// Skipping a chunk extension up to CR.
    Extension {
        size: u64,
    },
    /// Expecting the LF that ends the size line.
    SizeLf {
        size: u64,
    },
    /// Copying chunk data.
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// Inside a trailer line, up to its CR.
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

impl ChunkedDecoder {
    /// A decoder of a body of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        ChunkedDecoder {
            state: ChunkState::Size { size: 0, digits: 0 },
            limit,
            decoded: 0,
            metadata: 0,
        }
    }

    /// Whether the last chunk and the trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`, appending body data to `out`. Returns how many bytes of `input`
    /// were used: all of them unless the body ended, in which case the rest belongs to the
    /// next request.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkedError> {
        use ChunkState::*;
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                Done => return Ok(i),
                Size { size, digits } => match hex_digit(b) {
                    Some(d) if digits < 16 => Size {
                        size: size << 4 | u64::from(d),
                        digits: digits + 1,
                    },
                    Some(_) => return Err(ChunkedError::Malformed),
                    None if digits == 0 => return Err(ChunkedError::Malformed),
                    None => {
                        // Re-read this byte as the end of the size.
                        self.state = SizeEnd { size };
                        continue;
                    }
                },
                SizeEnd { size } => match b {
                    b' ' | b'\t' => SizeEnd { size },
                    b';' => Extension { size },
                    b'\r' => SizeLf { size },
                    _ => return Err(ChunkedError::Malformed),
                },
                Extension { size } => {
                    self.skip_metadata()?;
                    if b == b'\r' {
                        SizeLf { size }
                    } else {
                        Extension { size }
                    }
                }
                SizeLf { size } => match (b, size) {
                    (b'\n', 0) => TrailerStart,
                    (b'\n', size) => {
                        if size > (self.limit - self.decoded) as u64 {
                            return Err(ChunkedError::TooLarge);
                        }
                        Data { left: size }
                    }
                    _ => return Err(ChunkedError::Malformed),
                },
                Data { left } => {
                    // Bounded by the limit check on the size line.
                    let n = (left as usize).min(input.len() - i);
                    out.extend_from_slice(&input[i..i + n]);
                    self.decoded += n;
                    i += n;
                    let left = left - n as u64;
                    self.state = if left == 0 { DataCr } else { Data { left } };
                    continue;
                }
                DataCr if b == b'\r' => DataLf,
                DataLf if b == b'\n' => Size { size: 0, digits: 0 },
                DataCr | DataLf => return Err(ChunkedError::Malformed),
                TrailerStart if b == b'\r' => FinalLf,
                TrailerStart | TrailerLine => {
                    self.skip_metadata()?;
                    if b == b'\r' {
                        TrailerLf
                    } else {
                        TrailerLine
                    }
                }
                TrailerLf if b == b'\n' => TrailerStart,
                FinalLf if b == b'\n' => Done,
                TrailerLf | FinalLf => return Err(ChunkedError::Malformed),
            };
            i += 1;
        }
        Ok(i)
    }

    fn skip_metadata(&mut self) -> Result<(), ChunkedError> {
        self.metadata += 1;
        if self.metadata > MAX_CHUNK_METADATA {
            Err(ChunkedError::Malformed)
        } else {
            Ok(())
        }
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
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
            b'%' if i + 2 < bytes.len() => match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
            {
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

/// The reason phrase of the statuses shardio sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
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
    let mut out = head_with_room(status, headers, body.len(), body.len());
    out.extend_from_slice(body);
    out
}

/// Encodes the head of a response whose body of `content_length` bytes is not sent: the
/// answer to a HEAD request, or a 304 (RFC 9110 §9.3.2, §15.4.5).
pub fn response_head(status: u16, headers: &[(&str, &str)], content_length: usize) -> Vec<u8> {
    head_with_room(status, headers, content_length, 0)
}

/// A response head, in a buffer with room for `room` more bytes.
fn head_with_room(
    status: u16,
    headers: &[(&str, &str)],
    content_length: usize,
    room: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + room);
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {content_length}\r\n\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_nodes_statuses() {
        let cases = [
            (Refusal::Head(HeadError::Malformed), 400),
            (Refusal::Head(HeadError::TooLarge), 431),
            (Refusal::HeadTimeout, 408),
            (Refusal::NotFound, 404),
            (Refusal::EngineIo(HandshakeError::Forbidden), 403),
            (Refusal::EngineIo(HandshakeError::UnknownSid), 400),
            (Refusal::Body(BodyError::TooLarge), 413),
            (Refusal::Body(BodyError::Closed), 400),
            (Refusal::Body(BodyError::TimedOut), 408),
            (Refusal::Overloaded(Overload::Connections), 503),
            (Refusal::Overloaded(Overload::HandshakeRate), 503),
            (Refusal::PollingMisuse, 400),
            (Refusal::PollingMethod, 500),
            (Refusal::OwnerBusy, 503),
            (Refusal::OriginNotAllowed, 403),
            (Refusal::Unauthorized, 401),
            (Refusal::MethodNotAllowed, 405),
            (Refusal::InvalidRequest, 400),
        ];
        for (refusal, status) in cases {
            assert_eq!(refusal.status(), status, "{refusal:?}");
            assert_ne!(reason(status), "Unknown", "{status} has a reason phrase");
        }
        assert_eq!(
            Refusal::EngineIo(HandshakeError::Forbidden).upgrade_status(),
            400
        );
        assert_eq!(Refusal::OwnerBusy.upgrade_status(), 503);
        assert_eq!(Refusal::OriginNotAllowed.upgrade_status(), 403);
        assert_eq!(
            Refusal::Overloaded(Overload::Connections).upgrade_status(),
            503
        );
    }

    const REQ: &[u8] = b"GET /socket.io/?EIO=4&transport=websocket&t=N%20x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\nrest";

    #[test]
    fn parses_a_head_and_reports_its_length() {
        let (head, n) = parse_head(REQ, 8192, 100).unwrap().unwrap();
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
        assert_eq!(parse_head(&REQ[..20], 8192, 100), Ok(None));
        assert_eq!(parse_head(&REQ[..20], 10, 100), Err(HeadError::TooLarge));
        assert_eq!(parse_head(REQ, 40, 100), Err(HeadError::TooLarge));
        assert_eq!(
            parse_head(b"\x00\x01garbage\r\n\r\n", 8192, 100),
            Err(HeadError::Malformed)
        );
    }

    #[test]
    fn header_count_limit_on_the_stack_and_on_the_heap() {
        let head = |n: usize| {
            let mut h = "GET / HTTP/1.1\r\n".to_string();
            for i in 0..n {
                h.push_str(&format!("X-{i}: v\r\n"));
            }
            h.push_str("\r\n");
            h
        };
        for limit in [1, 100, STACK_HEADERS, STACK_HEADERS + 1, 300] {
            let (parsed, _) = parse_head(head(limit).as_bytes(), 1 << 20, limit)
                .unwrap()
                .unwrap();
            assert_eq!(parsed.headers.len(), limit);
            assert_eq!(
                parse_head(head(limit + 1).as_bytes(), 1 << 20, limit),
                Err(HeadError::TooLarge),
                "{} headers over a limit of {limit}",
                limit + 1
            );
        }
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
        // A 304 (or the answer to HEAD) says the length of the body it does not send.
        let r = response_head(304, &[("ETag", "\"1\"")], 5);
        assert_eq!(
            r,
            b"HTTP/1.1 304 Not Modified\r\nETag: \"1\"\r\nContent-Length: 5\r\n\r\n"
        );
    }

    fn head_with(headers: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: "POST".into(),
            path: "/".into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            http10: false,
        }
    }

    #[test]
    fn body_framing() {
        assert_eq!(head_with(&[]).body_framing(), Ok(BodyFraming::None));
        assert_eq!(
            head_with(&[("content-length", "0")]).body_framing(),
            Ok(BodyFraming::None)
        );
        assert_eq!(
            head_with(&[("content-length", " 12 ")]).body_framing(),
            Ok(BodyFraming::Length(12))
        );
        assert_eq!(
            head_with(&[("transfer-encoding", "Chunked")]).body_framing(),
            Ok(BodyFraming::Chunked)
        );
        for bad in [
            &[("content-length", "-1")][..],
            &[("content-length", "1e3")],
            &[("content-length", "")],
            &[("content-length", "99999999999999999999999")],
            &[("content-length", "3"), ("content-length", "4")],
            &[("transfer-encoding", "gzip, chunked")],
            // Request smuggling's shape (RFC 9112 6.1), in either order.
            &[("transfer-encoding", "chunked"), ("content-length", "3")],
            &[("content-length", "3"), ("transfer-encoding", "chunked")],
        ] {
            assert_eq!(
                head_with(bad).body_framing(),
                Err(HeadError::Malformed),
                "{bad:?}"
            );
        }
    }

    const CHUNKED: &[u8] = b"4\r\nWiki\r\n5;name=value\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";

    #[test]
    fn decodes_a_chunked_body_with_extensions_and_trailers() {
        let mut d = ChunkedDecoder::new(1000);
        let mut out = Vec::new();
        let used = d.decode(CHUNKED, &mut out).unwrap();
        assert!(d.is_done());
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(
            &CHUNKED[used..],
            b"NEXT",
            "bytes after the body are left alone"
        );
    }

    #[test]
    fn chunked_decoding_does_not_depend_on_how_bytes_arrive() {
        for split in 0..=CHUNKED.len() - 4 {
            let mut d = ChunkedDecoder::new(1000);
            let mut out = Vec::new();
            let first = d.decode(&CHUNKED[..split], &mut out).unwrap();
            assert_eq!(first, split);
            let used = d.decode(&CHUNKED[split..], &mut out).unwrap();
            assert!(d.is_done(), "split at {split}");
            assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
            assert_eq!(&CHUNKED[split + used..], b"NEXT");
        }
        // One byte at a time.
        let mut d = ChunkedDecoder::new(1000);
        let mut out = Vec::new();
        for b in &CHUNKED[..CHUNKED.len() - 4] {
            assert_eq!(d.decode(std::slice::from_ref(b), &mut out), Ok(1));
        }
        assert!(d.is_done());
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
    }

    #[test]
    fn chunked_bodies_over_the_limit_are_refused_before_copying() {
        let mut d = ChunkedDecoder::new(8);
        let mut out = Vec::new();
        assert_eq!(d.decode(b"4\r\nabcd\r\n", &mut out), Ok(9));
        assert_eq!(
            d.decode(b"5\r\nefghi\r\n", &mut out),
            Err(ChunkedError::TooLarge)
        );
        assert_eq!(out, b"abcd");
        let mut d = ChunkedDecoder::new(8);
        assert_eq!(
            d.decode(b"ffffffffffffffff\r\n", &mut Vec::new()),
            Err(ChunkedError::TooLarge)
        );
        let mut d = ChunkedDecoder::new(8);
        assert_eq!(
            d.decode(b"8\r\n12345678\r\n0\r\n\r\n", &mut Vec::new()),
            Ok(18),
            "exactly the limit is fine"
        );
        assert!(d.is_done());
    }

    #[test]
    fn malformed_chunked_bodies() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"4\nWiki",
            b"4\r\nWikiX",
            b"4\r\nWiki\rX",
            b"0\r\nX\rY",
            b"0\r\n\rX",
            b"11111111111111111\r\n",
            b"4 x\r\n",
        ] {
            let mut d = ChunkedDecoder::new(1000);
            assert_eq!(
                d.decode(bad, &mut Vec::new()),
                Err(ChunkedError::Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Endless extensions are cut off.
        let mut d = ChunkedDecoder::new(1000);
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_CHUNK_METADATA + 1));
        assert_eq!(
            d.decode(&long, &mut Vec::new()),
            Err(ChunkedError::Malformed)
        );
    }
}
