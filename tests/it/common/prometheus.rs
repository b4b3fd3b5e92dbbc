//! A real Prometheus server (Debian's, which scripts/test.sh fetches when it is missing) for the
//! tests that check what it scrapes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{free_port, http_get as get, Reaped};

/// A Prometheus server (Debian's, which scripts/test.sh fetches when it is missing) scraping
/// `target` every 100 ms; killed on drop.
pub(crate) struct Prometheus {
    addr: SocketAddr,
    _child: Reaped,
    dir: PathBuf,
}

impl Prometheus {
    pub(crate) fn start(target: SocketAddr) -> Prometheus {
        let binary =
            std::env::var("SHARDIO_TEST_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("shardio-prometheus-{port}"));
        std::fs::create_dir_all(&dir).expect("a data directory");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 100ms\n  scrape_timeout: 100ms\n\
                 scrape_configs:\n  - job_name: shardio\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write the scrape configuration");
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{binary}: {e} (scripts/test.sh fetches Prometheus)"));
        let prometheus = Prometheus {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _child: Reaped(child),
            dir,
        };
        super::wait_until("Prometheus to be ready", || {
            std::net::TcpStream::connect(prometheus.addr).is_ok()
                && get(prometheus.addr, "/-/ready").0 == 200
        });
        prometheus
    }

    /// The value of an instant query that returns one number, if it returns one.
    pub(crate) fn query(&self, expr: &str) -> Option<f64> {
        let query: String = expr
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) = get(self.addr, &format!("/api/v1/query?query={query}"));
        assert_eq!(status, 200, "{expr}: {body}");
        let answer: Value = serde_json::from_str(&body).expect("JSON");
        answer["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
