//! The client bundle (`/socket.io/socket.io.js` and the rest, as Node's `serveClient`) and the
//! demo page at `/`: their routes over plain HTTP, and the page in a real browser (headless
//! Chromium driven by `tests/js/demo_browser.mjs`) on a 2-shard server.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::node::run_script;
use common::polling::{request, HttpConn, Response};
use common::TestServer;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vendored(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("vendor/socket.io-client/dist").join(name)).expect("vendored file")
}

fn version() -> String {
    let text = std::fs::read_to_string(repo().join("vendor/socket.io-client/VERSION"))
        .expect("vendor/socket.io-client/VERSION");
    text.trim().to_owned()
}

fn get(addr: SocketAddr, path: &str, headers: &[&str]) -> Response {
    request(addr, "GET", path, headers, b"")
}

/// The raw bytes answered to one request on a connection closed after it: for the answers
/// without a body (HEAD, 304), which say the length of the body they do not send.
fn raw(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> String {
    let mut conn = HttpConn::connect(addr);
    let mut all = vec!["Connection: close"];
    all.extend_from_slice(headers);
    conn.request(method, path, &all, b"");
    String::from_utf8(conn.rest_until_closed()).expect("an ASCII answer")
}

const BUNDLE: [(&str, &str); 6] = [
    ("socket.io.js", "application/javascript; charset=utf-8"),
    ("socket.io.min.js", "application/javascript; charset=utf-8"),
    (
        "socket.io.esm.min.js",
        "application/javascript; charset=utf-8",
    ),
    ("socket.io.js.map", "application/json; charset=utf-8"),
    ("socket.io.min.js.map", "application/json; charset=utf-8"),
    (
        "socket.io.esm.min.js.map",
        "application/json; charset=utf-8",
    ),
];

#[test]
fn the_vendored_bundle_is_the_npm_client_the_tests_use() {
    let npm = repo().join("tests/js/node_modules/socket.io-client");
    assert!(
        npm.exists(),
        "tests/js/node_modules is missing: run scripts/test.sh"
    );
    let package: serde_json::Value =
        serde_json::from_slice(&std::fs::read(npm.join("package.json")).expect("package.json"))
            .expect("package.json is JSON");
    assert_eq!(
        package["version"].as_str(),
        Some(version().as_str()),
        "vendor/socket.io-client is not the version tests/js installs: copy its dist/ files and set VERSION"
    );
    for (name, _) in BUNDLE {
        let installed = std::fs::read(npm.join("dist").join(name)).expect("npm dist file");
        assert!(
            installed == vendored(name),
            "vendor/.../{name} differs from npm's"
        );
    }
    let licence = std::fs::read_to_string(repo().join("vendor/socket.io-client/LICENSE"))
        .expect("the bundle's licence is vendored with it");
    assert!(licence.contains("MIT License"));
}

#[test]
fn the_bundle_is_served_with_nodes_headers() {
    let server = TestServer::gateway(2, &[]);
    let etag = format!("\"{}\"", version());
    for (name, content_type) in BUNDLE {
        let r = get(server.addr, &format!("/socket.io/{name}"), &[]);
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.header("content-type"), Some(content_type), "{name}");
        assert_eq!(r.header("cache-control"), Some("public, max-age=0"));
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert!(r.body == vendored(name), "{name}: the vendored bytes");
        if name.ends_with(".map") {
            let map: serde_json::Value = serde_json::from_slice(&r.body).expect("a JSON map");
            assert_eq!(map["version"], 3, "{name} is a source map");
        } else {
            let map = format!("//# sourceMappingURL={name}.map");
            assert!(r.text().trim_end().ends_with(&map), "{name} names its map");
        }
    }
    // A query string is not part of the name; the script the README shows loads.
    let r = get(server.addr, "/socket.io/socket.io.js?v=1", &[]);
    assert_eq!(r.status, 200);
    assert!(r.text().contains(&format!("Socket.IO v{}", version())));
}

#[test]
fn a_matching_etag_gets_304_without_a_body() {
    let server = TestServer::gateway(1, &[]);
    let etag = format!("\"{}\"", version());
    let len = vendored("socket.io.min.js").len();
    for tag in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"0.0.0\", {etag}"),
    ] {
        let answer = raw(
            server.addr,
            "GET",
            "/socket.io/socket.io.min.js",
            &[&format!("If-None-Match: {tag}")],
        );
        assert!(
            answer.starts_with("HTTP/1.1 304 Not Modified\r\n"),
            "{tag}: {answer}"
        );
        assert!(answer.contains(&format!("ETag: {etag}\r\n")));
        assert!(answer.contains("Cache-Control: public, max-age=0\r\n"));
        // The length of what a 200 would carry, and nothing after the head.
        assert!(answer.contains(&format!("Content-Length: {len}\r\n")));
        assert!(answer.ends_with("\r\n\r\n"), "no body: {answer}");
    }
    // Another version's tag: the file, in full.
    let r = get(
        server.addr,
        "/socket.io/socket.io.min.js",
        &["If-None-Match: \"0.0.0\""],
    );
    assert_eq!((r.status, r.body.len()), (200, len));
}

#[test]
fn head_and_other_methods() {
    let server = TestServer::gateway(1, &[]);
    let answer = raw(server.addr, "HEAD", "/socket.io/socket.io.js", &[]);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let len = vendored("socket.io.js").len();
    assert!(answer.contains(&format!("Content-Length: {len}\r\n")));
    assert!(answer.ends_with("\r\n\r\n"), "HEAD gets no body");
    let answer = raw(server.addr, "HEAD", "/", &[]);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("\r\n\r\n"));

    for path in ["/socket.io/socket.io.js", "/"] {
        let r = request(server.addr, "POST", path, &[], b"x=1");
        assert_eq!(r.status, 405, "{path}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
}

/// Reads answers off `bytes` as a client does: a body of `Content-Length` bytes follows the
/// head, except after a 304 or the answer to a HEAD (`bodiless`). Returns each status and body;
/// fails unless the answers take the bytes exactly.
fn answers(mut bytes: &[u8], bodiless: &[bool]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    for &head_only in bodiless {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head")
            + 4;
        let head = std::str::from_utf8(&bytes[..end]).expect("an ASCII head");
        assert!(head.starts_with("HTTP/1.1 "), "not an answer: {head:.60}");
        let status: u16 = head[9..12].parse().expect("a status");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("Content-Length")
            .parse()
            .expect("a length");
        let length = if head_only || status == 304 {
            0
        } else {
            length
        };
        out.push((status, bytes[end..end + length].to_vec()));
        bytes = &bytes[end + length..];
    }
    assert!(
        bytes.is_empty(),
        "{} bytes after the last answer",
        bytes.len()
    );
    out
}

#[test]
fn files_keep_the_connection_alive_and_304s_frame_correctly() {
    let server = TestServer::gateway(1, &[]);
    let etag = format!("\"{}\"", version());
    let mut conn = HttpConn::connect(server.addr);
    // Pipelined: the page, a file, a 304, a HEAD, then the file again (closing): a 304 or a
    // HEAD answer that carried a body would shift every answer after it.
    let file = "/socket.io/socket.io.esm.min.js";
    conn.request("GET", "/", &[], b"");
    conn.request("GET", file, &[], b"");
    conn.request("GET", file, &[&format!("If-None-Match: {etag}")], b"");
    conn.request("HEAD", file, &[], b"");
    conn.request("GET", file, &["Connection: close"], b"");
    let all = conn.rest_until_closed();
    let got = answers(&all, &[false, false, false, true, false]);
    let statuses: Vec<u16> = got.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses, [200, 200, 304, 200, 200]);
    let bundle = vendored("socket.io.esm.min.js");
    assert!(got[0].1.starts_with(b"<!doctype html>"));
    assert!(got[1].1 == bundle && got[4].1 == bundle);
}

#[test]
fn the_bundle_follows_the_path_and_the_cors_policy() {
    let server = TestServer::gateway(1, &["--path", "/rt/", "--cors-origin", "https://a.example"]);
    let r = get(
        server.addr,
        "/rt/socket.io.esm.min.js",
        &["Origin: https://a.example"],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://a.example")
    );
    assert_ne!(get(server.addr, "/socket.io/socket.io.js", &[]).status, 200);
    // The page loads the bundle from the endpoint's path, and connects there.
    let page = get(server.addr, "/", &[]);
    assert!(page
        .text()
        .contains(r#"<script src="/rt/socket.io.min.js"></script>"#));
    assert!(page
        .text()
        .contains(r#"<meta name="socket-io-path" content="/rt/">"#));
}

#[test]
fn serve_client_false_gives_404_and_engineio_is_untouched() {
    let server = TestServer::gateway(1, &["--serve-client", "false"]);
    for (name, _) in BUNDLE {
        let r = get(server.addr, &format!("/socket.io/{name}"), &[]);
        assert_eq!(r.status, 404, "{name}");
    }
    // Without the bundle the page cannot work, so it is off too.
    assert_eq!(get(server.addr, "/", &[]).status, 404);
    // The endpoint itself still answers its handshakes.
    let r = get(server.addr, "/socket.io/?EIO=4&transport=polling", &[]);
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("0{"));
}

#[test]
fn the_demo_page_is_on_without_jwt_only() {
    let open = TestServer::gateway(1, &[]);
    let r = get(open.addr, "/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let html = r.text();
    assert!(html.contains(r#"<script src="/socket.io/socket.io.min.js"></script>"#));
    assert!(!html.contains("{{path}}"));
    // No resource from elsewhere, and a policy that forbids any.
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"));
    assert!(html.contains("default-src 'none'"));
    // Only `/` is the page.
    assert_eq!(get(open.addr, "/index.html", &[]).status, 404);

    let off = TestServer::gateway(1, &["--demo", "off"]);
    assert_eq!(get(off.addr, "/", &[]).status, 404);
    assert_eq!(get(off.addr, "/socket.io/socket.io.js", &[]).status, 200);

    let secret = "a-secret-of-enough-length";
    let jwt = TestServer::gateway(1, &["--jwt-secret", secret]);
    assert_eq!(
        get(jwt.addr, "/", &[]).status,
        404,
        "off by default with JWT"
    );
    let forced = TestServer::gateway(1, &["--jwt-secret", secret, "--demo"]);
    assert_eq!(get(forced.addr, "/", &[]).status, 200);
}

/// Whether `path` holds a PNG of at least `width` x `height` pixels and `min_bytes` bytes.
fn is_png(path: &Path, width: u32, height: u32, min_bytes: usize) -> Result<(), String> {
    let png = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !png.starts_with(b"\x89PNG\r\n\x1a\n") || &png[12..16] != b"IHDR" {
        return Err("not a PNG".into());
    }
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    if w < width || h < height || png.len() < min_bytes {
        return Err(format!("{w}x{h}, {} bytes", png.len()));
    }
    Ok(())
}

#[test]
fn two_browser_pages_on_two_shards_chat_through_the_demo_page() {
    let server = TestServer::gateway(2, &[]);
    let dir = std::env::temp_dir().join(format!(
        "shardio-demo-{}-{}",
        std::process::id(),
        server.addr.port()
    ));
    let out = run_script(
        "demo_browser.mjs",
        &[&server.url(), dir.to_str().expect("a UTF-8 temp dir")],
        Duration::from_secs(120),
    );
    let seen: serde_json::Value = serde_json::from_str(out.trim()).expect("the script's JSON");

    // The pages were on different shards, and the server says both shards served a session.
    let shards = seen["shards"].as_array().expect("shards");
    assert_ne!(shards[0], shards[1], "{seen}");
    assert_eq!(server.shards_used(), 2);

    // Each page shows the other's line, with its author, in the DOM.
    let received = seen["received"].as_array().expect("received");
    let first = format!("alice: hello from shard {}", shards[0]);
    let second = format!("bob: hi back from shard {}", shards[1]);
    assert!(received[0].as_str().unwrap().ends_with(&first), "{seen}");
    assert!(received[1].as_str().unwrap().ends_with(&second), "{seen}");
    let log = seen["log"].as_str().expect("log");
    assert!(log.contains(&first) && log.contains(&second), "{log}");

    let screenshot = PathBuf::from(seen["screenshot"].as_str().expect("screenshot"));
    assert!(screenshot.starts_with(&dir));
    if let Err(e) = is_png(&screenshot, 400, 300, 10_000) {
        panic!("the screenshot is no real page: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
