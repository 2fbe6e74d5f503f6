//! Rebuilding an empty Redis (fresh, or flushed) from Postgres at start: registered specialists,
//! their performance records and every unfinished subtask come back; finished subtasks come back
//! only when an unfinished one depends on them. One replica rebuilds (it claims the rebuild in the
//! deployment's meta hash); the others wait until it is done.
//!
//! An ASSIGNED subtask goes back to its holder with its epoch and attempt, so the agent working on
//! it goes on and its report counts: the holder is registered again with a fresh lease, and if it
//! does not heartbeat within that lease its work is requeued as after any lapse. Each type's epoch
//! counter resumes above every epoch the history knows. An ASSIGNED subtask whose holder is gone
//! (deregistered) is routed again.
//!
//! What cannot come back: events the relay had not yet written when Redis lost its data (Redis
//! keeps nothing on disk here): a subtask whose assignment Postgres never heard of is routed again
//! from the state Postgres had.

use std::time::Duration;

use tracing::info;

use crate::domain::specialist::{Incarnation, Registration};
use crate::store::postgres::{restore, PgPool};
use crate::store::redis::restore::{RestoredFinished, RestoredHeld, RestoredPerformance};
use crate::store::redis::RedisStore;
use crate::store::{Store, StoreError, StoreResult};

/// How long a replica waits for another one's rebuild.
const WAIT_FOR_OTHER: Duration = Duration::from_secs(120);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RebuildSummary {
    pub specialists: usize,
    pub performance_records: usize,
    pub finished_dependencies: usize,
    /// ASSIGNED subtasks given back to their holders.
    pub held_subtasks: usize,
    /// Subtasks routed again (queued, blocked, or assigned to a holder that is gone).
    pub unfinished_subtasks: usize,
}

/// Rebuilds Redis from Postgres if this deployment's Redis has never been built (or was flushed).
/// Returns what it restored, or None when Redis was already built (or another replica built it).
pub async fn rebuild_if_empty(
    store: &RedisStore,
    postgres: &PgPool,
) -> StoreResult<Option<RebuildSummary>> {
    if !store.claim_rebuild().await? {
        let deadline = tokio::time::Instant::now() + WAIT_FOR_OTHER;
        let mut every = tokio::time::interval(Duration::from_millis(50));
        loop {
            every.tick().await;
            if store.rebuilt().await? {
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
    let summary = restore_all(store, postgres).await?;
    store.mark_rebuilt().await?;
    info!(?summary, "redis rebuilt from postgres");
    Ok(Some(summary))
}

async fn restore_all(store: &RedisStore, postgres: &PgPool) -> StoreResult<RebuildSummary> {
    let client = postgres
        .get()
        .await
        .map_err(|error| StoreError::Unavailable(format!("postgres unavailable: {error}")))?;
    let mut summary = RebuildSummary::default();

    for record in restore::performance_records(&client).await? {
        store
            .restore_performance(RestoredPerformance {
                specialist_id: &record.specialist_id,
                slot: &record.specialist_type,
                completed: record.completed,
                succeeded: record.succeeded,
                quality_sum: record.quality_sum,
                time_sum: record.time_sum,
                window: &record.window,
            })
            .await?;
        summary.performance_records += 1;
    }

    for row in restore::registered_specialists(&client).await? {
        store
            .register(Registration {
                specialist_id: Some(row.specialist_id),
                specialist_type: row.specialist_type,
                capabilities: row.capabilities,
                max_concurrency: Some(row.max_concurrency),
                labels: row.labels,
                availability: row.availability,
                // The live process keeps its incarnation; a row from before incarnations gets a
                // new one (its process registers again when its calls are refused).
                incarnation: Incarnation::Start {
                    incarnation: match row.incarnation {
                        Some(incarnation) => incarnation,
                        None => Incarnation::mint().map_err(StoreError::Internal)?,
                    },
                    take_over: true,
                },
            })
            .await?;
        summary.specialists += 1;
    }

    for row in restore::finished_dependencies(&client).await? {
        store
            .restore_finished(RestoredFinished {
                spec: &row.spec,
                slot: &row.routed_type,
                state: &row.state,
                attempt: row.attempt,
                detail: &row.detail,
                created_at_ms: row.created_at_ms,
                finished_at_ms: row.finished_at_ms,
            })
            .await?;
        summary.finished_dependencies += 1;
    }

    for (slot, epoch) in restore::highest_epochs(&client).await? {
        if store.types().contains(&slot) {
            store.restore_epoch(&slot, epoch).await?;
        }
    }

    let unfinished = restore::unfinished_subtasks(&client).await?;
    let mut to_route = Vec::new();
    // Holders first: what they hold counts against their capacity before anything is routed.
    for row in unfinished {
        let kept = match &row.holder {
            Some((holder, epoch)) if store.types().contains(&row.routed_type) => {
                store
                    .restore_held(RestoredHeld {
                        spec: &row.spec,
                        slot: &row.routed_type,
                        holder,
                        epoch: *epoch,
                        attempt: row.attempt,
                        created_at_ms: row.created_at_ms,
                        assigned_at_ms: row.assigned_at_ms.unwrap_or(row.created_at_ms),
                    })
                    .await?
            }
            _ => false,
        };
        if kept {
            summary.held_subtasks += 1;
        } else {
            to_route.push(row.spec);
        }
    }
    for spec in to_route {
        store.assign(spec).await?;
        summary.unfinished_subtasks += 1;
    }
    Ok(summary)
}
