//! Command-line and environment configuration: the only place that reads the environment. One
//! file per subcommand (serve, bench, simulate, migrate, token); `--help` shows each flag's doc comment.

mod bench;
mod migrate;
mod serve;
mod simulate;
mod token;

use clap::{Parser, Subcommand, ValueEnum};

pub use bench::BenchConfig;
pub use migrate::MigrateConfig;
pub use serve::ServeConfig;
pub use simulate::SimulateConfig;
pub use token::{IssueConfig, TokenCommand, TokenConfig};

/// Switchboard: a gRPC control plane that assigns work to AI agents and services.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once at start: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the gRPC server (the embedded in-memory store unless --redis-url names a Redis).
    Serve(ServeConfig),
    /// Load generator: drive a server over real gRPC on loopback and print throughput and latency.
    Bench(BenchConfig),
    /// Apply the Postgres schema migrations the database does not have yet, then exit.
    Migrate(MigrateConfig),
    /// Compare routing policies (random, least-loaded, rules, learned, oracle) on a seeded
    /// synthetic world, driving the real embedded store and learned scorer.
    Simulate(SimulateConfig),
    /// Make a signing key and issue bearer tokens for `serve --auth-key-file`.
    Token(TokenConfig),
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
