//! Fixed files a shard answers itself, before any endpoint sees the request: the official
//! socket.io-client bundle under the path of each Socket.IO endpoint (Node's `serveClient`),
//! and pages ([`super::App::Page`], the gateway's demo page). Each is answered to `GET` and
//! `HEAD` of exactly its path; other methods get 405. Where an endpoint does not serve the
//! bundle, its file names get 404 (Node hands them to Engine.IO, which answers 400).
//!
//! The bundle is `vendor/socket.io-client/` (MIT, its licence beside it), embedded at build
//! time. Its headers are Node's: `Cache-Control: public, max-age=0`, the version as a strong
//! `ETag` (a matching `If-None-Match`, weak or strong, gets 304), and the endpoint's CORS
//! headers. Node also compresses the bundle on the fly when the client accepts it; shardio
//! sends it as it is.

use crate::connection;
use crate::net::Stream;
use crate::protocol::cors::CorsPolicy;
use crate::protocol::http::{self, BodyFraming, Refusal, RequestHead};
use bytes::Bytes;

/// The version of the vendored socket.io-client bundle.
const CLIENT_VERSION: &str = include_str!("../../vendor/socket.io-client/VERSION").trim_ascii();

/// The bundle's files, served under the endpoint's path as Node serves them (its msgpack
/// build is left out: shardio speaks the default parser only).
const CLIENT_FILES: [(&str, &[u8]); 6] = [
    (
        "socket.io.js",
        include_bytes!("../../vendor/socket.io-client/dist/socket.io.js"),
    ),
    (
        "socket.io.js.map",
        include_bytes!("../../vendor/socket.io-client/dist/socket.io.js.map"),
    ),
    (
        "socket.io.min.js",
        include_bytes!("../../vendor/socket.io-client/dist/socket.io.min.js"),
    ),
    (
        "socket.io.min.js.map",
        include_bytes!("../../vendor/socket.io-client/dist/socket.io.min.js.map"),
    ),
    (
        "socket.io.esm.min.js",
        include_bytes!("../../vendor/socket.io-client/dist/socket.io.esm.min.js"),
    ),
    (
        "socket.io.esm.min.js.map",
        include_bytes!("../../vendor/socket.io-client/dist/socket.io.esm.min.js.map"),
    ),
];

/// One file and how it is answered.
pub(super) struct Asset {
    /// `None`: a bundle file the endpoint does not serve (404).
    body: Option<Bytes>,
    /// The headers of every answer but a 405 (`Content-Type`, caching, `ETag`).
    headers: Vec<(&'static str, String)>,
    /// The quoted entity tag a conditional request is compared with.
    etag: Option<String>,
    cors: Option<CorsPolicy>,
}

/// The fixed files of one shard, by exact path.
#[derive(Default)]
pub(super) struct Assets {
    files: Vec<(String, Asset)>,
}

impl Assets {
    /// Serves the client bundle under `path` (a Socket.IO endpoint's, ending with `/`), with
    /// the endpoint's CORS policy.
    pub(super) fn add_client(&mut self, path: &str, cors: Option<&CorsPolicy>) {
        let etag = format!("\"{CLIENT_VERSION}\"");
        for (name, body) in CLIENT_FILES {
            let kind = if name.ends_with(".map") {
                "json"
            } else {
                "javascript"
            };
            let asset = Asset {
                body: Some(Bytes::from_static(body)),
                headers: vec![
                    ("Cache-Control", "public, max-age=0".to_owned()),
                    ("Content-Type", format!("application/{kind}; charset=utf-8")),
                    ("ETag", etag.clone()),
                ],
                etag: Some(etag.clone()),
                cors: cors.cloned(),
            };
            self.files.push((format!("{path}{name}"), asset));
        }
    }

    /// Answers 404 to the bundle's file names under `path`, for an endpoint that does not
    /// serve it: they are not Engine.IO requests either.
    pub(super) fn withhold_client(&mut self, path: &str) {
        for (name, _) in CLIENT_FILES {
            let asset = Asset {
                body: None,
                headers: Vec::new(),
                etag: None,
                cors: None,
            };
            self.files.push((format!("{path}{name}"), asset));
        }
    }

    /// Serves the HTML page `html` at exactly `path`; browsers revalidate it every time.
    pub(super) fn add_page(&mut self, path: &str, html: Bytes) {
        let asset = Asset {
            body: Some(html),
            headers: vec![
                ("Cache-Control", "no-cache".to_owned()),
                ("Content-Type", "text/html; charset=utf-8".to_owned()),
                ("X-Content-Type-Options", "nosniff".to_owned()),
            ],
            etag: None,
            cors: None,
        };
        self.files.push((path.to_owned(), asset));
    }

    /// The file at exactly `path`. A handful of paths compared in turn: most differ in length,
    /// so a request for anything else costs a few integer comparisons.
    pub(super) fn get(&self, path: &str) -> Option<&Asset> {
        self.files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, asset)| asset)
    }
}

impl Asset {
    /// Answers one request for the file. Its body, if it has one, is not read: only a bodiless
    /// request leaves the connection reusable. Returns whether the connection may go on.
    pub(super) async fn serve(&self, stream: &mut Stream, head: &RequestHead) -> bool {
        let keep_alive = head.keep_alive() && matches!(head.body_framing(), Ok(BodyFraming::None));
        let Some(body) = &self.body else {
            return connection::refuse(stream, Refusal::NotFound, keep_alive).await;
        };
        let close = (!keep_alive).then_some(("Connection", "close"));
        if head.method != "GET" && head.method != "HEAD" {
            let status = Refusal::MethodNotAllowed.status();
            let headers = [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")];
            let headers: Vec<_> = headers.into_iter().chain(close).collect();
            let body = http::reason(status).as_bytes();
            return connection::write(stream, status, &headers, body).await && keep_alive;
        }
        let cors = self.cors.as_ref().map_or_else(Vec::new, |cors| {
            cors.response_headers(head.header("origin"))
        });
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .chain(&cors)
            .map(|(name, value)| (*name, value.as_str()))
            .chain(close)
            .collect();
        let len = body.len();
        let written = if self.not_modified(head) {
            // What a cache needs to update its copy (RFC 9110 §15.4.5), not what describes it.
            let headers: Vec<_> = headers
                .into_iter()
                .filter(|(name, _)| *name != "Content-Type")
                .collect();
            connection::write_head(stream, 304, &headers, len).await
        } else if head.method == "HEAD" {
            connection::write_head(stream, 200, &headers, len).await
        } else {
            connection::write(stream, 200, &headers, body).await
        };
        written && keep_alive
    }

    /// Whether the request's `If-None-Match` names this file's entity tag (weakly compared,
    /// as RFC 9110 §13.1.2 asks), or is `*`.
    fn not_modified(&self, head: &RequestHead) -> bool {
        let (Some(etag), Some(asked)) = (&self.etag, head.header("if-none-match")) else {
            return false;
        };
        asked
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(if_none_match: Option<&str>) -> RequestHead {
        let mut headers = vec![("host".to_owned(), "x".to_owned())];
        if let Some(tag) = if_none_match {
            headers.push(("if-none-match".to_owned(), tag.to_owned()));
        }
        RequestHead {
            method: "GET".into(),
            path: "/socket.io/socket.io.js".into(),
            query: String::new(),
            headers,
            http10: false,
        }
    }

    #[test]
    fn the_bundle_is_under_the_endpoint_path_only_by_exact_name() {
        let mut assets = Assets::default();
        assets.add_client("/socket.io/", None);
        for name in [
            "socket.io.js",
            "socket.io.min.js.map",
            "socket.io.esm.min.js",
        ] {
            assert!(
                assets.get(&format!("/socket.io/{name}")).is_some(),
                "{name}"
            );
        }
        for path in [
            "/socket.io/",
            "/socket.io.js",
            "/socket.io/socket.io.msgpack.min.js",
            "/socket.io/socket.io.js/",
            "/other/socket.io.js",
        ] {
            assert!(assets.get(path).is_none(), "{path}");
        }
    }

    #[test]
    fn conditional_requests_compare_the_version_tag() {
        let mut assets = Assets::default();
        assets.add_client("/socket.io/", None);
        let js = assets.get("/socket.io/socket.io.js").unwrap();
        let tag = format!("\"{CLIENT_VERSION}\"");
        assert!(js.not_modified(&head(Some(&tag))));
        assert!(js.not_modified(&head(Some(&format!("W/{tag}")))));
        assert!(js.not_modified(&head(Some(&format!("\"0.0.1\", {tag}")))));
        assert!(js.not_modified(&head(Some("*"))));
        assert!(!js.not_modified(&head(Some("\"0.0.1\""))));
        assert!(!js.not_modified(&head(None)));
        // A page has no tag: always sent in full.
        assets.add_page("/", Bytes::from_static(b"<!doctype html>"));
        assert!(!assets.get("/").unwrap().not_modified(&head(Some("*"))));
    }
}
