//! Schema migrations: the numbered files of `sql/`, embedded in the binary, applied in order and
//! once each, under an advisory lock so that replicas starting together take turns.
//!
//! `schema_migrations` records each applied migration with the SHA-256 of its text. A recorded
//! migration whose text has since changed, or one this binary does not know, stops the run: the
//! schema would no longer be the one the code was written for.

use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::error::PgError;

/// One numbered file of `sql/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. A new file in `sql/` must be added here (a test checks that the two
/// agree); an applied one must never be edited.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../../sql/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "dead_letters",
        sql: include_str!("../../../sql/0002_dead_letters.sql"),
    },
    Migration {
        version: 3,
        name: "incarnations",
        sql: include_str!("../../../sql/0003_incarnations.sql"),
    },
];

/// Key of the session-level advisory lock every migrator holds while it works ("sbmigrat").
/// Advisory locks are per database, so this serializes migrators of one database only.
pub const MIGRATION_LOCK_KEY: i64 = 0x7362_6d69_6772_6174;

impl Migration {
    /// `0001_init.sql`: the file this migration comes from.
    pub fn file_name(&self) -> String {
        format!("{:04}_{}.sql", self.version, self.name)
    }

    /// Lowercase hex SHA-256 of the migration's text.
    pub fn checksum(&self) -> String {
        Sha256::digest(self.sql.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// A migration this run applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: i32,
    pub name: &'static str,
    pub checksum: String,
    pub elapsed_ms: u64,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Applied by this run, in order.
    pub applied: Vec<AppliedMigration>,
    /// Found applied already (by an earlier run or a concurrent one that held the lock first).
    pub already_applied: usize,
}

const CREATE_SCHEMA_MIGRATIONS: &str = "
    CREATE TABLE IF NOT EXISTS schema_migrations (
        version    integer PRIMARY KEY,
        name       text NOT NULL,
        checksum   text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now(),
        elapsed_ms bigint NOT NULL
    )";

/// Applies every embedded migration the database does not have yet (see `apply_migrations`).
pub async fn migrate(client: &mut Client) -> Result<MigrationReport, PgError> {
    apply_migrations(client, MIGRATIONS).await
}

/// Applies `migrations` (ascending versions) that the database does not have yet, each in its own
/// transaction, while holding the advisory lock. Waits for the lock as long as another migrator
/// holds it; the lock goes with the session if the connection drops. Use a connection of its own
/// (`super::connect`), not a pooled one: a call cancelled while it holds the lock leaves the lock
/// with the connection until that connection closes.
pub async fn apply_migrations(
    client: &mut Client,
    migrations: &[Migration],
) -> Result<MigrationReport, PgError> {
    debug_assert!(
        migrations
            .windows(2)
            .all(|pair| pair[0].version < pair[1].version),
        "migrations must be in ascending version order"
    );
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let outcome = apply_locked(client, migrations).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    let report = outcome?;
    unlocked?;
    Ok(report)
}

async fn apply_locked(
    client: &mut Client,
    migrations: &[Migration],
) -> Result<MigrationReport, PgError> {
    client.batch_execute(CREATE_SCHEMA_MIGRATIONS).await?;
    let recorded = client
        .query(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await?;
    let mut report = MigrationReport::default();
    for row in &recorded {
        let version: i32 = row.get(0);
        let name: String = row.get(1);
        let recorded_checksum: String = row.get(2);
        let Some(known) = migrations
            .iter()
            .find(|migration| migration.version == version)
        else {
            return Err(PgError::UnknownMigration { version, name });
        };
        let embedded = known.checksum();
        if recorded_checksum != embedded {
            return Err(PgError::MigrationChanged {
                version,
                name,
                recorded: recorded_checksum,
                embedded,
            });
        }
        report.already_applied += 1;
    }
    for migration in migrations {
        let is_recorded = recorded
            .iter()
            .any(|row| row.get::<_, i32>(0) == migration.version);
        if is_recorded {
            continue;
        }
        report.applied.push(
            apply_one(client, migration)
                .await
                .map_err(|error| match error {
                    PgError::Postgres(error) => PgError::MigrationFailed {
                        version: migration.version,
                        name: migration.name,
                        error,
                    },
                    other => other,
                })?,
        );
    }
    Ok(report)
}

async fn apply_one(
    client: &mut Client,
    migration: &Migration,
) -> Result<AppliedMigration, PgError> {
    let started = Instant::now();
    let checksum = migration.checksum();
    let transaction = client.transaction().await?;
    transaction.batch_execute(migration.sql).await?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    transaction
        .execute(
            "INSERT INTO schema_migrations (version, name, checksum, elapsed_ms) \
             VALUES ($1, $2, $3, $4)",
            &[
                &migration.version,
                &migration.name,
                &checksum,
                &(elapsed_ms as i64),
            ],
        )
        .await?;
    transaction.commit().await?;
    tracing::info!(
        version = migration.version,
        name = migration.name,
        elapsed_ms,
        "applied migration"
    );
    Ok(AppliedMigration {
        version: migration.version,
        name: migration.name,
        checksum,
        elapsed_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in sql/ named NNNN_<name>.sql is embedded, in order, and nothing else is.
    #[test]
    fn embedded_migrations_match_the_sql_folder() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
        let mut files: Vec<String> = std::fs::read_dir(&folder)
            .expect("sql/ is readable")
            .map(|entry| {
                entry
                    .expect("sql/ entry")
                    .file_name()
                    .into_string()
                    .unwrap()
            })
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<String> = MIGRATIONS.iter().map(Migration::file_name).collect();
        assert_eq!(files, embedded);
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, index as i32 + 1, "versions count from 1");
            let on_disk = std::fs::read_to_string(folder.join(migration.file_name())).unwrap();
            assert_eq!(on_disk, migration.sql);
        }
    }

    #[test]
    fn checksum_is_hex_sha256() {
        let migration = Migration {
            version: 1,
            name: "x",
            sql: "",
        };
        assert_eq!(
            migration.checksum(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
