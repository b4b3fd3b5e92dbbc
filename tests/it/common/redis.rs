//! A real `redis-server` for one test, on a free port, without persistence; killed on drop.
//! It can be killed and restarted on the same port to test faults.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};

pub(crate) struct RedisServer {
    pub port: u16,
    /// More `redis-server` options.
    options: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    pub(crate) fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// A server started with more `redis-server` options.
    pub(crate) fn start_with(options: &[&str]) -> RedisServer {
        RedisServer::start_on(free_port(), options)
    }

    /// A server on `port` started with more `redis-server` options (`--sentinel` makes it a
    /// sentinel).
    pub(crate) fn start_on(port: u16, options: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            port,
            options: options.iter().map(|o| (*o).to_owned()).collect(),
            child: None,
        };
        server.restart();
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Runs `redis-cli -p <port> <args...>` and returns its output.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli must be installed (scripts/test.sh installs redis-tools)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends one command (inline form) on a fresh connection, and returns the connection
    /// without waiting for the answer.
    pub(crate) fn send_command(&self, command: &str) -> TcpStream {
        let mut conn = TcpStream::connect(self.addr()).expect("connect to redis-server");
        conn.write_all(format!("{command}\r\n").as_bytes())
            .expect("send a command");
        conn
    }

    /// Sends one command and returns the first line of its answer.
    pub(crate) fn command(&self, command: &str) -> String {
        let conn = self.send_command(command);
        conn.set_read_timeout(Some(super::WAIT)).expect("timeout");
        let mut line = String::new();
        BufReader::new(conn)
            .read_line(&mut line)
            .expect("an answer from redis-server");
        line.trim_end().to_owned()
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and waits until it is gone.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    pub(crate) fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let addr = self.addr();
        super::wait_until("redis-server to accept connections", || {
            TcpStream::connect(addr).is_ok()
        });
    }
}

/// A port free when we look; the server takes it right after.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
