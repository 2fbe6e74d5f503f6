//! Postgres schema and migrations against the local server: applied once and recorded, re-runs
//! are no-ops, concurrent migrators take turns, changed or unknown migrations are refused, a failing
//! migration leaves nothing behind, one active model checkpoint, and `switchboard migrate`.

use crate::pg;

use std::process::Command;
use std::time::{Duration, Instant};

use pg::{count, TestDb};
use switchboard::store::postgres::migrate::{
    apply_migrations, Migration, MIGRATIONS, MIGRATION_LOCK_KEY,
};
use switchboard::store::postgres::{self, PgError};
use switchboard::store::StoreError;
use tokio_postgres::error::SqlState;

const TABLES: &[&str] = &[
    "specialists",
    "subtasks",
    "assignment_history",
    "performance_reports",
    "model_checkpoints",
    "pending_subtasks",
    "history_dead_letters",
];

#[tokio::test]
async fn migrations_apply_once_and_are_recorded() {
    let db = TestDb::create().await;
    let mut client = db.client().await;

    let first = postgres::migrate(&mut client).await.unwrap();
    let applied: Vec<i32> = first
        .applied
        .iter()
        .map(|applied| applied.version)
        .collect();
    let embedded: Vec<i32> = MIGRATIONS
        .iter()
        .map(|migration| migration.version)
        .collect();
    assert_eq!(applied, embedded);
    assert_eq!(first.already_applied, 0);

    let recorded = client
        .query(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(recorded.len(), MIGRATIONS.len());
    for (row, migration) in recorded.iter().zip(MIGRATIONS) {
        assert_eq!(row.get::<_, i32>(0), migration.version);
        assert_eq!(row.get::<_, String>(1), migration.name);
        assert_eq!(row.get::<_, String>(2), migration.checksum());
    }
    for table in TABLES {
        let sql = format!("SELECT count(*) FROM {table}");
        assert_eq!(count(&client, &sql).await, 0, "{table} exists and is empty");
    }

    let second = postgres::migrate(&mut client).await.unwrap();
    assert!(second.applied.is_empty(), "a re-run applies nothing");
    assert_eq!(second.already_applied, MIGRATIONS.len());
    let rows = count(&client, "SELECT count(*) FROM schema_migrations").await;
    assert_eq!(rows, MIGRATIONS.len() as i64);
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        .await,
        0,
        "the migration lock is released"
    );
}

#[tokio::test]
async fn concurrent_migrators_take_turns() {
    let db = TestDb::create().await;
    // Hold the lock so that both migrators are certainly waiting for it at the same time.
    let holder = db.client().await;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .unwrap();
    let mut first_client = db.client().await;
    let mut second_client = db.client().await;
    let first = tokio::spawn(async move { postgres::migrate(&mut first_client).await });
    let second = tokio::spawn(async move { postgres::migrate(&mut second_client).await });

    let waiting_sql = "SELECT count(*) FROM pg_locks \
        WHERE locktype = 'advisory' AND NOT granted \
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&holder, waiting_sql).await < 2 {
        assert!(
            Instant::now() < deadline,
            "both migrators wait for the lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .unwrap();

    let first = first.await.unwrap().expect("first migrator succeeds");
    let second = second.await.unwrap().expect("second migrator succeeds");
    let mut applied_counts = [first.applied.len(), second.applied.len()];
    applied_counts.sort();
    assert_eq!(applied_counts, [0, MIGRATIONS.len()], "exactly one applies");
    let rows = count(&holder, "SELECT count(*) FROM schema_migrations").await;
    assert_eq!(rows, MIGRATIONS.len() as i64);
}

#[tokio::test]
async fn changed_or_unknown_migrations_are_refused() {
    let db = TestDb::create().await;
    let mut client = db.migrated().await;
    client
        .execute(
            "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1",
            &[],
        )
        .await
        .unwrap();
    let error = postgres::migrate(&mut client).await.unwrap_err();
    assert!(
        matches!(&error, PgError::MigrationChanged { version: 1, recorded, .. } if recorded == "edited"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("migration 0001_init was changed after it was applied"),
        "{message}"
    );
    assert!(!error.is_transient());
    assert!(matches!(StoreError::from(error), StoreError::Internal(_)));
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        .await,
        0,
        "the lock is released after a refusal"
    );

    client
        .batch_execute("DELETE FROM schema_migrations")
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO schema_migrations (version, name, checksum, elapsed_ms) \
             VALUES (1, 'init', $1, 0), (99, 'from_the_future', 'x', 0)",
            &[&MIGRATIONS[0].checksum()],
        )
        .await
        .unwrap();
    let error = postgres::migrate(&mut client).await.unwrap_err();
    assert!(
        matches!(&error, PgError::UnknownMigration { version: 99, name } if name == "from_the_future"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_failing_migration_leaves_nothing_behind() {
    let db = TestDb::create().await;
    let mut client = db.client().await;
    let migrations = [
        Migration {
            version: 1,
            name: "good",
            sql: "CREATE TABLE good (id integer)",
        },
        Migration {
            version: 2,
            name: "bad",
            sql: "CREATE TABLE half_done (id integer); SELECT * FROM no_such_table;",
        },
    ];
    let error = apply_migrations(&mut client, &migrations)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("migration 0002_bad failed") && message.contains("no_such_table"),
        "{message}"
    );
    let recorded = count(&client, "SELECT count(*) FROM schema_migrations").await;
    assert_eq!(recorded, 1, "the good one stays applied");
    let half_done = count(
        &client,
        "SELECT count(*) FROM pg_tables WHERE tablename = 'half_done'",
    )
    .await;
    assert_eq!(half_done, 0, "the bad one rolled back whole");
}

#[tokio::test]
async fn at_most_one_model_checkpoint_is_active() {
    let db = TestDb::create().await;
    let mut client = db.migrated().await;
    let insert =
        "INSERT INTO model_checkpoints (training_set_size, holdout_metrics, weights, active) \
                  VALUES ($1, '{\"auc\": 0.8}', $2, $3) RETURNING version";
    let weights: &[u8] = b"safetensors bytes";
    let first: i64 = client
        .query_one(insert, &[&100_i64, &weights, &true])
        .await
        .unwrap()
        .get(0);
    let second: i64 = client
        .query_one(insert, &[&200_i64, &weights, &false])
        .await
        .unwrap()
        .get(0);
    assert!(second > first);

    let error = client
        .query_one(insert, &[&300_i64, &weights, &true])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNIQUE_VIOLATION));

    // Switching the active model: deactivate, then activate, in one transaction.
    let transaction = client.transaction().await.unwrap();
    transaction
        .execute(
            "UPDATE model_checkpoints SET active = false WHERE active",
            &[],
        )
        .await
        .unwrap();
    transaction
        .execute(
            "UPDATE model_checkpoints SET active = true WHERE version = $1",
            &[&second],
        )
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    let active: i64 = client
        .query_one("SELECT version FROM model_checkpoints WHERE active", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(active, second);
}

#[tokio::test]
async fn migrate_subcommand_applies_and_reports() {
    let db = TestDb::create().await;
    let binary = env!("CARGO_BIN_EXE_switchboard");
    let first = Command::new(binary)
        .args(["migrate", "--database-url", &db.url()])
        .env_remove("SWITCHBOARD_DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(stdout.contains("applied 0001_init"), "{stdout}");
    assert!(stdout.contains("applied 0002_dead_letters"), "{stdout}");
    assert!(stdout.contains("applied 0003_incarnations"), "{stdout}");
    assert!(stdout.contains("3 migration(s) applied now"), "{stdout}");

    // The environment variable works as well as the flag.
    let second = Command::new(binary)
        .arg("migrate")
        .env("SWITCHBOARD_DATABASE_URL", db.url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{stdout}");
    assert!(
        stdout.contains("0 migration(s) applied now, 3 already applied"),
        "{stdout}"
    );
    let client = db.client().await;
    let rows = count(&client, "SELECT count(*) FROM schema_migrations").await;
    assert_eq!(rows, 3);
}

#[tokio::test]
async fn unreachable_postgres_is_transient_and_unavailable() {
    // Port 1 on loopback: nothing listens there, the connection is refused.
    let error = postgres::connect("postgres://postgres@127.0.0.1:1/postgres")
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    let store_error = StoreError::from(error);
    assert!(
        matches!(&store_error, StoreError::Unavailable(message) if message.starts_with("postgres unavailable")),
        "{store_error:?}"
    );
}
