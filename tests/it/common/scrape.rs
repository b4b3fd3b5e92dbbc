//! `GET /metrics`, scraped and parsed: the samples by name and labels.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::http_request;

/// One scrape of `/metrics`: its content type and every sample.
pub(crate) struct Scrape {
    pub content_type: String,
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// Scrapes `addr`'s `/metrics`, which must answer 200.
    pub(crate) fn of(addr: SocketAddr) -> Scrape {
        let (status, head, body) = http_request(
            addr,
            "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(status, 200, "{head}\n{body}");
        let content_type = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Type: "))
            .expect("a content type")
            .to_owned();
        let samples = body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(parse_sample)
            .collect();
        Scrape {
            content_type,
            samples,
        }
    }

    /// The sum of the samples of `name` whose labels include `labels`.
    pub(crate) fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|(_, v)| v).sum()
    }

    /// How many series `name` has with `labels`.
    pub(crate) fn series(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        self.matching(name, labels).count()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = (&'a BTreeMap<String, String>, f64)> + 'a {
        self.samples
            .iter()
            .filter(move |(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, l, v)| (l, *v))
    }
}

/// `name{k="v",...} value`, as shardio writes it (label values never hold `"` or `,`).
fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let (series, value) = line.rsplit_once(' ').expect("a sample line");
    let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => {
            let rest = rest.strip_suffix('}').expect("closing brace");
            let labels = rest
                .split("\",")
                .map(|pair| {
                    let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                    (k.to_owned(), v.trim_end_matches('"').to_owned())
                })
                .collect();
            (name, labels)
        }
        None => (series, BTreeMap::new()),
    };
    (name.to_owned(), labels, value)
}
