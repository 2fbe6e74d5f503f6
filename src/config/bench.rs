//! `switchboard bench`: the load generator.

use clap::Args;

/// Everything `switchboard bench` can be told.
///
/// Drives a running server (`--addr`) or one it starts itself in this process on the embedded
/// store: registers `--agents` specialists, each holding a WatchAssignments stream and reporting
/// completion after `--think-ms`, and runs `--callers` concurrent Assign callers at `--rate` (or flat
/// out). Every run stops by itself: after `--subtasks` subtasks or `--duration` seconds, whichever
/// comes first, then at most `--settle-timeout` seconds for outstanding work. Loopback only.
#[derive(Debug, Clone, Args)]
#[command(after_help = "\
The server's per-caller Assign rate limit (serve --assign-rate-limit, 50 a minute by default) must \
allow the load: each caller sends its own x-caller-id, so against a running server start it with \
--assign-rate-limit 0 (the embedded server is started that way). Run ids are unique, so runs against \
a shared server never collide; agents deregister at the end.")]
pub struct BenchConfig {
    /// Address of a running server to drive (host:port; must resolve to loopback only).
    #[arg(long, conflicts_with = "start_embedded")]
    pub addr: Option<String>,

    /// Start a server in this process, on 127.0.0.1 with a free port and no Assign rate limit; the
    /// default when no --addr is given. It runs on the embedded in-memory store unless
    /// --embedded-flag=--redis-url=... (and --embedded-flag=--database-url=...) select the
    /// production store.
    #[arg(long)]
    pub start_embedded: bool,

    /// Extra `serve` flag for the embedded server, e.g. --embedded-flag=--lease-ttl-ms=30000
    /// (repeatable).
    #[arg(
        long = "embedded-flag",
        value_name = "FLAG",
        allow_hyphen_values = true
    )]
    pub embedded_flags: Vec<String>,

    /// Process id of the server behind --addr, whose CPU and RSS are measured (default: the
    /// process listening on the --addr port, found in /proc; none found: not measured).
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Specialists to register, each with its own WatchAssignments stream.
    #[arg(long, default_value_t = 100)]
    pub agents: u32,

    /// Specialist type of the agents and of every subtask (must be one the server accepts).
    #[arg(long, default_value = "general")]
    pub specialist_type: String,

    /// max_concurrency each agent registers with.
    #[arg(long, default_value_t = 10)]
    pub max_concurrency: u32,

    /// How long an agent works on a subtask before it reports completion, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub think_ms: u64,

    /// Concurrent Assign callers, each with its own x-caller-id.
    #[arg(long, default_value_t = 16)]
    pub callers: u32,

    /// Total Assign calls per second over all callers; 0 = flat out (each caller sends its next
    /// call when the previous reply arrives).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,

    /// Most subtasks the measured phase submits (it also stops after --duration).
    #[arg(long, default_value_t = 100_000)]
    pub subtasks: u64,

    /// Longest the measured phase submits for, in seconds (it also stops after --subtasks).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Before the agents start, submit this many subtasks (they queue), then start the agents and
    /// time until every one of them has been delivered (drain time). 0 = no backlog phase.
    #[arg(long, default_value_t = 0)]
    pub backlog: u64,

    /// Longest the backlog may take to drain and complete, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub drain_timeout: f64,

    /// After the callers stop, longest to wait for outstanding subtasks to complete, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub settle_timeout: f64,

    /// Payload bytes per subtask.
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,

    /// HTTP/2 connections to the server; agents and callers are spread over them round-robin.
    #[arg(long, default_value_t = 4)]
    pub connections: u32,

    /// Client deadline of every call (grpc-timeout), in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub request_timeout_ms: u64,

    /// After the run, measure the transport floor for this many seconds: the same callers, flat
    /// out, calling grpc.health.v1.Health/Check (no store involved). 0 = not measured.
    #[arg(long, default_value_t = 0.0)]
    pub floor_secs: f64,

    /// Print exactly one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,

    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,

    /// Log filter for the generator and the embedded server (tracing EnvFilter syntax); logs go to
    /// stderr. The server's per-call info logs are off at the default.
    #[arg(long, default_value = "warn")]
    pub log_filter: String,
}
