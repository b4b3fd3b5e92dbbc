//! HAProxy with the deployed configuration (`deploy/haproxy.cfg`) in front of test servers.

/// `deploy/haproxy.cfg` in front of `backends`, on a free port; killed on drop.
pub(crate) struct Haproxy {
    pub port: u16,
    child: std::process::Child,
    _config: std::path::PathBuf,
}

impl Haproxy {
    pub(crate) fn start(backends: &[std::net::SocketAddr]) -> Haproxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let deployed = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy.cfg"),
        )
        .expect("deploy/haproxy.cfg");
        // The deployed file, with this test's addresses.
        let mut config = deployed.replace("bind *:8080", &format!("bind 127.0.0.1:{port}"));
        for (i, slot) in ["127.0.0.1:3001", "127.0.0.1:3002", "127.0.0.1:3003"]
            .iter()
            .enumerate()
        {
            match backends.get(i) {
                Some(addr) => config = config.replace(slot, &addr.to_string()),
                None => {
                    config = config
                        .lines()
                        .filter(|l| !l.contains(slot))
                        .collect::<Vec<_>>()
                        .join("\n")
                        + "\n"
                }
            }
        }
        let path = std::env::temp_dir().join(format!("shardio-haproxy-{port}.cfg"));
        std::fs::write(&path, config).expect("write the test config");
        let haproxy = ["/usr/sbin/haproxy", "haproxy"]
            .into_iter()
            .find(|p| std::process::Command::new(p).arg("-v").output().is_ok())
            .expect("haproxy must be installed (scripts/test.sh installs it)");
        let child = std::process::Command::new(haproxy)
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start haproxy");
        super::wait_until("haproxy to accept connections", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Haproxy {
            port,
            child,
            _config: path,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self._config);
    }
}
