//! The operator's path from the production issue, as one run of the real binary: copy
//! `deploy/shardio.toml`, turn on TLS, the internal listener and a drain delay in the copy,
//! start shardio with it, and check what a new user checks: the npm client over wss, the demo
//! page and the client bundle over https, a real Prometheus scraping the internal listener, and
//! `/readyz` turning 503 when SIGTERM starts the drain while the public port still serves.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use crate::common::jwt::KeyDir;
use crate::common::node::run_script;
use crate::common::process::ShardioProcess;
use crate::common::prometheus::Prometheus;
use crate::common::tls::CertFiles;
use crate::common::{self, http_get, WAIT};

/// `deploy/shardio.toml` with each `(line, replacement)` applied; every line must be there.
fn edited_example(edits: &[(&str, String)]) -> String {
    let path = format!("{}/deploy/shardio.toml", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).expect("deploy/shardio.toml");
    for (line, replacement) in edits {
        let found = text.lines().filter(|l| l == line).count();
        assert_eq!(found, 1, "deploy/shardio.toml has the line {line:?} once");
        text = text.replace(line, replacement);
    }
    text
}

/// `GET path` over TLS with `Connection: close`: the status and the body.
fn https_get(certs: &CertFiles, addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let (mut tls, _) = certs.connect(addr);
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .expect("write the request");
    let mut response = Vec::new();
    // The server closes after the response; a close without close_notify still ends it.
    let _ = tls.read_to_end(&mut response);
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&response[..head_end]);
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
    (status.expect("a status"), response[head_end + 4..].to_vec())
}

#[test]
fn the_deploy_example_with_tls_serves_clients_metrics_readiness_and_the_demo() {
    let certs = CertFiles::new();
    let dir = KeyDir::new();
    let config = dir.path.join("shardio.toml");
    let text = edited_example(&[
        (
            "# tls-cert = \"/etc/shardio/fullchain.pem\"",
            format!("tls-cert = {:?}", certs.cert.display().to_string()),
        ),
        (
            "# tls-key = \"/etc/shardio/privkey.pem\"",
            format!("tls-key = {:?}", certs.key.display().to_string()),
        ),
        (
            "# internal-listen = \"127.0.0.1:3001\"",
            "internal-listen = \"127.0.0.1:0\"".into(),
        ),
        ("drain-delay = 0", "drain-delay = 5000".into()),
        ("# shards = 4", "shards = 2".into()),
    ]);
    std::fs::write(&config, text).expect("write the configuration");
    // The harness adds `--listen 127.0.0.1:0 --no-pin`, flags that win over the file's values.
    let mut shardio = ShardioProcess::start(&["--config", config.to_str().expect("UTF-8")]);
    // The public listener is up when `start` returns; the internal one may log a moment later.
    shardio.wait_for_line("internal listener", WAIT);
    let internal: SocketAddr = shardio
        .find_line(|l| {
            let rest = l.split("internal listener").nth(1)?;
            let addr = rest.split("address=").nth(1)?;
            addr.split(' ').next()?.parse().ok()
        })
        .expect("the internal listener's address in the log");

    // The npm client over wss on both shards: join, publish, receive.
    let url = format!("https://127.0.0.1:{}", shardio.addr.port());
    let out = run_script(
        "gateway_client.mjs",
        &[&url, "8", "websocket"],
        Duration::from_secs(40),
    );
    assert_eq!(out.trim(), "ok");

    // The demo page and the bundle it loads, over https.
    let (status, page) = https_get(&certs, shardio.addr, "/");
    assert_eq!(status, 200);
    let page = String::from_utf8(page).expect("UTF-8 page");
    assert!(page.contains(r#"<script src="/socket.io/socket.io.min.js"></script>"#));
    let (status, bundle) = https_get(&certs, shardio.addr, "/socket.io/socket.io.min.js");
    assert_eq!(status, 200);
    assert!(bundle.len() > 10_000, "the minified client bundle");

    // Metrics only on the internal listener, and a real Prometheus scrapes them.
    assert_eq!(https_get(&certs, shardio.addr, "/metrics").0, 404);
    let prometheus = Prometheus::start(internal);
    let sees = |expr: &str, want: f64| {
        common::wait_within(Duration::from_secs(30), || {
            prometheus.query(expr) == Some(want)
        })
    };
    assert!(sees("up{job=\"shardio\"}", 1.0), "the scrape is up");
    assert!(sees("shardio_shards", 2.0));
    // The 8 clients' handshakes plus the three https requests above, none failed.
    assert!(sees(
        "sum(shardio_tls_handshakes_total{result=\"ok\"}) >= bool 11",
        1.0
    ));
    assert!(sees(
        "sum(shardio_tls_handshakes_total{result=\"failed\"})",
        0.0
    ));

    // SIGTERM: not ready at once, while the drain delay keeps the public port serving.
    assert_eq!(http_get(internal, "/readyz"), (200, "ready\n".into()));
    shardio.signal("TERM");
    common::wait_until("not ready", || http_get(internal, "/readyz").0 == 503);
    assert_eq!(
        http_get(internal, "/readyz"),
        (503, "not ready: draining\n".into())
    );
    assert_eq!(https_get(&certs, shardio.addr, "/healthz").0, 200);
    assert!(
        shardio.wait_exit(WAIT + Duration::from_secs(5)).success(),
        "a clean exit"
    );
}
