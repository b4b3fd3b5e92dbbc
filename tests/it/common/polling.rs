//! A blocking HTTP/1.1 client for the polling transport: keep-alive connections, requests left
//! pending while others run, and an Engine.IO polling session on top. Every read has a timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::WAIT;

/// A response as a test sees it. Header names are lower-cased.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// How many times a header appears.
    pub(crate) fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }

    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }
}

/// One client connection; it may carry several requests.
pub(crate) struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl HttpConn {
    pub(crate) fn connect(addr: SocketAddr) -> HttpConn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        HttpConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write request");
    }

    /// A second handle on the connection, for a thread that writes while this one reads.
    pub(crate) fn writer(&self) -> TcpStream {
        self.stream.try_clone().expect("clone the stream")
    }

    /// Reads to the end of the connection (within `WAIT`) and returns what came: the server
    /// closed it, and nothing more may have been answered.
    pub(crate) fn rest_until_closed(&mut self) -> Vec<u8> {
        self.stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut rest = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return rest,
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("the server did not close the connection within {WAIT:?}")
                }
                // A reset is a close too.
                Err(_) => return rest,
            }
        }
    }

    /// Sends `METHOD target` with a body (Content-Length) and extra header lines.
    pub(crate) fn request(&mut self, method: &str, target: &str, headers: &[&str], body: &[u8]) {
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: test\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        if method == "POST" || !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.send(&bytes);
    }

    /// The next response; fails the test after `WAIT`.
    pub(crate) fn response(&mut self) -> Response {
        self.response_within(WAIT)
            .unwrap_or_else(|| panic!("no response within {WAIT:?}"))
    }

    /// The next response if it comes within `limit`.
    pub(crate) fn response_within(&mut self, limit: Duration) -> Option<Response> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some((response, used)) = parse_response(&self.buf) {
                self.buf.drain(..used);
                return Some(response);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("connection closed before a complete response"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(e) => panic!("reading a response: {e}"),
            }
        }
    }

    /// Whether the server closed the connection (reads to the end, within `WAIT`).
    pub(crate) fn is_closed_by_server(&mut self) -> bool {
        self.stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut chunk = [0u8; 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    }
}

/// A complete response at the start of `bytes` (the server always sends Content-Length).
pub(crate) fn parse_response(bytes: &[u8]) -> Option<(Response, usize)> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&bytes[..end]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()?
        .split(' ')
        .nth(1)?
        .parse()
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().expect("Content-Length"));
    if bytes.len() < end + length {
        return None;
    }
    let body = bytes[end..end + length].to_vec();
    Some((
        Response {
            status,
            headers,
            body,
        },
        end + length,
    ))
}

/// One request on a fresh connection (so, with several shards, on any of them).
pub(crate) fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[&str],
    body: &[u8],
) -> Response {
    let mut conn = HttpConn::connect(addr);
    conn.request(method, target, headers, body);
    conn.response()
}

/// An Engine.IO polling session, driven by plain HTTP requests.
pub(crate) struct PollingClient {
    pub addr: SocketAddr,
    pub path: String,
    pub sid: String,
}

impl PollingClient {
    /// Handshakes on `path` (e.g. `/engine.io/`); returns the client and the open packet JSON.
    pub(crate) fn open(addr: SocketAddr, path: &str) -> (PollingClient, serde_json::Value) {
        let r = request(
            addr,
            "GET",
            &format!("{path}?EIO=4&transport=polling"),
            &[],
            b"",
        );
        assert_eq!(
            r.status,
            200,
            "handshake: {}",
            String::from_utf8_lossy(&r.body)
        );
        let json = r.text().strip_prefix('0').expect("first packet is open");
        let open: serde_json::Value = serde_json::from_str(json).expect("open packet JSON");
        let sid = open["sid"].as_str().expect("sid").to_string();
        (
            PollingClient {
                addr,
                path: path.to_string(),
                sid,
            },
            open,
        )
    }

    /// The request target of this session's polling requests.
    pub(crate) fn target(&self) -> String {
        format!("{}?EIO=4&transport=polling&sid={}", self.path, self.sid)
    }

    /// The shard that owns this session.
    pub(crate) fn owner(&self) -> usize {
        shardio::engineio::Sid::parse(&self.sid)
            .expect("a valid sid")
            .shard()
    }

    /// A GET on a fresh connection, waited for.
    pub(crate) fn get(&self) -> Response {
        request(self.addr, "GET", &self.target(), &[], b"")
    }

    /// A GET on a fresh connection, left pending: read its response later.
    pub(crate) fn start_get(&self) -> HttpConn {
        let mut conn = HttpConn::connect(self.addr);
        conn.request("GET", &self.target(), &[], b"");
        conn
    }

    /// A GET on a fresh connection that the server holds (nothing is queued): read its
    /// response later. The check is a fixed window, since that no answer comes is the point.
    pub(crate) fn held_get(&self) -> HttpConn {
        let mut conn = self.start_get();
        assert!(
            conn.response_within(Duration::from_millis(100)).is_none(),
            "the GET must wait for packets"
        );
        conn
    }

    /// Starts a POST on a fresh connection with raw bytes after the request line: header
    /// lines, the blank line, and as much of the body as the test wants sent now.
    pub(crate) fn raw_post(&self, rest: &str) -> HttpConn {
        let mut conn = HttpConn::connect(self.addr);
        let head = format!("POST {} HTTP/1.1\r\nHost: t\r\n{rest}", self.target());
        conn.send(head.as_bytes());
        conn
    }

    /// A POST of a payload on a fresh connection.
    pub(crate) fn post(&self, payload: &str) -> Response {
        request(
            self.addr,
            "POST",
            &self.target(),
            &["Content-Type: text/plain;charset=UTF-8"],
            payload.as_bytes(),
        )
    }

    /// POSTs a payload and checks the `ok` answer.
    pub(crate) fn send(&self, payload: &str) {
        let r = self.post(payload);
        assert_eq!(
            (r.status, r.text()),
            (200, "ok"),
            "POST {payload:?} on {}",
            self.sid
        );
    }

    /// GETs and returns the payload, checking the 200.
    pub(crate) fn recv(&self) -> String {
        let r = self.get();
        assert_eq!(r.status, 200, "GET on {}: {}", self.sid, r.text());
        r.text().to_string()
    }
}
