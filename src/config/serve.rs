//! `switchboard serve`: the server, its stores and its rules.

use std::net::SocketAddr;

use clap::{Args, Parser};

use crate::domain::policy::{RoutingPolicy, ScoringWeights};
use crate::learned_scorer::trainer::TrainerSettings;
use crate::learned_scorer::EngineSettings;

use super::{ConfigError, LogFormat, ScorerKind};

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

    /// A specialist lease not renewed for this long lapses: it goes OFFLINE and its work is requeued
    /// [default: 15000; 3600000 with --dev].
    #[arg(long, env = "SWITCHBOARD_LEASE_TTL_MS")]
    pub lease_ttl_ms: Option<u64>,

    /// Heartbeat interval the server asks specialists for (must be below the lease TTL)
    /// [default: 5000; 1200000 with --dev].
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,

    /// Development profile (`make run`): leases last an hour unless --lease-ttl-ms says otherwise,
    /// so a person can follow the README's walk-through at their own pace without heartbeating.
    /// Not for production: a crashed agent keeps its work for that hour.
    #[arg(long, env = "SWITCHBOARD_DEV")]
    pub dev: bool,

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

    /// Client connections this server keeps open at most; one more is closed as it is accepted.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Close a client connection after this many ms without an open call (an open
    /// WatchAssignments stream counts as a call); 0 never closes one.
    #[arg(long, env = "SWITCHBOARD_IDLE_TIMEOUT_MS", default_value_t = 300_000)]
    pub idle_timeout_ms: u64,

    /// HTTP/2 streams (calls) one connection may have open at once.
    #[arg(
        long,
        env = "SWITCHBOARD_MAX_CONCURRENT_STREAMS",
        default_value_t = 256
    )]
    pub max_concurrent_streams: u32,

    /// Largest HTTP/2 header list (all metadata of one call) accepted, in bytes.
    #[arg(
        long,
        env = "SWITCHBOARD_MAX_HEADER_LIST_BYTES",
        default_value_t = 16_384
    )]
    pub max_header_list_bytes: u32,

    /// WatchAssignments streams one caller (token, certificate, x-caller-id or address) keeps
    /// open at most on this server; one more is RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "SWITCHBOARD_MAX_WATCH_STREAMS_PER_CALLER",
        default_value_t = 64
    )]
    pub max_watch_streams_per_caller: usize,

    /// WatchAssignments streams this server keeps open at most; one more is RESOURCE_EXHAUSTED.
    #[arg(long, env = "SWITCHBOARD_MAX_WATCH_STREAMS", default_value_t = 10_000)]
    pub max_watch_streams: usize,

    /// Serve gRPC over TLS with this certificate chain (PEM); needs --tls-key. Read at start, and
    /// again on SIGHUP or when it changes.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Mutual TLS: accept only clients with a certificate signed by one of these CAs (PEM).
    #[arg(long, env = "SWITCHBOARD_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<std::path::PathBuf>,

    /// Require `authorization: Bearer <token>` on the four services, tokens signed by this key
    /// (a file from `switchboard token keygen`; its `.pub` file is enough). Repeat to trust several
    /// keys while rotating. Health and reflection stay open. Read at start.
    #[arg(
        long = "auth-key-file",
        env = "SWITCHBOARD_AUTH_KEY_FILE",
        value_delimiter = ','
    )]
    pub auth_key_files: Vec<std::path::PathBuf>,

    /// With --auth-key-file: token ids (`jti`, one per line, `#` comments) refused although their
    /// signature and expiry are good. Read at start.
    #[arg(
        long,
        env = "SWITCHBOARD_AUTH_REVOKED_FILE",
        requires = "auth_key_files"
    )]
    pub auth_revoked_file: Option<std::path::PathBuf>,

    /// A service-mesh sidecar (by IP address) that terminates mutual TLS for this server: from
    /// it, the identity in --identity-header is the caller's (for per-caller limits). Repeat for
    /// several; from any other peer the header is ignored.
    #[arg(
        long = "trusted-proxy",
        env = "SWITCHBOARD_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// The header a trusted proxy names the caller in: Envoy's `x-forwarded-client-cert` (its
    /// URI=, else DNS= field) or any header holding the identity itself.
    #[arg(
        long,
        env = "SWITCHBOARD_IDENTITY_HEADER",
        default_value = "x-forwarded-client-cert"
    )]
    pub identity_header: String,

    /// Serve without authentication on an address other than loopback. Without --auth-key-file
    /// the server refuses to listen beyond loopback unless this is given (anyone who can connect
    /// can then act for any agent).
    #[arg(long, env = "SWITCHBOARD_INSECURE")]
    pub insecure: bool,

    /// With --tls-cert: how often to look whether the TLS files changed (they are also read again
    /// on SIGHUP).
    #[arg(long, env = "SWITCHBOARD_TLS_RELOAD_CHECK_MS", default_value_t = 5_000)]
    pub tls_reload_check_ms: u64,

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

const LEASE_TTL_MS: u64 = 15_000;
const HEARTBEAT_INTERVAL_MS: u64 = 5_000;
/// The development profile's lease: an hour, long enough to follow the walk-through by hand.
const DEV_LEASE_TTL_MS: u64 = 3_600_000;

/// A connection URL (or comma-separated URLs) with any user and password taken out.
fn without_credentials(urls: &str) -> String {
    urls.split(',')
        .map(|url| match (url.split_once("://"), url.rfind('@')) {
            (Some((scheme, _)), Some(at)) => format!("{scheme}://{}", &url[at + 1..]),
            _ => url.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

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

    /// The lease TTL in force: the flag, else the profile's default.
    pub fn lease_ttl_ms(&self) -> u64 {
        self.lease_ttl_ms.unwrap_or(if self.dev {
            DEV_LEASE_TTL_MS
        } else {
            LEASE_TTL_MS
        })
    }

    /// The heartbeat interval asked of specialists: the flag, else a third of the lease TTL (the
    /// defaults: 5 s of 15 s; 20 minutes of the development profile's hour).
    pub fn heartbeat_interval_ms(&self) -> u64 {
        self.heartbeat_interval_ms
            .unwrap_or(match self.lease_ttl_ms {
                Some(_) => HEARTBEAT_INTERVAL_MS.min(self.lease_ttl_ms() / 3),
                None => self.lease_ttl_ms() / 3,
            })
    }

    /// The store this configuration runs on, for the start-up log (no credentials).
    pub fn store_description(&self) -> String {
        let Some(redis_url) = &self.redis_url else {
            return "embedded in-memory store (no Redis/Postgres configured; state is lost on exit)"
                .into();
        };
        let redis = if self.redis_cluster {
            format!("redis cluster {}", without_credentials(redis_url))
        } else {
            format!("redis {}", without_credentials(redis_url))
        };
        let postgres = match &self.database_url {
            Some(url) => format!("postgres {}", without_credentials(url)),
            None => "no postgres (no history, no outage acceptance)".into(),
        };
        format!(
            "production store: {redis} (namespace {}), {postgres}",
            self.redis_namespace
        )
    }

    /// Refuses to serve without authentication beyond loopback unless --insecure says so.
    pub fn check_exposure(&self) -> Result<(), ConfigError> {
        if self.auth_key_files.is_empty() && !self.listen.ip().is_loopback() && !self.insecure {
            return Err(ConfigError(format!(
                "--listen {} is not a loopback address and no --auth-key-file is given: anyone who \
                 can connect could act for any agent. Give --auth-key-file (see `switchboard token \
                 keygen`), listen on 127.0.0.1, or pass --insecure to serve unauthenticated anyway",
                self.listen
            )));
        }
        Ok(())
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
        if self.lease_ttl_ms() == 0 || self.heartbeat_interval_ms() >= self.lease_ttl_ms() {
            return Err(ConfigError(
                "--heartbeat-interval-ms must be below --lease-ttl-ms (and the TTL above 0)".into(),
            ));
        }
        Ok(RoutingPolicy {
            specialist_types: types,
            fallback_type,
            weights,
            default_max_concurrency: self.default_max_concurrency,
            lease_ttl_ms: self.lease_ttl_ms() as i64,
            max_attempts: self.max_attempts,
            retention_ms: self.retention_ms.min(i64::MAX as u64) as i64,
        })
    }
}
