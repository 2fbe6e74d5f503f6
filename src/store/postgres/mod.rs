//! The Postgres half of the production store: durable state and history, written behind Redis.
//! The tables and the migration rule are described in `sql/README.md`.
//!
//! - `migrate`: the numbered migrations of `sql/`, applied once each under an advisory lock.
//! - `history`: the applier the outbox relay hands batches of `HistoryEvent`s to.
//! - `event_id`: outbox event ids and how their positions compare.
//! - `statements`: the applier's SQL; `collapse`: its per-row rules, folding a batch's events of
//!   one row into one write; `columns`: domain values as column values.
//! - `pending`: subtasks accepted while Redis is unreachable; `restore`: what a rebuild of an
//!   empty Redis reads; `reads`: a finished subtask Redis no longer keeps.
//! - `error`: `PgError`, whether a retry can help, and its `StoreError` form.

pub mod checkpoints;
mod collapse;
pub mod columns;
mod dead_letters;
pub mod error;
pub mod event_id;
pub mod history;
pub mod migrate;
pub mod pending;
mod reads;
pub mod restore;
mod statements;

use tokio_postgres::{Client, NoTls};
use tracing::Instrument;

pub use dead_letters::dead_letter;
pub use error::PgError;
pub use history::{apply_batch, apply_in_transaction, ApplySummary, EventOutcome};
pub use migrate::{migrate, MigrationReport, MIGRATIONS};
pub use reads::{finished_subtask, spec_of_row};

/// A pool of connections, for the relay and the store's other Postgres work.
pub type PgPool = deadpool_postgres::Pool;

/// One connection (its I/O driven by a spawned task that ends when the client is dropped). TLS is
/// not supported yet: the URL's `sslmode` must allow a plain connection.
pub async fn connect(database_url: &str) -> Result<Client, PgError> {
    let (client, connection) = tokio_postgres::connect(database_url, NoTls).await?;
    tokio::spawn(
        async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "postgres connection ended with an error");
            }
        }
        .instrument(tracing::info_span!("postgres_connection")),
    );
    Ok(client)
}

/// Whether Postgres answers (`SELECT 1`) on a connection of `pool`.
pub async fn ping(pool: &PgPool) -> Result<(), String> {
    let client = pool.get().await.map_err(|error| error.to_string())?;
    client
        .simple_query("SELECT 1")
        .await
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// A pool of at most `max_size` connections to `database_url`; connections open on first use.
pub fn pool(database_url: &str, max_size: usize) -> Result<PgPool, PgError> {
    let mut config = deadpool_postgres::Config::new();
    config.url = Some(database_url.to_string());
    config.pool = Some(deadpool_postgres::PoolConfig::new(max_size));
    Ok(config.create_pool(Some(deadpool_postgres::Runtime::Tokio1), NoTls)?)
}
