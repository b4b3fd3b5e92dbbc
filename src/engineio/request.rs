//! What a session remembers of the request that opened it.

use std::net::SocketAddr;
use std::time::SystemTime;

use crate::protocol::http::RequestHead;

/// What the session remembers of the request that opened it (Socket.IO's handshake object).
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The client's address.
    pub address: SocketAddr,
    /// When the request arrived.
    pub time: SystemTime,
    /// The request target, then one `name:value` line per header, in ONE allocation: every
    /// session keeps this for its whole life, so it must be small.
    raw: Box<str>,
    url_len: usize,
}

impl RequestInfo {
    /// The request of `address` for `url` (path and query) with these headers.
    pub fn new(
        address: SocketAddr,
        url: &str,
        headers: impl IntoIterator<Item = (impl AsRef<str>, impl AsRef<str>)>,
    ) -> Self {
        let mut raw = String::from(url);
        for (name, value) in headers {
            raw.push('\n');
            raw.push_str(name.as_ref());
            raw.push(':');
            raw.push_str(value.as_ref());
        }
        RequestInfo {
            address,
            time: SystemTime::now(),
            raw: raw.into_boxed_str(),
            url_len: url.len(),
        }
    }

    /// The request a parsed head describes.
    pub(crate) fn from_head(head: RequestHead, address: SocketAddr) -> Self {
        let url = if head.query.is_empty() {
            head.path
        } else {
            format!("{}?{}", head.path, head.query)
        };
        RequestInfo::new(address, &url, head.headers)
    }

    /// Path and query, as requested.
    pub fn url(&self) -> &str {
        &self.raw[..self.url_len]
    }

    /// The query string, without `?`.
    pub fn query(&self) -> &str {
        self.url().split_once('?').map_or("", |(_, q)| q)
    }

    /// The request headers, names in lower case, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.raw[self.url_len..]
            .split('\n')
            .skip(1)
            .filter_map(|line| line.split_once(':'))
    }

    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_info_keeps_url_query_and_headers_in_one_block() {
        let info = RequestInfo::new(
            "127.0.0.1:9".parse().unwrap(),
            "/socket.io/?EIO=4&transport=polling",
            [("host", "x:1"), ("cookie", "a=b; c=d"), ("empty", "")],
        );
        assert_eq!(info.url(), "/socket.io/?EIO=4&transport=polling");
        assert_eq!(info.query(), "EIO=4&transport=polling");
        let headers: Vec<_> = info.headers().collect();
        assert_eq!(
            headers,
            vec![("host", "x:1"), ("cookie", "a=b; c=d"), ("empty", "")]
        );
        assert_eq!(info.header("cookie"), Some("a=b; c=d"));
        let bare = RequestInfo::new(
            "127.0.0.1:9".parse().unwrap(),
            "/x",
            Vec::<(String, String)>::new(),
        );
        assert_eq!((bare.query(), bare.headers().count()), ("", 0));
    }
}
