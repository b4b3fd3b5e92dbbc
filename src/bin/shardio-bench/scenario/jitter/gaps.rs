//! `jitter`'s account of the clients that missed messages: for each of the first few, which
//! sequence numbers it missed and the history of its connections (when, to which server, with
//! what auth, whether recovered, the first and last sequence each brought, how each ended), so
//! that a loss can be placed: at a recovery's boundary, or inside one connection.

use serde::Serialize;

/// Clients described in the report at most.
pub(crate) const MAX_CLIENTS: usize = 20;
/// Missed sequence numbers listed per client at most.
const MAX_SEQS: usize = 50;

/// One connection attempt of a client.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConnRecord {
    /// Milliseconds since the run began.
    pub at_ms: u64,
    /// The server: 0 for `--url`, 1 for `--url-b`.
    pub server: usize,
    /// The CONNECT's auth (`{"pid":..,"offset":..}`), if any.
    pub auth: Option<String>,
    /// The handshake's error, when it failed.
    pub failed: Option<&'static str>,
    /// When the CONNECT reply came (after the restore, for a recovering client).
    pub opened_ms: Option<u64>,
    pub recovered: bool,
    /// The first and last sequence number of its room that this connection brought.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Events of its room it brought (duplicates included).
    pub received: u64,
    pub ended_ms: Option<u64>,
    /// `stop`, `rst`, `stall` (told to drop) or an error kind.
    pub end: &'static str,
}

impl ConnRecord {
    pub(crate) fn new(at_ms: u64, server: usize, auth: Option<String>) -> ConnRecord {
        ConnRecord {
            at_ms,
            server,
            auth,
            failed: None,
            opened_ms: None,
            recovered: false,
            first_seq: None,
            last_seq: None,
            received: 0,
            ended_ms: None,
            end: "",
        }
    }

    /// A sequence number of its room arrived on this connection.
    pub(crate) fn saw(&mut self, seq: u64) {
        self.first_seq.get_or_insert(seq);
        self.last_seq = Some(seq);
        self.received += 1;
    }
}

/// A client that missed messages.
#[derive(Debug, Serialize)]
pub(crate) struct ClientGap {
    pub client: usize,
    pub room: usize,
    /// Its count started at this sequence number (its first join) and ran to `last` (excluded).
    pub from_seq: u64,
    pub last: u64,
    pub missing: u64,
    /// The first missed sequence numbers, and when each was published (ms since the run
    /// began).
    pub missing_seqs: Vec<u64>,
    pub missing_published_ms: Vec<Option<u64>>,
    pub connections: Vec<ConnRecord>,
}

/// The sequence numbers in `from..last` that `has` says were not received: how many, and the
/// first of them.
pub(crate) fn missing(has: impl Fn(u64) -> bool, from: u64, last: u64) -> (u64, Vec<u64>) {
    let mut count = 0;
    let mut first = Vec::new();
    for seq in (from..last).filter(|&s| !has(s)) {
        count += 1;
        if first.len() < MAX_SEQS {
            first.push(seq);
        }
    }
    (count, first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_lists_what_was_not_received_in_the_counted_range() {
        let got = [3u64, 4, 6, 9];
        let (n, seqs) = missing(|s| got.contains(&s), 3, 10);
        assert_eq!(n, 3);
        assert_eq!(seqs, vec![5, 7, 8]);
        assert_eq!(missing(|_| true, 0, 100), (0, vec![]));
        let (n, seqs) = missing(|_| false, 0, 80);
        assert_eq!(n, 80, "every one counted");
        assert_eq!(seqs.len(), MAX_SEQS, "the first ones listed");
    }

    #[test]
    fn a_connection_keeps_its_first_and_last_sequence() {
        let mut c = ConnRecord::new(5, 1, None);
        for s in [7, 8, 10] {
            c.saw(s);
        }
        assert_eq!(
            (c.first_seq, c.last_seq, c.received),
            (Some(7), Some(10), 3)
        );
    }
}
