//! HTTP/1.1 on an accepted connection, bounded in size and time: read a request head, read a
//! request body, write a response. The one writer of HTTP responses: every response shardio
//! sends goes through [`write`], with its write timeout. Knows nothing of Engine.IO; routing
//! is the shard's (`shard/router.rs`), answering is the endpoint's.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::config::LimitsConfig;
use crate::net::Stream;
use crate::protocol::http::{
    self, BodyError, BodyFraming, ChunkedDecoder, HeadError, Refusal, RequestHead,
};

/// How long writing one response may take before the connection is dropped: a client that
/// does not read must not hold a task forever.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may stall between two reads before the request is dropped.
pub(crate) const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The bounds of HTTP requests (`--max-head-bytes`, `--max-headers`, `--head-timeout`,
/// `--body-timeout`), the same on every shard.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    max_head: usize,
    max_headers: usize,
    /// How long a client has to send a request head; also bounds a TLS handshake.
    pub(crate) head_timeout: Duration,
    /// How long a request body may take in all.
    pub(crate) body_timeout: Duration,
}

impl HttpLimits {
    pub(crate) fn new(config: &LimitsConfig) -> Self {
        HttpLimits {
            max_head: config.max_head_bytes,
            max_headers: config.max_headers,
            head_timeout: config.head_timeout(),
            body_timeout: config.body_timeout(),
        }
    }
}

/// Reads one request head, starting with the bytes in `buf`. `Ok(None)`: the peer closed or
/// went idle between requests. `Err(refusal)`: answer it, then close. A head whose body
/// framing cannot be trusted (RFC 9112 §6.1) is refused here, before anyone reads the body.
pub(crate) async fn read_head(
    stream: &mut Stream,
    mut buf: Vec<u8>,
    limits: &HttpLimits,
) -> Result<Option<(RequestHead, Vec<u8>)>, Refusal> {
    let deadline = Instant::now() + limits.head_timeout;
    loop {
        if !buf.is_empty() {
            match http::parse_head(&buf, limits.max_head, limits.max_headers) {
                Ok(Some((head, used))) => {
                    head.body_framing().map_err(Refusal::Head)?;
                    return Ok(Some((head, buf.split_off(used))));
                }
                Ok(None) => {}
                Err(e @ (HeadError::Malformed | HeadError::TooLarge)) => {
                    return Err(Refusal::Head(e))
                }
            }
        }
        // Read straight into the heap buffer: no stack chunk lives in the connection's task
        // while it waits (the task of a WebSocket connection is this same future).
        buf.reserve(4096);
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
            Ok(Ok(_)) => {}
            Err(_) if buf.is_empty() => return Ok(None),
            Err(_) => return Err(Refusal::HeadTimeout),
        }
    }
}

/// Reads a request body of at most `limit` bytes, complete within `timeout`. `buf` holds what
/// was already read past the head. Returns the body and the bytes read past it (the start of
/// the next request).
pub(crate) async fn read_body(
    stream: &mut Stream,
    head: &RequestHead,
    mut buf: Vec<u8>,
    limit: usize,
    timeout: Duration,
) -> Result<(Vec<u8>, Vec<u8>), BodyError> {
    let deadline = Instant::now() + timeout;
    match head.body_framing().map_err(|_| BodyError::Malformed)? {
        BodyFraming::None => Ok((Vec::new(), buf)),
        BodyFraming::Length(n) => {
            // Refused before reading a byte of it.
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n <= limit)
                .ok_or(BodyError::TooLarge)?;
            while buf.len() < n {
                let want = n - buf.len();
                read_more(stream, &mut buf, want, deadline).await?;
            }
            let rest = buf.split_off(n);
            Ok((buf, rest))
        }
        BodyFraming::Chunked => {
            let mut decoder = ChunkedDecoder::new(limit);
            let mut body = Vec::new();
            loop {
                let used = decoder.decode(&buf, &mut body)?;
                if decoder.is_done() {
                    return Ok((body, buf.split_off(used)));
                }
                buf.clear();
                read_more(stream, &mut buf, 16 * 1024, deadline).await?;
            }
        }
    }
}

/// Appends what the socket has (at most about `want` bytes) to `buf`: `Closed` when the client
/// closed or stalled for [`BODY_IDLE_TIMEOUT`], `TimedOut` once the body's `deadline` passed.
async fn read_more(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    want: usize,
    deadline: Instant,
) -> Result<(), BodyError> {
    let now = Instant::now();
    if now >= deadline {
        return Err(BodyError::TimedOut);
    }
    buf.reserve(want.min(64 * 1024));
    let idle = now + BODY_IDLE_TIMEOUT;
    match tokio::time::timeout_at(idle.min(deadline), stream.read_buf(buf)).await {
        Ok(Ok(n)) if n > 0 => Ok(()),
        Err(_) if idle >= deadline => Err(BodyError::TimedOut),
        _ => Err(BodyError::Closed),
    }
}

/// Writes a complete response (`Content-Length` body) within [`WRITE_TIMEOUT`]. False when
/// the write failed or timed out: the connection is dead.
pub(crate) async fn write(
    stream: &mut Stream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> bool {
    let bytes = http::response(status, headers, body);
    write_raw(stream, &bytes).await
}

/// Writes a response to a request whose connection may carry another one when `keep` (else
/// the response says `Connection: close`); returns whether the connection goes on.
pub(crate) async fn respond(
    stream: &mut Stream,
    status: u16,
    mut headers: Vec<(&str, &str)>,
    body: &[u8],
    keep: bool,
) -> bool {
    if !keep {
        headers.push(("Connection", "close"));
    }
    write(stream, status, &headers, body).await && keep
}

/// Writes the head of a response whose body of `content_length` bytes is not sent (the answer
/// to a HEAD request, a 304) within [`WRITE_TIMEOUT`].
pub(crate) async fn write_head(
    stream: &mut Stream,
    status: u16,
    headers: &[(&str, &str)],
    content_length: usize,
) -> bool {
    let bytes = http::response_head(status, headers, content_length);
    write_raw(stream, &bytes).await
}

/// Writes bytes already encoded as HTTP within [`WRITE_TIMEOUT`] (the 101 of an upgrade).
pub(crate) async fn write_raw(stream: &mut Stream, bytes: &[u8]) -> bool {
    let writing = async {
        stream.write_all(bytes).await?;
        // TLS: the last record may wait in rustls; a plain socket's flush is a no-op.
        stream.flush().await
    };
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, writing).await,
        Ok(Ok(()))
    )
}

/// Answers a refusal outside any endpoint (a bad head, an unknown path): plain text, the
/// connection kept only when `keep_alive`. Returns whether the connection may go on.
pub(crate) async fn refuse(stream: &mut Stream, refusal: Refusal, keep_alive: bool) -> bool {
    let status = refusal.status();
    let headers = vec![("Content-Type", "text/plain")];
    let body = match refusal {
        Refusal::NotFound => http::reason(status).as_bytes(),
        _ => b"",
    };
    respond(stream, status, headers, body, keep_alive).await
}
