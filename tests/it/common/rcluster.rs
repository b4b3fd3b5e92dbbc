//! A real Redis Cluster (`redis-server --cluster-enabled yes` per node, joined by `redis-cli
//! --cluster create`) and a real Sentinel setup (a master, a replica, one sentinel with quorum
//! 1), each on free ports for one test, without persistence; killed on drop.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::jwt::KeyDir;
use super::redis::RedisServer;
use super::{free_port, wait_within, Reaped};

/// How long a cluster has to settle (slots covered, or a failover done) before the test fails.
pub(crate) const SETTLE: Duration = Duration::from_secs(30);

pub(crate) struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _dir: KeyDir,
}

impl RedisCluster {
    /// `masters` masters with `replicas` replicas each; returns once every slot is served.
    pub(crate) fn start(masters: usize, replicas: usize) -> RedisCluster {
        let dir = KeyDir::new();
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| {
                let port = node_port();
                let conf = format!("nodes-{port}.conf");
                let dir = dir.path.to_string_lossy().into_owned();
                RedisServer::start_on(
                    port,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &conf,
                        "--dir",
                        &dir,
                        "--cluster-node-timeout",
                        "1000",
                        // A replica takes over however long it was cut off from its master
                        // (a cluster this young may not have finished its first sync).
                        "--cluster-replica-validity-factor",
                        "0",
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed (scripts/test.sh installs redis-tools)");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { nodes, _dir: dir };
        cluster.wait_ok();
        cluster
    }

    /// Every node's URL, comma-separated (`--redis` in sharded mode takes several).
    pub(crate) fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until every live node says `cluster_state:ok` and sees every slot served.
    pub(crate) fn wait_ok(&self) {
        let ok = wait_within(SETTLE, || {
            let ok = self
                .nodes
                .iter()
                .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"));
            if !ok {
                // Polling interval: each poll starts a redis-cli per node.
                std::thread::sleep(Duration::from_millis(100));
            }
            ok
        });
        assert!(ok, "the Redis Cluster did not settle within {SETTLE:?}");
    }

    /// The index of the master that serves `key`'s slot now.
    pub(crate) fn master_of(&self, key: &str) -> usize {
        let slot: u16 = self.nodes[0]
            .cli(&["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("a slot number");
        let nodes = self.nodes[0].cli(&["cluster", "nodes"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                match (lo.parse::<u16>(), hi.parse::<u16>()) {
                    (Ok(lo), Ok(hi)) => (lo..=hi).contains(&slot),
                    _ => false,
                }
            });
            if serves {
                let port: u16 = fields[1]
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|p| p.parse().ok())
                    .expect("a node address");
                return self
                    .nodes
                    .iter()
                    .position(|n| n.port == port)
                    .expect("a node of this cluster");
            }
        }
        panic!("no master serves slot {slot}: {nodes}");
    }

    /// `PUBSUB SHARDNUMSUB channel` on the master of the channel's slot: how many connections
    /// subscribe to it.
    pub(crate) fn shardnumsub(&self, channel: &str) -> i64 {
        let master = &self.nodes[self.master_of(channel)];
        let out = master.cli(&["pubsub", "shardnumsub", channel]);
        // redis-cli prints the channel, then the count, one per line.
        out.lines()
            .nth(1)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("PUBSUB SHARDNUMSUB {channel}: {out:?}"))
    }

    /// Moves `key`'s slot (which must hold no keys) from its master to the master `to`, as the
    /// last step of a resharding does (`CLUSTER SETSLOT <slot> NODE <id>` on every node).
    pub(crate) fn move_slot(&self, key: &str, to: usize) {
        let slot = self.nodes[0]
            .cli(&["cluster", "keyslot", key])
            .trim()
            .to_owned();
        let id = self.nodes[to].cli(&["cluster", "myid"]).trim().to_owned();
        let from = self.master_of(key);
        let order = std::iter::once(to)
            .chain(std::iter::once(from))
            .chain((0..self.nodes.len()).filter(|&i| i != to && i != from));
        for i in order {
            let answer = self.nodes[i].cli(&["cluster", "setslot", &slot, "node", &id]);
            assert_eq!(answer.trim(), "OK", "CLUSTER SETSLOT on node {i}");
        }
        let moved = wait_within(SETTLE, || self.master_of(key) == to);
        assert!(moved, "the slot did not move");
    }

    /// Kills node `i` (SIGKILL) and drops it from the nodes asked about the cluster's state.
    pub(crate) fn kill(&mut self, i: usize) {
        let mut node = self.nodes.remove(i);
        node.kill();
    }
}

/// A free port for a cluster node: Redis refuses ports above 55535, whose cluster bus port
/// (10000 higher) would not exist.
fn node_port() -> u16 {
    std::iter::repeat_with(free_port)
        .find(|&port| port <= 55535)
        .expect("a free port")
}

/// A master, one replica, and one sentinel watching them as `mymaster` with quorum 1.
pub(crate) struct SentinelSetup {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel_port: u16,
    _sentinel: Reaped,
    _dir: KeyDir,
}

impl SentinelSetup {
    pub(crate) fn start() -> SentinelSetup {
        // Replication writes an RDB file: in the test's directory.
        let dir = KeyDir::new();
        let data = dir.path.to_string_lossy().into_owned();
        let master = RedisServer::start_with(&["--dir", &data, "--dbfilename", "master.rdb"]);
        let master_port = master.port.to_string();
        let replica = RedisServer::start_with(&[
            "--dir",
            &data,
            "--dbfilename",
            "replica.rdb",
            "--replicaof",
            "127.0.0.1",
            &master_port,
        ]);
        let synced = wait_within(SETTLE, || {
            replica
                .cli(&["info", "replication"])
                .contains("master_link_status:up")
        });
        assert!(synced, "the replica did not sync");
        let sentinel_port = free_port();
        // The sentinel rewrites its file: it lives in the test's directory.
        let conf = dir.path.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {sentinel_port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds mymaster 1000\n\
                 sentinel failover-timeout mymaster 4000\n",
                dir.path.display()
            ),
        )
        .expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        let sentinel = Reaped(child);
        let watching = wait_within(SETTLE, || {
            sentinel_cli(sentinel_port, &["sentinel", "replicas", "mymaster"])
                .contains(&replica.port.to_string())
        });
        assert!(watching, "the sentinel did not find the replica");
        SentinelSetup {
            master,
            replica,
            sentinel_port,
            _sentinel: sentinel,
            _dir: dir,
        }
    }

    pub(crate) fn sentinel(&self) -> String {
        format!("127.0.0.1:{}", self.sentinel_port)
    }

    /// Runs `redis-cli` against the sentinel; returns its output.
    pub(crate) fn sentinel_cli(&self, args: &[&str]) -> String {
        sentinel_cli(self.sentinel_port, args)
    }
}

fn sentinel_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli must be installed (scripts/test.sh installs redis-tools)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
