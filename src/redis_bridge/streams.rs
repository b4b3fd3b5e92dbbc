//! `--redis-mode streams`: the Redis stream of `@socket.io/redis-streams-adapter` 0.3
//! (docs/PROTOCOL.md §4). Broadcasts and room commands are XADDed to one stream (`MAXLEN ~`);
//! a reader task on a connection of its own loops on `XREAD COUNT BLOCK` from the last entry
//! id the bridge handled, so a blocking read never stalls publishing.
//!
//! What an outage does (docs/ARCHITECTURE.md, "Streams mode"):
//!
//! * Reading resumes after the last entry the bridge handed to the shards: what was added
//!   meanwhile arrives, once, in stream order (as long as `MAXLEN ~` has not trimmed it).
//! * A stream behind the last id (Redis restarted without persistence: the stream is new and
//!   its ids started over) is read from its start; this is logged and counted as a reconnect.
//! * Entries to add while Redis is away wait in a backlog of at most `--redis-queue` entries,
//!   in order, and go out first on reconnection; past that bound they are dropped (counted).
//! * A pipeline of XADDs whose reply was lost may or may not have been applied. On
//!   reconnection the bridge counts its own entries after the last id Redis confirmed to it:
//!   that many of the unconfirmed entries are in the stream (Redis applies a pipeline in
//!   order), the rest are sent again. Nothing is added twice and nothing is dropped.

use std::cmp::Ordering;
use std::collections::VecDeque;

use super::*;
use crate::protocol::adapter::{ClusterMessage, StreamEntry};

/// Entries one XREAD returns at most (Node's `readCount`).
const READ_COUNT: usize = 100;

/// How long one XREAD blocks when nothing comes (Node's `blockTimeInMs`).
const READ_BLOCK_MS: u64 = 5000;

/// Entries one XRANGE page returns when the bridge looks for its own unconfirmed entries.
const SCAN_PAGE: usize = 1000;

/// The bridge's place in the stream and what it still has to add; it outlives connections.
#[derive(Default)]
pub(super) struct StreamState {
    /// The id of the last entry handed to the shards (or skipped, or where reading started);
    /// `None` before the first connection.
    pub(super) last_read: Option<String>,
    /// The id Redis gave this bridge's last confirmed XADD.
    pub(super) last_added: Option<String>,
    /// The last pipeline of XADDs whose reply was lost, in order.
    pub(super) unconfirmed: Vec<StreamEntry>,
    /// Entries waiting for Redis, in order.
    pub(super) backlog: VecDeque<StreamEntry>,
}

/// What the reader task tells the bridge.
pub(super) enum ReadEvent {
    /// Entries in stream order: (id, fields).
    Entries(Vec<(String, StreamEntry)>),
    /// The read connection failed; the reader has stopped.
    Lost(redis::RedisError),
}

/// Where a fresh connection starts reading, and how many unconfirmed entries it found added.
pub(super) struct Resume {
    pub(super) from: String,
    pub(super) added: usize,
}

/// An entry id `<ms>-<seq>` as numbers; `None` if it is not one.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The milliseconds part of an entry id: when Redis added it, by its clock.
fn id_millis(id: &str) -> Option<u64> {
    parse_id(id).map(|(ms, _)| ms)
}

/// Compares two entry ids; an id that does not parse sorts first.
fn cmp_ids(a: &str, b: &str) -> Ordering {
    parse_id(a).cmp(&parse_id(b))
}

fn bulk(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// One entry `[id, [field, value, ...]]` of an XRANGE or XREAD reply.
fn entry(value: &redis::Value) -> Option<(String, StreamEntry)> {
    let redis::Value::Array(parts) = value else {
        return None;
    };
    let id = bulk(parts.first()?)?;
    let mut fields = StreamEntry {
        uid: String::new(),
        nsp: String::new(),
        kind: String::new(),
        data: None,
    };
    let pairs: Vec<String> = match parts.get(1)? {
        redis::Value::Array(items) => items.iter().filter_map(bulk).collect(),
        redis::Value::Map(items) => items
            .iter()
            .flat_map(|(k, v)| [bulk(k), bulk(v)])
            .flatten()
            .collect(),
        _ => return Some((id, fields)),
    };
    for pair in pairs.chunks_exact(2) {
        let value = pair[1].clone();
        match pair[0].as_str() {
            "uid" => fields.uid = value,
            "nsp" => fields.nsp = value,
            "type" => fields.kind = value,
            "data" => fields.data = Some(value),
            _ => {}
        }
    }
    Some((id, fields))
}

/// The entries of an XRANGE reply (an array of entries).
pub(super) fn range_entries(value: &redis::Value) -> Vec<(String, StreamEntry)> {
    match value {
        redis::Value::Array(items) => items.iter().filter_map(entry).collect(),
        _ => Vec::new(),
    }
}

/// The entries of an XREAD reply for one stream: `[[key, [entries]]]` (RESP2) or
/// `{key: [entries]}` (RESP3); nil when the block timed out.
fn read_entries(value: &redis::Value) -> Vec<(String, StreamEntry)> {
    match value {
        redis::Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                redis::Value::Array(pair) => pair.get(1).map(range_entries).unwrap_or_default(),
                _ => Vec::new(),
            })
            .collect(),
        redis::Value::Map(streams) => streams.iter().flat_map(|(_, v)| range_entries(v)).collect(),
        _ => Vec::new(),
    }
}

/// The id of the stream's newest entry; `None` when the stream is empty or absent.
async fn newest_id(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> redis::RedisResult<Option<String>> {
    let reply: redis::Value = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(range_entries(&reply).into_iter().next().map(|(id, _)| id))
}

/// Prepares a fresh read connection: where to read from, and how many of `unconfirmed`
/// entries of `uid` made it into the stream after `last_added`.
pub(super) async fn resume(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    uid: &str,
    state: (&Option<String>, &Option<String>, usize),
) -> redis::RedisResult<Resume> {
    let (last_read, last_added, unconfirmed) = state;
    let newest = newest_id(conn, key).await?;
    let from = match (last_read, &newest) {
        // First connection: from now on, as Node's `$`, but as an id that survives a
        // reconnection.
        (None, Some(newest)) => newest.clone(),
        (None, None) => "0-0".to_owned(),
        (Some(last), Some(newest)) if cmp_ids(newest, last) != Ordering::Less => last.clone(),
        (Some(last), newest) => {
            tracing::warn!(
                last_read = %last,
                newest = ?newest,
                "the Redis stream is behind the last entry read (Redis restarted without its data?): reading it from the start"
            );
            "0-0".to_owned()
        }
    };
    let mut added = 0;
    if unconfirmed > 0 {
        let mut start = match last_added {
            Some(id) => format!("({id}"),
            None => "-".to_owned(),
        };
        loop {
            let reply: redis::Value = redis::cmd("XRANGE")
                .arg(key)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(SCAN_PAGE)
                .query_async(conn)
                .await?;
            let page = range_entries(&reply);
            added += page.iter().filter(|(_, e)| e.uid == uid).count();
            match page.last() {
                Some((id, _)) if page.len() == SCAN_PAGE => start = format!("({id}"),
                _ => break,
            }
        }
    }
    Ok(Resume {
        from,
        added: added.min(unconfirmed),
    })
}

/// Reads the stream from `from` until the connection fails or the bridge lets go.
pub(super) async fn read_loop(
    mut conn: redis::aio::MultiplexedConnection,
    key: String,
    mut from: String,
    events: mpsc::Sender<ReadEvent>,
) {
    loop {
        let reply: redis::RedisResult<redis::Value> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(READ_BLOCK_MS)
            .arg("STREAMS")
            .arg(&key)
            .arg(&from)
            .query_async(&mut conn)
            .await;
        let event = match reply {
            Ok(value) => {
                let entries = read_entries(&value);
                match entries.last() {
                    Some((id, _)) => from.clone_from(id),
                    None => continue,
                }
                ReadEvent::Entries(entries)
            }
            Err(e) => ReadEvent::Lost(e),
        };
        let lost = matches!(event, ReadEvent::Lost(_));
        if events.send(event).await.is_err() || lost {
            return;
        }
    }
}

/// The response timeout of the read connection: longer than a blocking read.
pub(super) fn read_timeout() -> Duration {
    Duration::from_millis(READ_BLOCK_MS) + REDIS_RESPONSE_TIMEOUT
}

impl Bridge {
    /// Queues an entry for the stream. While Redis is away (or the publisher just failed) it
    /// waits in the backlog; a full backlog, or a full publisher queue, drops it (counted).
    pub(super) fn add_to_stream(&mut self, entry: StreamEntry) {
        let Some(out) = &self.out else {
            return self.keep_for_later(entry);
        };
        match out.try_send(Outgoing::Add(entry)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(Outgoing::Add(entry))) => {
                self.keep_for_later(entry);
            }
            Err(_) => self.count_drop(),
        }
    }

    fn keep_for_later(&mut self, entry: StreamEntry) {
        let capacity = self.config.queue;
        let Some(state) = self.stream.as_mut() else {
            return;
        };
        if state.backlog.len() < capacity {
            state.backlog.push_back(entry);
        } else {
            self.count_drop();
        }
        self.count_waiting();
    }

    fn count_waiting(&self) {
        let waiting = self.stream.as_ref().map_or(0, |s| s.backlog.len());
        self.stats().set_stream_waiting(waiting);
    }

    /// The publisher failed: `unconfirmed` may be in the stream (checked on reconnection),
    /// `unsent` is not. Both go before anything queued since.
    pub(super) fn publisher_lost(
        &mut self,
        unconfirmed: Vec<StreamEntry>,
        unsent: Vec<StreamEntry>,
    ) {
        let Some(state) = self.stream.as_mut() else {
            return;
        };
        for entry in unsent.into_iter().rev() {
            state.backlog.push_front(entry);
        }
        state.unconfirmed = unconfirmed;
        self.count_waiting();
    }

    /// On a fresh connection: the unconfirmed entries Redis did not add go first, then the
    /// backlog, in order, before anything else is published.
    pub(super) fn flush_backlog(&mut self, resume: &Resume) {
        let Some(state) = self.stream.as_mut() else {
            return;
        };
        let unconfirmed = std::mem::take(&mut state.unconfirmed);
        if !unconfirmed.is_empty() {
            tracing::info!(
                unconfirmed = unconfirmed.len(),
                already_added = resume.added,
                "entries whose XADD reply was lost: the missing ones are added again"
            );
        }
        let mut pending: Vec<StreamEntry> = unconfirmed.into_iter().skip(resume.added).collect();
        pending.extend(state.backlog.drain(..));
        if !pending.is_empty() {
            tracing::info!(
                entries = pending.len(),
                "adding what was published while Redis was away"
            );
        }
        for entry in pending {
            self.add_to_stream(entry);
        }
        self.count_waiting();
    }

    /// Entries from the stream, in order: each goes to the shards, then counts as read.
    pub(super) fn on_stream_entries(&mut self, entries: Vec<(String, StreamEntry)>) {
        if let Some(added) = entries.last().and_then(|(id, _)| id_millis(id)) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            self.stats().set_stream_lag(now.saturating_sub(added));
        }
        for (id, fields) in entries {
            let bytes = fields.data.as_ref().map_or(0, String::len);
            self.stats().message_in(bytes);
            if let Some(ns) = self.ns_index(&fields.nsp) {
                match ClusterMessage::from_entry(fields) {
                    Ok(message) => self.on_cluster_message(ns, message, Some(&id)),
                    Err(e) => self.malformed(&self.config.stream, &e),
                }
            }
            if let Some(state) = self.stream.as_mut() {
                state.last_read = Some(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> redis::Value {
        redis::Value::BulkString(s.as_bytes().to_vec())
    }

    fn raw_entry(id: &str, uid: &str) -> redis::Value {
        redis::Value::Array(vec![
            bulk(id),
            redis::Value::Array(vec![
                bulk("uid"),
                bulk(uid),
                bulk("nsp"),
                bulk("/"),
                bulk("type"),
                bulk("3"),
                bulk("data"),
                bulk("{}"),
            ]),
        ])
    }

    #[test]
    fn ids_compare_as_numbers() {
        assert_eq!(cmp_ids("9-0", "10-0"), Ordering::Less);
        assert_eq!(cmp_ids("10-2", "10-10"), Ordering::Less);
        assert_eq!(cmp_ids("10-2", "10-2"), Ordering::Equal);
        assert_eq!(cmp_ids("junk", "0-0"), Ordering::Less);
        assert_eq!(id_millis("1795606055859-3"), Some(1_795_606_055_859));
    }

    #[test]
    fn xread_replies_are_read_in_both_protocols() {
        let entries = redis::Value::Array(vec![raw_entry("1-0", "a"), raw_entry("1-1", "b")]);
        let resp2 = redis::Value::Array(vec![redis::Value::Array(vec![
            bulk("socket.io"),
            entries.clone(),
        ])]);
        let resp3 = redis::Value::Map(vec![(bulk("socket.io"), entries)]);
        for reply in [resp2, resp3] {
            let read = read_entries(&reply);
            assert_eq!(read.len(), 2);
            assert_eq!(read[1].0, "1-1");
            assert_eq!(read[1].1.uid, "b");
            assert_eq!(read[1].1.kind, "3");
            assert_eq!(read[1].1.data.as_deref(), Some("{}"));
        }
        assert!(read_entries(&redis::Value::Nil).is_empty());
    }
}
