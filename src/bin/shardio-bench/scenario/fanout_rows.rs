//! How a `fanout`, `cross` or `api` report reads as a table.

use super::fanout::FanoutReport;
use crate::report::fmt_rate;

impl FanoutReport {
    /// Why the run measured nothing, if it did not.
    pub(crate) fn unusable(&self) -> Option<String> {
        if self.subscribers > 0 && self.subscribers_joined == 0 {
            Some(format!(
                "no subscriber joined ({})",
                self.setup_failures.line()
            ))
        } else if self.publishers > 0 && self.publishers_connected == 0 {
            Some(format!(
                "no publisher connected ({})",
                self.setup_failures.line()
            ))
        } else {
            None
        }
    }

    pub(crate) fn rows(&self) -> Vec<(String, String)> {
        let l = &self.losses;
        let mut rows = vec![
            (
                "server".into(),
                if self.sub_url == self.url {
                    self.url.clone()
                } else {
                    format!("publishers -> {}, subscribers -> {}", self.url, self.sub_url)
                },
            ),
            (
                "shape".into(),
                format!(
                    "{} subscribers / {} rooms / {} publishers at {} (window {}, +{} B)",
                    self.subscribers,
                    self.rooms,
                    self.publishers,
                    if self.rate_per_publisher > 0.0 {
                        format!("{}/s each", self.rate_per_publisher)
                    } else {
                        "flat out".into()
                    },
                    self.window,
                    self.payload_padding
                ),
            ),
            (
                "connected".into(),
                format!(
                    "{} subscribers joined, {} publishers; setup failures: {}",
                    self.subscribers_joined,
                    self.publishers_connected,
                    self.setup_failures.line()
                ),
            ),
            ("disconnects".into(), self.disconnects.line()),
            (
                "publishes".into(),
                format!(
                    "{} sent, {} acked ok, {} errors, {} unacked ({}/s)",
                    self.publishes_sent,
                    self.publishes_acked,
                    self.publish_errors,
                    self.publishes_unacked,
                    fmt_rate(self.publishes_per_s)
                ),
            ),
            ("deliveries/s".into(), fmt_rate(self.deliveries_per_s)),
            ("latency".into(), self.latency.line()),
            ("publish ack latency".into(), self.publish_ack_latency.line()),
            (
                "losses".into(),
                format!(
                    "expected {} received {} lost {} ({} pairs), gaps {} ({} skipped), reordered {}, dups {}, unexpected {}, unparsed {}",
                    l.expected, l.received, l.lost, l.pairs_with_loss, l.gap_events, l.gap_missing,
                    l.reordered, l.duplicates, l.unexpected, l.unparsed
                ),
            ),
            ("drain".into(), format!("{:.2} s", self.drain_s)),
        ];
        if let (Some(s), Some(per)) = (&self.server, self.deliveries_per_server_cpu_s) {
            rows.push(("server CPU".into(), format!("{:.2} s", s.cpu_seconds)));
            rows.push(("deliveries/server CPU s".into(), fmt_rate(per)));
        }
        if let Some(g) = &self.generator {
            rows.push(("generator CPU".into(), g.line()));
        }
        rows
    }
}
