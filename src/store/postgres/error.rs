//! Errors of the Postgres layer, whether a retry can help, and how they surface as `StoreError`.

use std::error::Error as _;

use tokio_postgres::error::SqlState;

use crate::store::StoreError;

/// Postgres errors carry the server's message in their text (not as a `source`), so that a log line
/// or a `StoreError` says what went wrong without repeating it.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("postgres: {}", describe(.0))]
    Postgres(tokio_postgres::Error),

    #[error("postgres pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),

    #[error("postgres pool configuration: {0}")]
    CreatePool(#[from] deadpool_postgres::CreatePoolError),

    #[error(
        "migration {version:04}_{name} was changed after it was applied \
         (recorded checksum {recorded}, this binary has {embedded}); \
         add a new migration instead of editing an applied one"
    )]
    MigrationChanged {
        version: i32,
        name: String,
        recorded: String,
        embedded: String,
    },

    #[error(
        "the database has migration {version:04}_{name}, which this binary does not know; \
         run a switchboard at least as new as the one that applied it"
    )]
    UnknownMigration { version: i32, name: String },

    #[error("migration {version:04}_{name} failed: {}", describe(.error))]
    MigrationFailed {
        version: i32,
        name: &'static str,
        error: tokio_postgres::Error,
    },

    #[error("history event {event_id:?} cannot be applied: {reason}")]
    InvalidEvent { event_id: String, reason: String },
}

impl From<tokio_postgres::Error> for PgError {
    fn from(error: tokio_postgres::Error) -> Self {
        PgError::Postgres(error)
    }
}

impl PgError {
    pub(crate) fn invalid_event(event_id: &str, reason: impl Into<String>) -> Self {
        PgError::InvalidEvent {
            event_id: event_id.to_string(),
            reason: reason.into(),
        }
    }

    /// Whether the same call may succeed if retried later: the server was unreachable, the
    /// connection broke, or the transaction lost a deadlock or serialization conflict. Everything
    /// else (a bad event, a changed migration, a constraint) fails the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            PgError::Postgres(error) => is_transient_postgres(error),
            PgError::MigrationFailed { error, .. } => is_transient_postgres(error),
            PgError::Pool(deadpool_postgres::PoolError::Backend(error)) => {
                is_transient_postgres(error)
            }
            // Waiting for a connection (or for one to open) timed out: the server is away or busy.
            PgError::Pool(deadpool_postgres::PoolError::Timeout(_)) => true,
            PgError::Pool(_) => false,
            PgError::CreatePool(_)
            | PgError::MigrationChanged { .. }
            | PgError::UnknownMigration { .. }
            | PgError::InvalidEvent { .. } => false,
        }
    }
}

impl PgError {
    /// Postgres aborted the transaction to break a deadlock or a serialization conflict: running the
    /// same transaction again is expected to succeed.
    pub fn is_conflict(&self) -> bool {
        let PgError::Postgres(error) = self else {
            return false;
        };
        error.code().is_some_and(|code| {
            code == &SqlState::T_R_DEADLOCK_DETECTED || code == &SqlState::T_R_SERIALIZATION_FAILURE
        })
    }
}

fn is_transient_postgres(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    let Some(code) = error.code() else {
        // No SQLSTATE: transient only when talking to the server failed (connect, I/O, timeout),
        // not when a value could not be converted.
        let io_failure = error
            .source()
            .is_some_and(|source| source.is::<std::io::Error>());
        return io_failure || error.to_string() == "timeout waiting for server";
    };
    code == &SqlState::T_R_SERIALIZATION_FAILURE
        || code == &SqlState::T_R_DEADLOCK_DETECTED
        || code == &SqlState::ADMIN_SHUTDOWN
        || code == &SqlState::CRASH_SHUTDOWN
        || code == &SqlState::CANNOT_CONNECT_NOW
        || code == &SqlState::TOO_MANY_CONNECTIONS
        || code.code().starts_with("08")
}

/// tokio-postgres prints only the kind of an error ("db error"); the server's message is its source.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.source() {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

impl From<PgError> for StoreError {
    fn from(error: PgError) -> Self {
        if error.is_transient() {
            StoreError::Unavailable(format!("postgres unavailable: {error}"))
        } else {
            StoreError::Internal(error.to_string())
        }
    }
}
