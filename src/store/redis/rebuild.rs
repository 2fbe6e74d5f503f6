//! Rebuilding an empty Redis (fresh, or flushed) from Postgres at start: registered specialists,
//! their performance records and every unfinished subtask come back; finished subtasks come back
//! only when an unfinished one depends on them. One replica rebuilds (it claims the rebuild in the
//! deployment's meta hash); the others wait until it is done.
//!
//! What cannot come back: events the relay had not yet written when Redis lost its data (Redis
//! keeps nothing on disk here), and the holder of an ASSIGNED subtask: it is routed again with a
//! new epoch and its attempt count starts over, and the former holder's reports are refused as
//! stale.

use std::time::Duration;

use tracing::info;

use crate::domain::specialist::{Availability, Registration};
use crate::store::postgres::PgPool;
use crate::store::{Store, StoreError, StoreResult};

use super::call::{About, Args, Target};
use super::codec::encode_spec;
use super::directory::command;
use super::library::Function;
use super::replies::availability as availability_from;
use super::RedisStore;

/// How long a replica waits for another one's rebuild.
const WAIT_FOR_OTHER: Duration = Duration::from_secs(120);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RebuildSummary {
    pub specialists: usize,
    pub performance_records: usize,
    pub finished_dependencies: usize,
    pub unfinished_subtasks: usize,
}

fn pg_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("postgres unavailable: {error}"))
}

fn millis(at: std::time::SystemTime) -> i64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

/// Rebuilds Redis from Postgres if this deployment's Redis has never been built (or was flushed).
/// Returns what it restored, or None when Redis was already built (or another replica built it).
pub async fn rebuild_if_empty(
    store: &RedisStore,
    postgres: &PgPool,
) -> StoreResult<Option<RebuildSummary>> {
    let meta = store.keys.deployment_meta();
    let now = crate::store::clock::Clock::now_ms(&crate::store::clock::SystemClock).to_string();
    let claimed: bool = store
        .query(&command(&["HSETNX", &meta, "rebuild_started_ms", &now]))
        .await?;
    if !claimed {
        let deadline = tokio::time::Instant::now() + WAIT_FOR_OTHER;
        let mut every = tokio::time::interval(Duration::from_millis(50));
        loop {
            every.tick().await;
            let done: bool = store
                .query(&command(&["HEXISTS", &meta, "rebuilt_ms"]))
                .await?;
            if done {
                return Ok(None);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Unavailable(
                    "another replica started rebuilding redis from postgres and has not finished"
                        .into(),
                ));
            }
        }
    }
    let summary = restore(store, postgres).await?;
    let now = crate::store::clock::Clock::now_ms(&crate::store::clock::SystemClock).to_string();
    let _: () = store
        .query(&command(&["HSET", &meta, "rebuilt_ms", &now]))
        .await?;
    info!(?summary, "redis rebuilt from postgres");
    Ok(Some(summary))
}

async fn restore(store: &RedisStore, postgres: &PgPool) -> StoreResult<RebuildSummary> {
    let client = postgres.get().await.map_err(pg_error)?;
    let mut summary = RebuildSummary::default();

    let performance = client
        .query(
            "SELECT p.specialist_id, count(*) AS completed, \
             count(*) FILTER (WHERE p.success) AS succeeded, \
             sum(p.quality_score) AS quality_sum, \
             sum(p.completion_time_ms)::float8 AS time_sum, \
             string_agg(CASE WHEN p.success THEN '1' ELSE '0' END, '' \
                        ORDER BY p.event_ms, p.event_seq) AS outcomes, \
             coalesce(max(s.specialist_type), \
                      (array_agg(p.stream_type ORDER BY p.event_ms DESC, p.event_seq DESC))[1]) \
               AS specialist_type \
             FROM performance_reports p LEFT JOIN specialists s USING (specialist_id) \
             GROUP BY p.specialist_id",
            &[],
        )
        .await
        .map_err(pg_error)?;
    for row in &performance {
        let outcomes: String = row.get("outcomes");
        let window = crate::domain::performance::PERFORMANCE_WINDOW;
        let recent = &outcomes[outcomes.len().saturating_sub(window)..];
        let specialist_id: String = row.get("specialist_id");
        let slot: String = row.get("specialist_type");
        store
            .bind(&store.keys.specialist_directory(&specialist_id), &slot)
            .await?;
        store
            .fcall(
                Function::Restore,
                Target::Slot(&slot),
                &Args::new()
                    .text("perf")
                    .text(&specialist_id)
                    .num(row.get::<_, i64>("completed"))
                    .num(row.get::<_, i64>("succeeded"))
                    .num(row.get::<_, f64>("quality_sum"))
                    .num(row.get::<_, f64>("time_sum"))
                    .text(recent),
                About::default(),
            )
            .await?;
        summary.performance_records += 1;
    }

    let specialists = client
        .query(
            "SELECT specialist_id, specialist_type, capabilities, max_concurrency, labels, \
             availability FROM specialists \
             WHERE deregistered_at IS NULL AND registered_at IS NOT NULL ORDER BY specialist_id",
            &[],
        )
        .await
        .map_err(pg_error)?;
    for row in &specialists {
        let labels: serde_json::Value = row.get("labels");
        let availability = availability_from(row.get("availability"))?;
        store
            .register(Registration {
                specialist_id: Some(row.get("specialist_id")),
                specialist_type: row.get("specialist_type"),
                capabilities: row.get("capabilities"),
                max_concurrency: Some(row.get::<_, i32>("max_concurrency") as u32),
                labels: serde_json::from_value(labels).unwrap_or_default(),
                availability: if availability == Availability::Offline {
                    Availability::Online
                } else {
                    availability
                },
            })
            .await?;
        summary.specialists += 1;
    }

    let finished_dependencies = client
        .query(
            "SELECT * FROM subtasks WHERE created_at IS NOT NULL \
             AND state IN ('COMPLETED', 'FAILED', 'CANCELLED') \
             AND subtask_id IN (SELECT unnest(depends_on) FROM subtasks \
                                WHERE state IN ('QUEUED', 'ASSIGNED', 'BLOCKED'))",
            &[],
        )
        .await
        .map_err(pg_error)?;
    for row in &finished_dependencies {
        let spec = crate::store::postgres::spec_of_row(row);
        let created_at: std::time::SystemTime = row.get("created_at");
        let finished_at: Option<std::time::SystemTime> = row.get("finished_at");
        let slot: String = row.get("routed_type");
        store
            .bind(&store.keys.subtask_directory(&spec.subtask_id), &slot)
            .await?;
        store
            .fcall(
                Function::Restore,
                Target::Slot(&slot),
                &Args::new()
                    .text("subtask")
                    .text(&spec.subtask_id)
                    .bytes(encode_spec(&spec))
                    .list(&spec.required_capabilities)
                    .flag(spec.require_all_capabilities)
                    .num(spec.priority)
                    .num(millis(created_at))
                    .text(&row.get::<_, String>("state"))
                    .num(row.get::<_, i32>("attempt"))
                    .text(&row.get::<_, String>("detail"))
                    .text(
                        &finished_at
                            .map(millis)
                            .map_or_else(String::new, |at| at.to_string()),
                    ),
                About::default(),
            )
            .await?;
        summary.finished_dependencies += 1;
    }

    let unfinished = client
        .query(
            "SELECT * FROM subtasks WHERE created_at IS NOT NULL \
             AND state IN ('QUEUED', 'ASSIGNED', 'BLOCKED') ORDER BY created_at, subtask_id",
            &[],
        )
        .await
        .map_err(pg_error)?;
    for row in &unfinished {
        store
            .assign(crate::store::postgres::spec_of_row(row))
            .await?;
        summary.unfinished_subtasks += 1;
    }
    Ok(summary)
}
