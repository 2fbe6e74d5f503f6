//! `switchboard migrate`: the Postgres schema.

use clap::Args;

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
