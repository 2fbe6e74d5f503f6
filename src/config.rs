//! Command-line and environment configuration: the only place that reads the environment.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::domain::policy::{RoutingPolicy, ScoringWeights};
use crate::learned_scorer::trainer::TrainerSettings;
use crate::learned_scorer::EngineSettings;

/// Switchboard: a gRPC control plane that assigns work to AI agents and services.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server (embedded in-memory store).
    Serve(ServeConfig),
    /// Load generator: drive a server over real gRPC on loopback and print throughput and latency.
    Bench(BenchConfig),
    /// Apply the Postgres schema migrations the database does not have yet, then exit.
    Migrate(MigrateConfig),
    /// Compare routing policies (random, least-loaded, rules, learned, oracle) on a seeded
    /// synthetic world, driving the real embedded store and learned scorer.
    Simulate(SimulateConfig),
}

/// Where the performance factor of the score comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScorerKind {
    Rules,
    Learned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything `switchboard serve` can be told.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address the gRPC server listens on (port 0 picks a free port).
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Address of the Prometheus `/metrics` HTTP endpoint (port 0 picks a free port).
    #[arg(
        long,
        env = "SWITCHBOARD_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: SocketAddr,

    /// Serve no metrics endpoint.
    #[arg(long, env = "SWITCHBOARD_NO_METRICS")]
    pub no_metrics: bool,

    /// Specialist types that Assign and Register accept, comma separated.
    #[arg(
        long,
        env = "SWITCHBOARD_SPECIALIST_TYPES",
        value_delimiter = ',',
        default_value = "frontend,backend,testing,docs,general"
    )]
    pub specialist_types: Vec<String>,

    /// Type that takes subtasks no specialist of the requested type could ever serve ("" turns the fallback off).
    #[arg(long, env = "SWITCHBOARD_FALLBACK_TYPE", default_value = "general")]
    pub fallback_type: String,

    /// Weight of the capability factor in the score.
    #[arg(long, env = "SWITCHBOARD_WEIGHT_CAPABILITY", default_value_t = 0.4)]
    pub weight_capability: f64,

    /// Weight of the load factor in the score.
    #[arg(long, env = "SWITCHBOARD_WEIGHT_LOAD", default_value_t = 0.3)]
    pub weight_load: f64,

    /// Weight of the availability factor in the score.
    #[arg(long, env = "SWITCHBOARD_WEIGHT_AVAILABILITY", default_value_t = 0.2)]
    pub weight_availability: f64,

    /// Weight of the performance factor in the score (the four weights must add up to 1).
    #[arg(long, env = "SWITCHBOARD_WEIGHT_PERFORMANCE", default_value_t = 0.1)]
    pub weight_performance: f64,

    /// max_concurrency of a specialist that registers without one.
    #[arg(long, env = "SWITCHBOARD_DEFAULT_MAX_CONCURRENCY", default_value_t = 5)]
    pub default_max_concurrency: u32,

    /// A specialist lease not renewed for this long lapses: it goes OFFLINE and its work is requeued.
    #[arg(long, env = "SWITCHBOARD_LEASE_TTL_MS", default_value_t = 15_000)]
    pub lease_ttl_ms: u64,

    /// Heartbeat interval the server asks specialists for (must be below the lease TTL).
    #[arg(
        long,
        env = "SWITCHBOARD_HEARTBEAT_INTERVAL_MS",
        default_value_t = 5_000
    )]
    pub heartbeat_interval_ms: u64,

    /// How often the lease sweeper looks for lapsed leases.
    #[arg(long, env = "SWITCHBOARD_SWEEP_INTERVAL_MS", default_value_t = 1_000)]
    pub sweep_interval_ms: u64,

    /// How long a finished (COMPLETED, FAILED, CANCELLED) subtask stays in the live store after it
    /// finished, in milliseconds; then it is forgotten (with Postgres configured, GetAssignment
    /// still answers from Postgres), and its id may be used again.
    #[arg(long, env = "SWITCHBOARD_RETENTION_MS", default_value_t = 3_600_000)]
    pub retention_ms: u64,

    /// Hand-outs a subtask gets before it is FAILED (lease expiries and releases count).
    #[arg(long, env = "SWITCHBOARD_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,

    /// Per-call deadline; a shorter client deadline (grpc-timeout) wins. Expiry is DEADLINE_EXCEEDED.
    #[arg(long, env = "SWITCHBOARD_REQUEST_TIMEOUT_MS", default_value_t = 5_000)]
    pub request_timeout_ms: u64,

    /// Assign calls allowed per caller per minute (0 turns the limit off). The caller is the
    /// `x-caller-id` metadata value, or the peer IP address without one.
    #[arg(long, env = "SWITCHBOARD_ASSIGN_RATE_LIMIT", default_value_t = 50)]
    pub assign_rate_limit: u32,

    /// Unary calls in progress at once before new ones are shed with UNAVAILABLE.
    #[arg(
        long,
        env = "SWITCHBOARD_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1_024
    )]
    pub max_concurrent_requests: usize,

    /// On SIGTERM/SIGINT, how long to wait for calls to finish before exiting anyway.
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,

    /// Performance factor: `rules` (recent success window) or `learned` (a model trained online
    /// from completion reports; the rules serve until a model beats them on held-out reports).
    #[arg(long, env = "SWITCHBOARD_SCORER", value_enum, default_value_t = ScorerKind::Rules)]
    pub scorer: ScorerKind,

    /// With --scorer learned: retrain after this many new completion reports (0: only by time).
    #[arg(long, env = "SWITCHBOARD_TRAIN_EVERY_REPORTS", default_value_t = 500)]
    pub train_every_reports: u64,

    /// With --scorer learned: retrain when this many seconds passed since the last run and new
    /// reports came in (0: only by count).
    #[arg(long, env = "SWITCHBOARD_TRAIN_EVERY_SECS", default_value_t = 60)]
    pub train_every_secs: u64,

    /// With --scorer learned: completion reports a training run looks at (the newest).
    #[arg(long, env = "SWITCHBOARD_TRAIN_WINDOW", default_value_t = 4_000)]
    pub train_window: usize,

    /// With --scorer learned: fewest reports before the first training run.
    #[arg(long, env = "SWITCHBOARD_TRAIN_MIN_EXAMPLES", default_value_t = 200)]
    pub train_min_examples: usize,

    /// With --scorer learned: performance weight once the model has earned full trust (hold-out
    /// AUC 0.75); it starts at --weight-performance and the other weights shrink to make room.
    #[arg(long, env = "SWITCHBOARD_LEARNED_MAX_WEIGHT", default_value_t = 0.6)]
    pub learned_max_weight: f64,

    /// With --scorer learned: optimism bonus of a specialist never seen on a capability, so
    /// newcomers get tried (it shrinks as 1/sqrt(1 + outcomes seen)).
    #[arg(long, env = "SWITCHBOARD_EXPLORATION", default_value_t = 0.1)]
    pub exploration: f64,

    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "SWITCHBOARD_LOG", default_value = "info")]
    pub log_filter: String,

    /// Log format.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Redis URL (redis://host:port/db): run on the production store, live state in Redis. Unset:
    /// the embedded in-memory store.
    #[arg(long, env = "SWITCHBOARD_REDIS_URL")]
    pub redis_url: Option<String>,

    /// --redis-url names a Redis Cluster (comma-separated URLs of some of its nodes): commands go
    /// to the node serving their key's slot. Each specialist type is one slot.
    #[arg(long, env = "SWITCHBOARD_REDIS_CLUSTER", requires = "redis_url")]
    pub redis_cluster: bool,

    /// Namespace of this deployment's Redis keys (`sb:{<namespace>:<type>}:...`, one hash tag per
    /// specialist type, and the directory `sb:{<namespace>/...}`); replicas of one deployment
    /// share it.
    #[arg(
        long,
        env = "SWITCHBOARD_REDIS_NAMESPACE",
        default_value = "switchboard"
    )]
    pub redis_namespace: String,

    /// Most pooled Redis connections per replica.
    #[arg(long, env = "SWITCHBOARD_REDIS_POOL_SIZE", default_value_t = 32)]
    pub redis_pool_size: usize,

    /// Postgres URL (postgres://user@host/db): durable state and history, written behind Redis
    /// through the outbox. Needs --redis-url.
    #[arg(long, env = "SWITCHBOARD_DATABASE_URL", requires = "redis_url")]
    pub database_url: Option<String>,

    /// Outbox entries of one specialist type not yet written to Postgres beyond which Assign of
    /// that type answers RESOURCE_EXHAUSTED (assignment of accepted work, completion and release go
    /// on). Each type has its own outbox stream.
    #[arg(long, env = "SWITCHBOARD_OUTBOX_BOUND", default_value_t = 1_000_000)]
    pub outbox_bound: u64,

    /// Longest one Redis or Postgres call may take before it counts as a failure, in milliseconds.
    #[arg(long, env = "SWITCHBOARD_STORE_TIMEOUT_MS", default_value_t = 2_000)]
    pub store_timeout_ms: u64,

    /// Consecutive failures of Redis (or Postgres) that open its circuit breaker.
    #[arg(long, env = "SWITCHBOARD_BREAKER_THRESHOLD", default_value_t = 5)]
    pub breaker_threshold: u32,

    /// How long an open circuit breaker fails calls fast before it lets a trial call through, in
    /// milliseconds.
    #[arg(long, env = "SWITCHBOARD_BREAKER_OPEN_MS", default_value_t = 30_000)]
    pub breaker_open_ms: u64,
}

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

/// Everything `switchboard simulate` can be told.
///
/// Specialists have hidden per-capability skill and speed; subtasks arrive as a seeded Poisson
/// stream needing one or two capabilities; outcomes are drawn from the hidden skill. Every policy
/// sees the same stream and the same outcome for the same (subtask, specialist). Progress goes to
/// stderr, the table (or `--json`) to stdout.
#[derive(Debug, Clone, Args)]
pub struct SimulateConfig {
    /// Seed of the world, the stream and the outcomes: the same seed repeats a run exactly.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Subtasks in the stream.
    #[arg(long, default_value_t = 10_000)]
    pub subtasks: usize,

    /// The "after" success rate counts only subtasks after this many.
    #[arg(long, default_value_t = 5_000)]
    pub warmup: usize,

    /// Specialists in the fleet (one type).
    #[arg(long, default_value_t = 24)]
    pub specialists: usize,

    /// Distinct capabilities in the world.
    #[arg(long, default_value_t = 8)]
    pub capabilities: usize,

    /// Capabilities each specialist has.
    #[arg(long, default_value_t = 3)]
    pub capabilities_per_specialist: usize,

    /// Spread of hidden skill around 0.5 (0: everyone equal; 0.9: 0.05..0.95).
    #[arg(long, default_value_t = 0.9)]
    pub skill_spread: f64,

    /// Offered load as a share of the fleet's capacity.
    #[arg(long, default_value_t = 0.7)]
    pub load: f64,

    /// max_concurrency of every specialist.
    #[arg(long, default_value_t = 2)]
    pub max_concurrency: u32,

    /// Mean time a specialist works on a subtask (virtual milliseconds).
    #[arg(long, default_value_t = 1_000.0)]
    pub mean_duration_ms: f64,

    /// Subtask index from which the skills of `--drift-share` of the specialists are redrawn
    /// (0: no drift).
    #[arg(long, default_value_t = 0)]
    pub drift_at: usize,

    /// Share of specialists whose skills change at the drift.
    #[arg(long, default_value_t = 0.5)]
    pub drift_share: f64,

    /// The learned policy retrains after this many reports.
    #[arg(long, default_value_t = 250)]
    pub train_every_reports: u64,

    /// Performance weight of the learned factor once the model has earned full trust.
    #[arg(long, default_value_t = 0.6)]
    pub learned_max_weight: f64,

    /// Write the cumulative regret plot (SVG) to this file.
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,

    /// Print exactly one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,

    /// No progress on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Everything `switchboard migrate` can be told.
///
/// Applies the numbered migrations built into this binary (from `sql/`) that the database lacks,
/// in order, each once, holding a Postgres advisory lock so that concurrent runs (and servers
/// starting at the same time) take turns. Prints each migration it applies. Fails, changing
/// nothing, if an applied migration differs from this binary's copy or is unknown to it.
#[derive(Debug, Clone, Args)]
pub struct MigrateConfig {
    /// PostgreSQL connection URL, e.g. postgres://switchboard@127.0.0.1:5432/switchboard (no TLS
    /// yet: sslmode must allow a plain connection).
    #[arg(long, env = "SWITCHBOARD_DATABASE_URL")]
    pub database_url: String,
}

/// Threads candle's CPU kernels use (its own pool and spin barriers, sized once per process from
/// `CANDLE_NUM_THREADS`). The learned scorer's batches are tiny: one thread is several times
/// faster than two spinning on a barrier, and leaves the other core to the server. Sets
/// `CANDLE_NUM_THREADS` from `SWITCHBOARD_MODEL_THREADS` (default 1) unless it is set already.
/// Call before any other thread starts.
pub fn configure_model_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_some() {
        return;
    }
    let threads = std::env::var("SWITCHBOARD_MODEL_THREADS")
        .ok()
        .and_then(|value| value.parse::<usize>().ok())
        .filter(|threads| *threads > 0)
        .unwrap_or(1);
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
}

/// A configuration value that cannot work, found before anything starts.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl ServeConfig {
    /// Parses serve flags from an argument list (without the `serve` word); used by tests and tools.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            serve: ServeConfig,
        }
        let argv = std::iter::once(std::ffi::OsString::from("switchboard"))
            .chain(args.into_iter().map(Into::into));
        Wrapper::try_parse_from(argv).map(|wrapper| wrapper.serve)
    }

    /// The Redis store's settings, when --redis-url selects it.
    pub fn redis_store_config(&self) -> Option<crate::store::redis::RedisStoreConfig> {
        let url = self.redis_url.as_ref()?;
        let mut config = crate::store::redis::RedisStoreConfig::new(url.clone());
        config.cluster = self.redis_cluster;
        config.namespace = self.redis_namespace.clone();
        config.pool_size = self.redis_pool_size.max(1);
        config.command_timeout = std::time::Duration::from_millis(self.store_timeout_ms.max(1));
        config.breaker = crate::store::breaker::BreakerConfig {
            threshold: self.breaker_threshold.max(1),
            open_for: std::time::Duration::from_millis(self.breaker_open_ms),
        };
        config.outbox = self.database_url.is_some();
        config.outbox_bound = self.outbox_bound.max(1);
        Some(config)
    }

    /// The learned engine's settings, or None with `--scorer rules`.
    pub fn engine_settings(&self) -> Result<Option<EngineSettings>, ConfigError> {
        if self.scorer == ScorerKind::Rules {
            return Ok(None);
        }
        if !(0.0..=1.0).contains(&self.learned_max_weight)
            || !(0.0..=1.0).contains(&self.exploration)
        {
            return Err(ConfigError(
                "--learned-max-weight and --exploration must be between 0 and 1".into(),
            ));
        }
        if self.train_every_reports == 0 && self.train_every_secs == 0 {
            return Err(ConfigError(
                "--train-every-reports and --train-every-secs cannot both be 0".into(),
            ));
        }
        Ok(Some(EngineSettings {
            trainer: TrainerSettings {
                window: self.train_window.max(10),
                min_examples: self.train_min_examples,
                ..TrainerSettings::default()
            },
            train_every_reports: self.train_every_reports,
            train_every: (self.train_every_secs > 0)
                .then(|| std::time::Duration::from_secs(self.train_every_secs)),
            base_performance_weight: self.weight_performance,
            max_performance_weight: self.learned_max_weight.max(self.weight_performance),
            exploration: self.exploration,
            background_training: true,
            ..EngineSettings::default()
        }))
    }

    /// The routing rules this configuration asks for, checked for consistency.
    pub fn routing_policy(&self) -> Result<RoutingPolicy, ConfigError> {
        let weights = ScoringWeights {
            capability: self.weight_capability,
            load: self.weight_load,
            availability: self.weight_availability,
            performance: self.weight_performance,
        };
        weights.validate().map_err(ConfigError)?;
        let mut types: Vec<String> = Vec::new();
        for raw in &self.specialist_types {
            let name = raw.trim();
            if name.is_empty() || types.iter().any(|known| known == name) {
                continue;
            }
            types.push(name.to_string());
        }
        if types.is_empty() {
            return Err(ConfigError("--specialist-types names no type".into()));
        }
        let fallback_type = match self.fallback_type.trim() {
            "" => None,
            name if types.iter().any(|known| known == name) => Some(name.to_string()),
            name => {
                return Err(ConfigError(format!(
                    "--fallback-type {name} is not one of --specialist-types"
                )))
            }
        };
        if self.default_max_concurrency == 0 {
            return Err(ConfigError(
                "--default-max-concurrency must be at least 1".into(),
            ));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError("--max-attempts must be at least 1".into()));
        }
        if self.lease_ttl_ms == 0 || self.heartbeat_interval_ms >= self.lease_ttl_ms {
            return Err(ConfigError(
                "--heartbeat-interval-ms must be below --lease-ttl-ms (and the TTL above 0)".into(),
            ));
        }
        Ok(RoutingPolicy {
            specialist_types: types,
            fallback_type,
            weights,
            default_max_concurrency: self.default_max_concurrency,
            lease_ttl_ms: self.lease_ttl_ms as i64,
            max_attempts: self.max_attempts,
            retention_ms: self.retention_ms.min(i64::MAX as u64) as i64,
        })
    }
}
