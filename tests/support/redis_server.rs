//! A private `redis-server` for fault tests: its own free port and temp dir, no persistence, killed
//! on drop. Tests may kill, restart, pause and resume it without touching the shared Redis.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{EVENTUALLY, POLL_EVERY};

/// How long three nodes may take to agree they form a cluster (gossip; seconds on a busy machine).
const CLUSTER_FORMS_WITHIN: Duration = Duration::from_secs(30);

/// Attempts at finding a port no one else takes between our probe and redis-server's bind.
const START_ATTEMPTS: usize = 5;

/// One redis-server child process (Redis 7 on PATH) in a temp dir of its own.
/// Whether a key exists on the Redis at `url` (a test peeking at what the store keeps).
pub async fn exists(url: &str, key: &str) -> bool {
    let mut connection = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(&mut connection)
        .await
        .unwrap()
        == 1
}

pub struct PrivateRedis {
    port: u16,
    /// The cluster bus port of a cluster node (its own free port: the default, port + 10,000, may
    /// be taken or above 65,535).
    bus_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// A node of a Redis Cluster (`cluster-enabled yes`; PrivateCluster assigns its slots).
    cluster: bool,
    /// `appendonly yes` + `appendfsync always`: a restart replays what was acknowledged.
    persistent: bool,
}

impl PrivateRedis {
    /// Spawns redis-server on a free port and waits until it answers PING.
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// With `appendonly yes` and `appendfsync always` (every write is on disk before its reply),
    /// so `restart` comes back with everything that was acknowledged.
    pub async fn start_persistent() -> Self {
        let mut redis = Self::start_with(false).await;
        redis.kill();
        redis.persistent = true;
        assert!(
            redis.spawn_and_wait().await,
            "redis-server with an AOF did not start; its log:\n{}",
            redis.log()
        );
        redis
    }

    async fn start_with(cluster: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("switchboard-redis-")
            .tempdir()
            .expect("a temp dir for redis-server");
        let mut redis = Self {
            port: free_port(),
            bus_port: free_port(),
            dir,
            child: None,
            cluster,
            persistent: false,
        };
        for _ in 1..START_ATTEMPTS {
            if redis.spawn_and_wait().await {
                return redis;
            }
            // Most likely someone took the port between our probe and the bind: try another.
            redis.port = free_port();
            redis.bus_port = free_port();
        }
        assert!(
            redis.spawn_and_wait().await,
            "redis-server did not start after {START_ATTEMPTS} attempts; its log:\n{}",
            redis.log()
        );
        redis
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server is running").id()
    }

    /// SIGKILL, and waits until the process is gone (its port is free again).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server (if running) and starts a new one on the same port and dir: no scripts, and
    /// no data unless it is persistent (then it replays its AOF).
    pub async fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn_and_wait().await,
            "redis-server did not come back on port {}; its log:\n{}",
            self.port,
            self.log()
        );
    }

    /// SIGSTOP: connections stay open (and new ones are accepted by the kernel) but nothing answers.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// SCRIPT FLUSH: every cached Lua script is forgotten.
    pub async fn script_flush(&self) {
        let reply = self.command(&["SCRIPT", "FLUSH"]).await;
        assert_eq!(reply, redis::Value::Okay, "SCRIPT FLUSH");
    }

    /// A connection of the test's own (e.g. one that must outlive a lowered maxclients).
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("a valid redis url")
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|error| panic!("connecting to {}: {error}", self.url()))
    }

    /// Runs one command on a fresh connection; panics on error.
    pub async fn command(&self, args: &[&str]) -> redis::Value {
        self.try_command(args)
            .await
            .unwrap_or_else(|error| panic!("redis command {args:?}: {error}"))
    }

    /// Runs one command on a fresh connection.
    pub async fn try_command(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(self.url())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query_async(&mut connection).await
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> std::path::PathBuf {
        self.dir.path().join("redis.log")
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal}) failed");
    }

    /// Spawns on `self.port` and polls PING; false if the process exits or never answers.
    async fn spawn_and_wait(&mut self) -> bool {
        debug_assert!(self.child.is_none(), "one redis-server per PrivateRedis");
        let mut command = Command::new("redis-server");
        if self.cluster {
            command
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-port", &self.bus_port.to_string()]);
        }
        let child = command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(if self.persistent {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "everysec"]
            })
            .args(["--protected-mode", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning redis-server (is it on PATH?)");
        self.child = Some(child);
        let deadline = Instant::now() + EVENTUALLY;
        let mut interval = tokio::time::interval(POLL_EVERY);
        loop {
            interval.tick().await;
            if self.answers_ping().await {
                return true;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
                .is_some();
            if exited || Instant::now() >= deadline {
                self.kill();
                return false;
            }
        }
    }

    async fn answers_ping(&self) -> bool {
        let ping = tokio::time::timeout(Duration::from_secs(1), self.try_command(&["PING"]));
        matches!(ping.await, Ok(Ok(redis::Value::SimpleString(pong))) if pong == "PONG")
    }
}

/// A private three-node Redis Cluster (no replicas): slots 0-5460, 5461-10922 and 10923-16383,
/// one range per node, so the types' slots and the directory spread over the nodes.
pub struct PrivateCluster {
    nodes: Vec<PrivateRedis>,
}

impl PrivateCluster {
    pub async fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(PrivateRedis::start_with(true).await);
        }
        let ranges = [("0", "5460"), ("5461", "10922"), ("10923", "16383")];
        for (node, (first, last)) in nodes.iter().zip(ranges) {
            node.command(&["CLUSTER", "ADDSLOTSRANGE", first, last])
                .await;
        }
        for node in &nodes[1..] {
            let port = nodes[0].port.to_string();
            let bus_port = nodes[0].bus_port.to_string();
            node.command(&["CLUSTER", "MEET", "127.0.0.1", &port, &bus_port])
                .await;
        }
        let deadline = Instant::now() + CLUSTER_FORMS_WITHIN;
        let mut interval = tokio::time::interval(POLL_EVERY);
        loop {
            interval.tick().await;
            let mut ready = true;
            for node in &nodes {
                let info = node.command(&["CLUSTER", "INFO"]).await;
                let ok = matches!(&info, redis::Value::BulkString(text)
                    if String::from_utf8_lossy(text).contains("cluster_state:ok")
                        && String::from_utf8_lossy(text).contains("cluster_known_nodes:3"));
                ready &= ok;
            }
            if ready {
                return Self { nodes };
            }
            assert!(
                Instant::now() < deadline,
                "the three-node cluster never reached cluster_state:ok; first node's log:\n{}",
                nodes[0].log()
            );
        }
    }

    /// Node `index` (0..3), to pause, resume or kill.
    pub fn node(&self, index: usize) -> &PrivateRedis {
        &self.nodes[index]
    }

    /// The nodes' URLs, comma-separated (what --redis-url takes with --redis-cluster).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(PrivateRedis::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped (paused) process.
        self.kill();
    }
}

/// A port nothing listens on right now (the OS picks it; redis-server binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port on 127.0.0.1")
}
