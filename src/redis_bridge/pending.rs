//! The bridge's requests in flight, both ways, and what is owed when each ends. Pure
//! bookkeeping: the bridge feeds it events and carries out the [`Due`] actions it returns.
//!
//! * Inbound: another server asked (fetch sockets, all rooms, server-side emit with ack,
//!   broadcast with ack); the shards answer, the bridge answers Redis exactly once.
//! * Outbound: a shard asked the cluster; the other servers answer through Redis, the bridge
//!   answers the shard exactly once.
//!
//! Both maps are bounded by [`MAX_PENDING`]: past it a new request is refused at once (an
//! outbound one is answered as incomplete, an inbound one is left unanswered, as a server that
//! is down would leave it).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::bus::cluster::{Answer, Tally};
use crate::protocol::socketio::Payload;

/// Requests in flight each way, at most.
pub(crate) const MAX_PENDING: usize = 4096;

/// What an inbound request collects from the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InboundKind {
    FetchSockets,
    AllRooms,
    /// One shard runs the handler and answers once.
    ServerSideEmit,
}

/// A request from another server, answered by the shards of this process.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub ns: usize,
    pub request_id: String,
    pub kind: InboundKind,
    pub tally: Tally<Answer>,
    pub deadline: Instant,
}

/// A broadcast with acks from another server: one client count, then each client's ack.
#[derive(Debug)]
pub(crate) struct InboundAck {
    pub ns: usize,
    pub request_id: String,
    /// The shards' client counts, summed.
    pub counts: Tally<u64>,
    /// Whether the one BROADCAST_CLIENT_COUNT went out.
    pub counted: bool,
    /// When the count goes out even if a shard did not report.
    pub count_deadline: Instant,
    /// When late acks stop being forwarded.
    pub deadline: Instant,
}

/// What a shard's request to the cluster waits for.
#[derive(Debug)]
pub(crate) enum OutboundKind {
    /// Answers to merge (fetch sockets, all rooms, server-side emit acks).
    Ask(Tally<Answer>),
    /// Client counts of a broadcast with acks, reported to the origin once all are in; the
    /// acks themselves are forwarded as they come.
    BroadcastAck { counts: Tally<u64>, reported: bool },
}

/// A request of shard `origin` (its query or collector `id`) to the other servers.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub ns: usize,
    pub origin: usize,
    pub id: u64,
    pub kind: OutboundKind,
    /// When it was published: the round trip is measured from here.
    pub started: Instant,
    pub deadline: Instant,
}

/// What the bridge must do now.
#[derive(Debug)]
pub(crate) enum Due {
    /// Answer an inbound request on Redis (`answer` merged from the shards).
    Respond {
        ns: usize,
        request_id: String,
        kind: InboundKind,
        answer: Answer,
    },
    /// Send the one BROADCAST_CLIENT_COUNT of an inbound broadcast with acks.
    ClientCount {
        ns: usize,
        request_id: String,
        count: u64,
    },
    /// Answer shard `origin`'s query `id`, `took` after it was published.
    Answer {
        ns: usize,
        origin: usize,
        id: u64,
        answer: Answer,
        whole: bool,
        took: Duration,
    },
    /// Report the other servers' client count of shard `origin`'s broadcast `id`, `took`
    /// after it was published.
    AckCount {
        ns: usize,
        origin: usize,
        id: u64,
        count: u64,
        took: Duration,
    },
}

/// Every request in flight.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// By the id the shards were given.
    inbound: HashMap<u64, Inbound>,
    inbound_acks: HashMap<u64, InboundAck>,
    /// By the request id published to Redis.
    outbound: HashMap<String, Outbound>,
}

impl Pending {
    pub(crate) fn has_room(&self) -> bool {
        self.inbound.len() + self.inbound_acks.len() < MAX_PENDING
            && self.outbound.len() < MAX_PENDING
    }

    pub(crate) fn add_inbound(&mut self, id: u64, req: Inbound) -> Option<Due> {
        self.inbound.insert(id, req);
        self.inbound_due(id)
    }

    pub(crate) fn add_inbound_ack(&mut self, id: u64, req: InboundAck) -> Option<Due> {
        self.inbound_acks.insert(id, req);
        self.inbound_ack_due(id)
    }

    pub(crate) fn add_outbound(&mut self, request_id: String, req: Outbound) {
        self.outbound.insert(request_id, req);
    }

    /// Whether `request_id` is one of this bridge's requests in flight.
    pub(crate) fn knows(&self, request_id: &str) -> bool {
        self.outbound.contains_key(request_id)
    }

    /// A shard's answer to inbound request `id`.
    pub(crate) fn shard_answered(&mut self, id: u64, answer: Answer) -> Option<Due> {
        let req = self.inbound.get_mut(&id)?;
        req.tally.add(true, |acc| acc.merge(answer));
        self.inbound_due(id)
    }

    /// A shard's client count for inbound broadcast `id`.
    pub(crate) fn shard_counted(&mut self, id: u64, count: usize) -> Option<Due> {
        let req = self.inbound_acks.get_mut(&id)?;
        req.counts.add(true, |acc| *acc += count as u64);
        self.inbound_ack_due(id)
    }

    /// Where a client's ack to inbound broadcast `id` goes: (namespace, request id).
    pub(crate) fn inbound_ack_target(&self, id: u64) -> Option<(usize, &str)> {
        self.inbound_acks
            .get(&id)
            .map(|r| (r.ns, r.request_id.as_str()))
    }

    /// How many other servers received outbound request `request_id` (the publisher learnt it
    /// from Redis); `None` when the publish failed.
    pub(crate) fn servers_known(&mut self, request_id: &str, others: Option<usize>) -> Option<Due> {
        let req = self.outbound.get_mut(request_id)?;
        let Some(others) = others else {
            // Nobody can answer a request that was not published.
            return self.outbound_due(request_id, true);
        };
        match &mut req.kind {
            OutboundKind::Ask(tally) => tally.set_expected(others),
            OutboundKind::BroadcastAck { counts, .. } => counts.set_expected(others),
        }
        self.outbound_due(request_id, false)
    }

    /// Another server's answer to outbound request `request_id`.
    pub(crate) fn server_answered(&mut self, request_id: &str, answer: Answer) -> Option<Due> {
        let req = self.outbound.get_mut(request_id)?;
        let OutboundKind::Ask(tally) = &mut req.kind else {
            return None;
        };
        tally.add(true, |acc| acc.merge(answer));
        self.outbound_due(request_id, false)
    }

    /// Another server's client count for outbound broadcast `request_id`.
    pub(crate) fn server_counted(&mut self, request_id: &str, count: u64) -> Option<Due> {
        let req = self.outbound.get_mut(request_id)?;
        let OutboundKind::BroadcastAck { counts, .. } = &mut req.kind else {
            return None;
        };
        counts.add(true, |acc| *acc += count);
        self.outbound_due(request_id, false)
    }

    /// The origin of outbound broadcast `request_id`: (namespace, shard, collector id).
    pub(crate) fn outbound_ack_target(&self, request_id: &str) -> Option<(usize, usize, u64)> {
        let req = self.outbound.get(request_id)?;
        matches!(req.kind, OutboundKind::BroadcastAck { .. })
            .then_some((req.ns, req.origin, req.id))
    }

    /// Ends everything whose time is up, with what it has.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Due> {
        let mut due = Vec::new();
        let late: Vec<u64> = self
            .inbound
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(r) = self.inbound.remove(&id) {
                due.push(respond(r));
            }
        }
        for r in self.inbound_acks.values_mut() {
            if !r.counted && r.count_deadline <= now {
                r.counted = true;
                due.push(client_count(r));
            }
        }
        self.inbound_acks.retain(|_, r| r.deadline > now);
        let late: Vec<String> = self
            .outbound
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in late {
            due.extend(self.outbound_due(&id, true));
        }
        due
    }

    /// Ends every outbound request at once (Redis is gone: no answer can come).
    pub(crate) fn fail_outbound(&mut self) -> Vec<Due> {
        let ids: Vec<String> = self.outbound.keys().cloned().collect();
        ids.iter()
            .filter_map(|id| self.outbound_due(id, true))
            .collect()
    }

    /// The earliest deadline, for the bridge's timer.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let inbound = self.inbound.values().map(|r| r.deadline);
        let acks = self.inbound_acks.values().map(|r| {
            if r.counted {
                r.deadline
            } else {
                r.count_deadline.min(r.deadline)
            }
        });
        let outbound = self.outbound.values().map(|r| r.deadline);
        inbound.chain(acks).chain(outbound).min()
    }

    fn inbound_due(&mut self, id: u64) -> Option<Due> {
        if !self.inbound.get(&id)?.tally.is_done() {
            return None;
        }
        self.inbound.remove(&id).map(respond)
    }

    fn inbound_ack_due(&mut self, id: u64) -> Option<Due> {
        let r = self.inbound_acks.get_mut(&id)?;
        if r.counted || !r.counts.is_done() {
            return None;
        }
        r.counted = true;
        Some(client_count(r))
    }

    /// What outbound request `request_id` owes its shard now; `ending` when it must end
    /// whatever it has (deadline, Redis lost).
    fn outbound_due(&mut self, request_id: &str, ending: bool) -> Option<Due> {
        let req = self.outbound.get_mut(request_id)?;
        let (ns, origin, id) = (req.ns, req.origin, req.id);
        let took = req.started.elapsed();
        match &mut req.kind {
            OutboundKind::Ask(tally) => {
                if !ending && !tally.is_done() {
                    return None;
                }
                let whole = tally.is_whole();
                let answer = std::mem::replace(&mut tally.acc, Answer::Acks(Vec::new()));
                self.outbound.remove(request_id);
                Some(Due::Answer {
                    ns,
                    origin,
                    id,
                    answer,
                    whole,
                    took,
                })
            }
            OutboundKind::BroadcastAck { counts, reported } => {
                let report = !*reported && (ending || counts.is_done());
                *reported |= report;
                let count = counts.acc;
                if ending {
                    self.outbound.remove(request_id);
                }
                report.then_some(Due::AckCount {
                    ns,
                    origin,
                    id,
                    count,
                    took,
                })
            }
        }
    }
}

fn respond(r: Inbound) -> Due {
    Due::Respond {
        ns: r.ns,
        request_id: r.request_id,
        kind: r.kind,
        answer: r.tally.acc,
    }
}

fn client_count(r: &InboundAck) -> Due {
    Due::ClientCount {
        ns: r.ns,
        request_id: r.request_id.clone(),
        count: r.counts.acc,
    }
}

/// The first ack of a server-side emit, Node forwards only one value per server.
pub(crate) fn first_ack(answer: Answer) -> Option<Payload> {
    match answer {
        Answer::Acks(acks) => acks.into_iter().next(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::cluster::SocketInfo;

    fn outbound(kind: OutboundKind, deadline: Instant) -> Outbound {
        Outbound {
            ns: 0,
            origin: 1,
            id: 4,
            kind,
            started: deadline - Duration::from_secs(5),
            deadline,
        }
    }

    fn ask(deadline: Instant) -> Outbound {
        outbound(
            OutboundKind::Ask(Tally::new(Answer::Rooms(Vec::new()), None)),
            deadline,
        )
    }

    fn broadcast(deadline: Instant) -> Outbound {
        let kind = OutboundKind::BroadcastAck {
            counts: Tally::new(0, None),
            reported: false,
        };
        outbound(kind, deadline)
    }

    fn inbound_ack(now: Instant) -> InboundAck {
        InboundAck {
            ns: 0,
            request_id: "b".into(),
            counts: Tally::new(0, Some(2)),
            counted: false,
            count_deadline: now + Duration::from_millis(100),
            deadline: now + Duration::from_secs(1),
        }
    }

    fn socket_ids(answer: &Answer) -> Vec<&str> {
        match answer {
            Answer::Sockets(s) => s.iter().map(|s| s.id.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    fn info(id: &str) -> SocketInfo {
        SocketInfo {
            id: id.into(),
            handshake: serde_json::Value::Null,
            rooms: vec![id.into()],
            data: serde_json::json!({}),
            location: None,
        }
    }

    #[test]
    fn an_inbound_fetch_answers_once_when_every_shard_answered() {
        let now = Instant::now();
        let mut p = Pending::default();
        let req = Inbound {
            ns: 0,
            request_id: "r1".into(),
            kind: InboundKind::FetchSockets,
            tally: Tally::new(Answer::Sockets(Vec::new()), Some(2)),
            deadline: now + Duration::from_secs(1),
        };
        assert!(p.add_inbound(7, req).is_none());
        assert!(p
            .shard_answered(7, Answer::Sockets(vec![info("a")]))
            .is_none());
        let Some(Due::Respond {
            request_id, answer, ..
        }) = p.shard_answered(7, Answer::Sockets(vec![info("b")]))
        else {
            panic!("the second answer completes it");
        };
        assert_eq!(request_id, "r1");
        assert_eq!(socket_ids(&answer), ["a", "b"]);
        assert!(
            p.shard_answered(7, Answer::Sockets(Vec::new())).is_none(),
            "answered once"
        );
        assert!(p.next_deadline().is_none());
    }

    #[test]
    fn an_inbound_fetch_answers_with_what_it_has_at_its_deadline() {
        let now = Instant::now();
        let mut p = Pending::default();
        let req = Inbound {
            ns: 0,
            request_id: "r".into(),
            kind: InboundKind::AllRooms,
            tally: Tally::new(Answer::Rooms(Vec::new()), Some(3)),
            deadline: now + Duration::from_millis(10),
        };
        p.add_inbound(1, req);
        p.shard_answered(1, Answer::Rooms(vec!["x".into()]));
        assert!(p.expire(now).is_empty());
        let due = p.expire(now + Duration::from_millis(10));
        assert!(matches!(&due[..], [Due::Respond { answer: Answer::Rooms(r), .. }] if r == &["x"]));
    }

    #[test]
    fn a_broadcast_from_another_server_counts_once_even_when_no_client_got_it() {
        let now = Instant::now();
        let mut p = Pending::default();
        assert!(p.add_inbound_ack(5, inbound_ack(now)).is_none());
        assert!(p.shard_counted(5, 0).is_none());
        assert!(matches!(
            p.shard_counted(5, 0),
            Some(Due::ClientCount { count: 0, .. })
        ));
        assert!(
            p.expire(now + Duration::from_millis(200)).is_empty(),
            "counted once"
        );
        assert_eq!(
            p.inbound_ack_target(5),
            Some((0, "b")),
            "acks still forwarded"
        );
        p.expire(now + Duration::from_secs(1));
        assert_eq!(p.inbound_ack_target(5), None);
    }

    #[test]
    fn a_shard_that_never_counts_does_not_keep_the_count_from_going_out() {
        let now = Instant::now();
        let mut p = Pending::default();
        p.add_inbound_ack(5, inbound_ack(now));
        p.shard_counted(5, 3);
        let due = p.expire(now + Duration::from_millis(100));
        assert!(matches!(&due[..], [Due::ClientCount { count: 3, .. }]));
    }

    #[test]
    fn an_outbound_ask_completes_once_every_other_server_answered() {
        let now = Instant::now();
        let mut p = Pending::default();
        let kind = OutboundKind::Ask(Tally::new(Answer::Sockets(Vec::new()), None));
        p.add_outbound("q".into(), outbound(kind, now + Duration::from_secs(5)));
        // An answer may come before the publisher reports how many servers got the request.
        assert!(p
            .server_answered("q", Answer::Sockets(vec![info("n1")]))
            .is_none());
        let Some(Due::Answer {
            origin,
            id,
            answer,
            whole,
            ..
        }) = p.servers_known("q", Some(1))
        else {
            panic!("one other server, and it answered");
        };
        assert_eq!((origin, id, whole), (1, 4, true));
        assert_eq!(socket_ids(&answer), ["n1"]);
        assert!(p
            .server_answered("q", Answer::Sockets(Vec::new()))
            .is_none());
    }

    #[test]
    fn outbound_requests_end_incomplete_when_redis_is_lost_or_time_is_up() {
        let now = Instant::now();
        let mut p = Pending::default();
        for (key, deadline) in [("a", 1), ("b", 60)] {
            p.add_outbound(key.into(), ask(now + Duration::from_secs(deadline)));
        }
        p.servers_known("a", Some(2));
        let due = p.expire(now + Duration::from_secs(1));
        assert!(matches!(&due[..], [Due::Answer { whole: false, .. }]));
        let due = p.fail_outbound();
        assert!(matches!(&due[..], [Due::Answer { whole: false, .. }]));
        assert!(p.next_deadline().is_none());
    }

    #[test]
    fn an_outbound_broadcast_reports_the_other_servers_count_once() {
        let now = Instant::now();
        let mut p = Pending::default();
        p.add_outbound("b".into(), broadcast(now + Duration::from_secs(1)));
        assert!(p.servers_known("b", Some(2)).is_none());
        assert!(p.server_counted("b", 2).is_none());
        assert!(matches!(
            p.server_counted("b", 1),
            Some(Due::AckCount {
                count: 3,
                origin: 1,
                id: 4,
                ..
            })
        ));
        assert_eq!(
            p.outbound_ack_target("b"),
            Some((0, 1, 4)),
            "acks still routed"
        );
        assert!(
            p.expire(now + Duration::from_secs(1)).is_empty(),
            "reported once"
        );
        assert_eq!(p.outbound_ack_target("b"), None);
    }

    #[test]
    fn a_failed_publish_ends_a_request_at_once() {
        let now = Instant::now();
        let mut p = Pending::default();
        p.add_outbound("b".into(), broadcast(now + Duration::from_secs(1)));
        assert!(matches!(
            p.servers_known("b", None),
            Some(Due::AckCount { count: 0, .. })
        ));
        p.add_outbound("q".into(), ask(now + Duration::from_secs(1)));
        assert!(matches!(
            p.servers_known("q", None),
            Some(Due::Answer { whole: false, .. })
        ));
    }
}
