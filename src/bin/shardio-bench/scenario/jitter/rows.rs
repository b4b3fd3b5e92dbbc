//! How a `jitter` report reads as a table.

use super::JitterReport;
use crate::report::fmt_rate;

impl JitterReport {
    pub(crate) fn rows(&self) -> Vec<(String, String)> {
        vec![
            (
                "clients / rooms".into(),
                format!("{} / {}", self.clients, self.rooms),
            ),
            (
                "drops / reconnects".into(),
                format!("{} / {}", self.drops, self.reconnects),
            ),
            (
                "recovered".into(),
                format!("{} ({:.2}%)", self.recovered, 100.0 * self.recovered_share),
            ),
            (
                "recovered on the other server".into(),
                format!(
                    "{} of {} moved",
                    self.recovered_moved, self.reconnects_moved
                ),
            ),
            (
                "delivered (unique / expected)".into(),
                format!(
                    "{} / {} = {:.3}%",
                    self.delivered_unique,
                    self.expected,
                    100.0 * self.delivery_rate
                ),
            ),
            ("duplicates".into(), self.duplicates.to_string()),
            ("never joined".into(), self.never_joined.to_string()),
            ("latency".into(), self.latency.line()),
            ("errors".into(), self.errors.line()),
            (
                "deliveries/s".into(),
                fmt_rate(self.delivered_unique as f64 / self.duration_s.max(1) as f64),
            ),
        ]
    }

    pub(crate) fn unusable(&self) -> Option<String> {
        (self.expected == 0).then(|| "no client received anything".to_string())
    }
}
