//! `api`: the `fanout` shape with a backend as the publisher: each publisher is one keep-alive
//! HTTP/1.1 connection posting `POST /api/v1/emit` (`--batch` emits per request, up to
//! `--window` requests pipelined), the subscribers are Socket.IO clients as in `fanout`. A
//! `202` answer acknowledges the request's emits. Deliveries carry the same
//! `[publisher, seq, sent_us]` data, so latency and losses are counted as for `fanout`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::sleep_until;

use super::fanout::{room_name, FanoutArgs, PubOutcome, Shared};
use crate::client::Target;

/// One backend connection publishing through the API.
pub(super) struct ApiPublisher {
    pub(super) index: usize,
    pub(super) target: Target,
    pub(super) timeout: Duration,
    pub(super) args: Arc<FanoutArgs>,
    pub(super) shared: Arc<Shared>,
    pub(super) key: String,
    /// Emits per request.
    pub(super) batch: usize,
}

/// A request in flight: when it was written, and how many emits it carries.
struct InFlight {
    sent_us: u64,
    emits: u64,
}

impl ApiPublisher {
    pub(super) async fn run(
        self,
        permits: Arc<Semaphore>,
        ready: mpsc::Sender<Result<(), &'static str>>,
        mut go: watch::Receiver<Option<Instant>>,
    ) -> PubOutcome {
        let mut out = PubOutcome::new(self.index, self.args.rooms);
        let opened = {
            let _permit = permits.acquire().await;
            tokio::time::timeout(self.timeout, TcpStream::connect(self.target.addr)).await
        };
        let mut stream = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return fail(ready, out, "connect").await,
            Err(_) => return fail(ready, out, "connect_timeout").await,
        };
        let _ = stream.set_nodelay(true);
        let _ = ready.send(Ok(())).await;
        drop(ready);
        let start = match go.wait_for(|g| g.is_some()).await {
            Ok(g) => g.unwrap_or_else(Instant::now),
            Err(_) => return out,
        };
        let mut in_flight = VecDeque::with_capacity(self.args.window);
        if let Err(kind) = self
            .publish(&mut stream, start, &mut in_flight, &mut out)
            .await
        {
            out.ended = Some(kind);
        }
        // Requests never answered, whether time ran out or the server closed the connection.
        out.unacked = in_flight.iter().map(|r| r.emits).sum();
        out
    }

    async fn publish(
        &self,
        stream: &mut TcpStream,
        start: Instant,
        in_flight: &mut VecDeque<InFlight>,
        out: &mut PubOutcome,
    ) -> Result<(), &'static str> {
        let args = &*self.args;
        let end = start + Duration::from_secs_f64(args.duration.max(0.0));
        let batch = self.batch.max(1);
        let mut room = self.index % args.rooms;
        let mut requests = 0u64;
        let mut wire = Vec::new();
        let mut read = Vec::with_capacity(16 * 1024);
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            let free = args.window - in_flight.len();
            let due = if args.rate > 0.0 {
                // --rate counts emits, as in `fanout`.
                let owed = ((now - start).as_secs_f64() * args.rate / batch as f64) as u64 + 1;
                owed.saturating_sub(requests).min(free as u64) as usize
            } else {
                free
            };
            for _ in 0..due {
                let sent_us = self.shared.now_us();
                let mut body = String::from("[");
                for i in 0..batch {
                    if i > 0 {
                        body.push(',');
                    }
                    body.push_str(&format!(
                        r#"{{"rooms":"{}","event":"{}","data":[{},{},{}]}}"#,
                        room_name(room),
                        args.event,
                        self.index,
                        out.sent[room],
                        sent_us
                    ));
                    out.sent[room] += 1;
                    room = (room + 1) % args.rooms;
                }
                body.push(']');
                wire.extend_from_slice(
                    format!(
                        "POST /api/v1/emit HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        self.target.host,
                        self.key,
                        body.len()
                    )
                    .as_bytes(),
                );
                wire.extend_from_slice(body.as_bytes());
                in_flight.push_back(InFlight {
                    sent_us,
                    emits: batch as u64,
                });
                requests += 1;
            }
            if !wire.is_empty() {
                stream.write_all(&wire).await.map_err(|_| "io")?;
                wire.clear();
            }
            let wake = if args.rate > 0.0 && in_flight.len() < args.window {
                let next = requests as f64 * batch as f64 / args.rate;
                (start + Duration::from_secs_f64(next)).min(end)
            } else {
                end
            };
            tokio::select! {
                r = stream.read_buf(&mut read) => {
                    if r.map_err(|_| "io")? == 0 {
                        return Err("closed");
                    }
                    self.take_responses(&mut read, in_flight, out)?;
                }
                _ = sleep_until(wake.into()) => {}
            }
        }
        // The answers still on their way, at most the drain time.
        let deadline = Instant::now() + Duration::from_secs_f64(args.drain.max(0.0));
        while !in_flight.is_empty() {
            match tokio::time::timeout_at(deadline.into(), stream.read_buf(&mut read)).await {
                Ok(Ok(n)) if n > 0 => self.take_responses(&mut read, in_flight, out)?,
                _ => break,
            }
        }
        Ok(())
    }

    /// Takes every complete response at the start of `read` (answers come in request order).
    fn take_responses(
        &self,
        read: &mut Vec<u8>,
        in_flight: &mut VecDeque<InFlight>,
        out: &mut PubOutcome,
    ) -> Result<(), &'static str> {
        let now = self.shared.now_us();
        let mut used = 0;
        while let Some((status, len)) = response(&read[used..])? {
            used += len;
            let request = in_flight.pop_front().ok_or("unexpected_response")?;
            out.ack_latency
                .saturating_record(now.saturating_sub(request.sent_us).max(1));
            if status == 202 {
                out.acked_ok += request.emits;
            } else {
                out.acked_error += request.emits;
            }
        }
        read.drain(..used);
        Ok(())
    }
}

/// The status and length of the complete response at the start of `buf`, if there is one.
fn response(buf: &[u8]) -> Result<Option<(u16, usize)>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut headers);
    let head = match parsed.parse(buf).map_err(|_| "bad_http")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let length: usize = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .ok_or("bad_http")?;
    let status = parsed.code.ok_or("bad_http")?;
    Ok((buf.len() >= head + length).then_some((status, head + length)))
}

async fn fail(
    ready: mpsc::Sender<Result<(), &'static str>>,
    out: PubOutcome,
    kind: &'static str,
) -> PubOutcome {
    let _ = ready.send(Err(kind)).await;
    out
}
