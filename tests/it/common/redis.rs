//! A real `redis-server` for one test, on a free port, without persistence unless asked;
//! killed on drop. It can be killed and restarted on the same port to test faults.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) struct RedisServer {
    pub port: u16,
    /// More `redis-server` options.
    options: Vec<String>,
    child: Option<Child>,
    /// The data directory of a persistent server, removed on drop.
    dir: Option<PathBuf>,
}

impl RedisServer {
    pub(crate) fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// A server started with more `redis-server` options.
    pub(crate) fn start_with(options: &[&str]) -> RedisServer {
        RedisServer::start_on(super::free_port(), options)
    }

    /// A server on `port` started with more `redis-server` options (`--sentinel` makes it a
    /// sentinel).
    pub(crate) fn start_on(port: u16, options: &[&str]) -> RedisServer {
        let options = options.iter().map(|o| (*o).to_owned()).collect();
        RedisServer::start_in(port, options, false)
    }

    /// A server that keeps its data across a kill: an append-only file, synced before each
    /// reply (`appendfsync always`), in a directory of its own.
    pub(crate) fn start_persistent() -> RedisServer {
        let options = ["--appendonly", "yes", "--appendfsync", "always"];
        let options = options.iter().map(|o| (*o).to_owned()).collect();
        RedisServer::start_in(super::free_port(), options, true)
    }

    fn start_in(port: u16, mut options: Vec<String>, persistent: bool) -> RedisServer {
        let dir = persistent.then(|| {
            let dir =
                std::env::temp_dir().join(format!("shardio-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a data directory");
            options.extend(["--dir".to_owned(), dir.display().to_string()]);
            dir
        });
        let mut server = RedisServer {
            port,
            options,
            child: None,
            dir,
        };
        // The free port may be taken by another test's server between the look and the
        // bind: that redis-server exits, and the connection check would reach the other
        // test's server. Then try another port.
        for _ in 0..5 {
            if server.try_start() {
                return server;
            }
            server.port = super::free_port();
        }
        panic!("redis-server did not start on 5 free ports");
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
        assert!(
            self.try_start(),
            "redis-server exited at once: port {} taken by another process?",
            self.port
        );
    }

    /// [`RedisServer::restart`]; false when the new server exited at once (its port taken).
    fn try_start(&mut self) -> bool {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        let pid = child.id();
        self.child = Some(child);
        // Ours answers (its process id, not another test's server on the port), or it exited.
        super::wait_until("redis-server to accept connections", || {
            self.process_id() == Some(pid) || self.exited()
        });
        !self.exited()
    }

    /// The process id of the server answering on the port, if one answers.
    fn process_id(&self) -> Option<u32> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut con = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        let info: String = redis::cmd("INFO").arg("server").query(&mut con).ok()?;
        let line = info.lines().find(|l| l.starts_with("process_id:"))?;
        line["process_id:".len()..].trim().parse().ok()
    }

    /// Whether the server process has exited.
    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|child| !matches!(child.try_wait(), Ok(None)))
    }
}

impl RedisServer {
    /// A connection of the `redis` crate, for commands whose answers are more than a line.
    pub(crate) fn connection(&self) -> redis::Connection {
        let con = redis::Client::open(self.url())
            .expect("a Redis URL")
            .get_connection()
            .expect("connect to Redis");
        con.set_read_timeout(Some(super::WAIT)).expect("timeout");
        con
    }

    /// `PUBSUB NUMSUB channel`: how many connections subscribe to `channel`.
    pub(crate) fn numsub(&self, channel: &str) -> i64 {
        let reply: Vec<redis::Value> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query(&mut self.connection())
            .expect("PUBSUB NUMSUB");
        redis::from_redis_value_ref(&reply[1]).expect("a count")
    }

    /// `PUBSUB CHANNELS pattern`, sorted.
    pub(crate) fn channels(&self, pattern: &str) -> Vec<String> {
        let mut names: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg(pattern)
            .query(&mut self.connection())
            .expect("PUBSUB CHANNELS");
        names.sort();
        names
    }

    /// How many times `command` (lower case, e.g. `subscribe`) ran, from `INFO commandstats`.
    pub(crate) fn command_calls(&self, command: &str) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.connection())
            .expect("INFO commandstats");
        let key = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|line| line.strip_prefix(&key))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().expect("a call count"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
