//! Measurement: latency histograms, per-(subscriber, publisher) sequence tracking, error tallies.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency histogram in microseconds, 1 µs to 100 s at 3 significant digits. Larger values
/// are clamped to the top (a 100 s latency already means the run failed).
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("static histogram bounds are valid")
}

/// A histogram shared by many tasks, split into shards so that tasks on different threads
/// rarely meet on one lock; each task records a whole read batch per lock.
pub(crate) struct SharedHistogram {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl SharedHistogram {
    pub(crate) fn new(shards: usize) -> SharedHistogram {
        SharedHistogram {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(new_histogram()))
                .collect(),
        }
    }

    pub(crate) fn record_batch(&self, key: usize, values: &[u64]) {
        if values.is_empty() {
            return;
        }
        let shard = &self.shards[key % self.shards.len()];
        // A poisoned lock only means another task panicked mid-record; the counts are still usable.
        let mut h = shard.lock().unwrap_or_else(|e| e.into_inner());
        for &v in values {
            h.saturating_record(v.max(1));
        }
    }

    pub(crate) fn merged(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for s in &self.shards {
            let h = s.lock().unwrap_or_else(|e| e.into_inner());
            // Same bounds on both sides, so adding cannot fail.
            let _ = all.add(&*h);
        }
        all
    }
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LatencySummary {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl LatencySummary {
    pub(crate) fn of(h: &Histogram<u64>) -> LatencySummary {
        let empty = h.is_empty();
        let q = |p: f64| if empty { 0 } else { h.value_at_quantile(p) };
        LatencySummary {
            count: h.len(),
            min_us: if empty { 0 } else { h.min() },
            mean_us: if empty { 0.0 } else { h.mean() },
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if empty { 0 } else { h.max() },
        }
    }

    /// `p50 / p99 / p99.9 / max` in milliseconds, for the tables.
    pub(crate) fn line(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "p50 {:.3} / p99 {:.3} / p99.9 {:.3} / max {:.3} ms (n={})",
            ms(self.p50_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us),
            self.count
        )
    }
}

/// What one subscriber saw of each publisher's stream to its room. Publishers number their
/// publishes per room from 0, so each (subscriber, publisher) stream should arrive as 0, 1, 2, ...
/// A number that skips ahead opens a gap; a late arrival that fills a gap is counted as
/// reordered (and delivered), one that was already seen as a duplicate.
#[derive(Debug, Clone)]
pub(crate) struct SeqTracker {
    streams: Vec<Stream>,
    /// Times a sequence number skipped ahead, and how many numbers were skipped in all
    /// (some may arrive later, reordered).
    pub gap_events: u64,
    pub gap_missing: u64,
    /// Late deliveries that filled a gap: delivered, but out of the publisher's order.
    pub reordered: u64,
    /// Deliveries of a sequence number already received.
    pub duplicates: u64,
    /// Deliveries naming a publisher that does not exist.
    pub unknown_publisher: u64,
}

/// The most open gaps remembered per stream: past it the oldest is forgotten, and a late
/// arrival into it counts as a duplicate. Bounds memory when a server loses every other message.
const MAX_GAPS: usize = 1024;

#[derive(Debug, Clone, Default)]
struct Stream {
    /// Next sequence number expected.
    next: u64,
    /// Distinct sequence numbers received.
    unique: u64,
    /// Missing sequence numbers below `next`, as half-open ranges in ascending order.
    gaps: Vec<(u64, u64)>,
}

impl SeqTracker {
    pub(crate) fn new(publishers: usize) -> SeqTracker {
        SeqTracker {
            streams: vec![Stream::default(); publishers],
            gap_events: 0,
            gap_missing: 0,
            reordered: 0,
            duplicates: 0,
            unknown_publisher: 0,
        }
    }

    /// Returns true when the delivery is new (not a duplicate).
    pub(crate) fn record(&mut self, publisher: u32, seq: u64) -> bool {
        let Some(st) = self.streams.get_mut(publisher as usize) else {
            self.unknown_publisher += 1;
            return false;
        };
        if seq >= st.next {
            if seq > st.next {
                self.gap_events += 1;
                self.gap_missing += seq - st.next;
                if st.gaps.len() == MAX_GAPS {
                    st.gaps.remove(0);
                }
                st.gaps.push((st.next, seq));
            }
            st.next = seq + 1;
            st.unique += 1;
            return true;
        }
        // Late: either it fills a gap or it was seen already.
        let i = st.gaps.partition_point(|&(_, end)| end <= seq);
        match st.gaps.get(i).copied() {
            Some((start, end)) if start <= seq => {
                match (seq == start, seq + 1 == end) {
                    (true, true) => {
                        st.gaps.remove(i);
                    }
                    (true, false) => st.gaps[i].0 = seq + 1,
                    (false, true) => st.gaps[i].1 = seq,
                    (false, false) => {
                        st.gaps[i].1 = seq;
                        st.gaps.insert(i + 1, (seq + 1, end));
                    }
                }
                st.unique += 1;
                self.reordered += 1;
                true
            }
            _ => {
                self.duplicates += 1;
                false
            }
        }
    }

    pub(crate) fn unique_from(&self, publisher: usize) -> u64 {
        self.streams.get(publisher).map_or(0, |s| s.unique)
    }
}

/// Errors by kind, for the reports.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub(crate) struct ErrorTally(BTreeMap<&'static str, u64>);

impl ErrorTally {
    pub(crate) fn add(&mut self, kind: &'static str) {
        *self.0.entry(kind).or_default() += 1;
    }

    pub(crate) fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub(crate) fn merge(&mut self, other: &ErrorTally) {
        for (kind, n) in &other.0 {
            *self.0.entry(kind).or_default() += n;
        }
    }

    pub(crate) fn line(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_counts_gaps_duplicates_and_unknowns() {
        let mut t = SeqTracker::new(2);
        for s in [0, 1, 2] {
            assert!(t.record(0, s));
        }
        assert!(t.record(0, 5)); // 3 and 4 missing
        assert!(!t.record(0, 5)); // duplicate
        assert!(!t.record(0, 1)); // duplicate below the gap
        assert!(t.record(1, 0));
        assert!(!t.record(7, 0));
        assert_eq!(t.unique_from(0), 4);
        assert_eq!(t.unique_from(1), 1);
        assert_eq!((t.gap_events, t.gap_missing), (1, 2));
        assert_eq!((t.duplicates, t.reordered), (2, 0));
        assert_eq!(t.unknown_publisher, 1);
    }

    #[test]
    fn tracker_tells_reordering_from_duplicates() {
        let mut t = SeqTracker::new(1);
        for s in [0, 4, 9] {
            assert!(t.record(0, s)); // gaps [1,4) and [5,9)
        }
        for s in [2, 1, 3, 7, 5, 8, 6] {
            assert!(t.record(0, s), "{s} fills a gap");
        }
        for s in [2, 6, 9, 0] {
            assert!(!t.record(0, s), "{s} is a duplicate");
        }
        assert_eq!(t.unique_from(0), 10);
        assert_eq!((t.reordered, t.duplicates), (7, 4));
        assert_eq!((t.gap_events, t.gap_missing), (2, 7));
        assert!(t.streams[0].gaps.is_empty());
    }

    #[test]
    fn summary_of_empty_histogram_is_zero() {
        let s = LatencySummary::of(&new_histogram());
        assert_eq!((s.count, s.p99_us), (0, 0));
        let shared = SharedHistogram::new(4);
        shared.record_batch(1, &[10, 20, 0]);
        shared.record_batch(6, &[30]);
        assert_eq!(shared.merged().len(), 4);
    }
}
