//! The operator's endpoints, served by every shard: `GET /metrics` (the counters in the
//! Prometheus text format, or OpenMetrics when the scraper asks for it), `GET /healthz` (200
//! while the process runs) and `GET /readyz` (200 when the server should get traffic, 503 with
//! the reason while it drains or while its configured Redis is away).
//!
//! With `--internal-listen` the three are on that listener and `/metrics` is not on the public
//! port; `/healthz` and `/readyz` are on both, for load balancers that check the public port.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::connection;
use crate::metrics::{Format, Metrics};
use crate::net::Stream;
use crate::protocol::http::{BodyFraming, Refusal, RequestHead};

/// The paths served here.
const METRICS: &str = "/metrics";
const HEALTHZ: &str = "/healthz";
const READYZ: &str = "/readyz";

/// Whether the process should get traffic.
#[derive(Debug)]
pub(crate) struct Health {
    draining: AtomicBool,
    /// Whether the Redis bridge runs: then the server is ready only while it is connected.
    redis: bool,
    metrics: Arc<Metrics>,
}

impl Health {
    /// The health of a server with these counters; `redis` when its bridge runs.
    pub(crate) fn new(metrics: Arc<Metrics>, redis: bool) -> Self {
        Health {
            draining: AtomicBool::new(false),
            redis,
            metrics,
        }
    }

    /// Shutdown began: `/readyz` answers 503 from now on.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// `Ok` when the server should get traffic, else why not.
    pub(crate) fn readiness(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Relaxed) {
            Err("draining")
        } else if self.redis && self.metrics.bridge().connected() == 0 {
            Err("redis unreachable")
        } else {
            Ok(())
        }
    }
}

/// The operator's endpoints on one listener of one shard.
pub(crate) struct Ops {
    health: Arc<Health>,
    /// The counters, when `/metrics` is served on this listener.
    metrics: Option<Arc<Metrics>>,
}

impl Ops {
    /// The endpoints on a listener; `metrics` when `/metrics` is served there.
    pub(crate) fn new(health: Arc<Health>, metrics: Option<Arc<Metrics>>) -> Self {
        Ops { health, metrics }
    }

    /// Whether `path` is one of the endpoints served here.
    pub(crate) fn serves(&self, path: &str) -> bool {
        path == HEALTHZ || path == READYZ || (path == METRICS && self.metrics.is_some())
    }

    /// Answers a request to one of the endpoints; returns the connection and what was read of
    /// the next request when it may carry another.
    pub(crate) async fn handle(
        &self,
        mut stream: Stream,
        head: RequestHead,
        leftover: Vec<u8>,
    ) -> Option<(Stream, Vec<u8>)> {
        // The endpoints take no body: one that came with a request is not read, and ends the
        // connection.
        let keep = head.keep_alive() && matches!(head.body_framing(), Ok(BodyFraming::None));
        let mut headers = vec![("Cache-Control", "no-store")];
        let (status, body) = if head.method != "GET" {
            headers.push(("Allow", "GET"));
            (Refusal::MethodNotAllowed.status(), Vec::new())
        } else {
            self.answer(&head, &mut headers)
        };
        if !headers.iter().any(|(name, _)| *name == "Content-Type") {
            headers.push(("Content-Type", "text/plain; charset=utf-8"));
        }
        let kept = connection::respond(&mut stream, status, headers, &body, keep).await;
        kept.then_some((stream, leftover))
    }

    /// The status and body of a GET.
    fn answer(
        &self,
        head: &RequestHead,
        headers: &mut Vec<(&str, &'static str)>,
    ) -> (u16, Vec<u8>) {
        match (head.path.as_str(), &self.metrics) {
            (METRICS, Some(metrics)) => {
                let format = Format::from_accept(head.header("accept"));
                headers.push(("Content-Type", format.content_type()));
                (200, metrics.encode(format).into_bytes())
            }
            (READYZ, _) => match self.health.readiness() {
                Ok(()) => (200, b"ready\n".to_vec()),
                Err(why) => (
                    Refusal::NotReady.status(),
                    format!("not ready: {why}\n").into_bytes(),
                ),
            },
            _ => (200, b"ok\n".to_vec()),
        }
    }
}
