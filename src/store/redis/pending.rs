//! The production store's reads and writes of Postgres on the request path. Subtasks accepted
//! while Redis is unreachable are kept durably (`pending_subtasks`) and moved into Redis, oldest
//! first, once it answers again; until then they read as QUEUED without a queue position (there is
//! no queue to rank them in yet). A finished subtask Redis forgot (its retention passed) is read
//! from the history.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::domain::subtask::{AssignmentView, Subtask, SubtaskSpec, SubtaskState};
use crate::store::breaker::{BreakerConfig, CircuitBreaker};
use crate::store::postgres::PgPool;
use crate::store::{StoreError, StoreResult};

pub const PENDING_DETAIL: &str =
    "accepted while redis is unavailable; it joins its queue when redis is back";

pub struct PendingStore {
    pool: PgPool,
    breaker: CircuitBreaker,
    timeout: Duration,
}

fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

pub fn pending_view(spec: &SubtaskSpec, accepted_at_ms: i64) -> AssignmentView {
    AssignmentView {
        subtask_id: spec.subtask_id.clone(),
        state: SubtaskState::Queued,
        holder: None,
        queue_position: None,
        attempt: 1,
        routed_type: spec.specialist_type.clone(),
        waiting_on: Vec::new(),
        detail: PENDING_DETAIL.to_string(),
        created_at_ms: accepted_at_ms,
        finished_at_ms: None,
    }
}

impl PendingStore {
    pub fn new(pool: PgPool, breaker: BreakerConfig, timeout: Duration) -> Self {
        Self {
            pool,
            breaker: CircuitBreaker::new("postgres", breaker),
            timeout,
        }
    }

    /// Runs one Postgres operation under the breaker and the timeout.
    async fn guarded<T, F>(&self, operation: F) -> StoreResult<T>
    where
        F: std::future::Future<Output = Result<T, String>>,
    {
        self.breaker.check().map_err(StoreError::Unavailable)?;
        match tokio::time::timeout(self.timeout, operation).await {
            Ok(Ok(value)) => {
                self.breaker.record_success();
                Ok(value)
            }
            Ok(Err(message)) => {
                self.breaker.record_failure();
                Err(StoreError::Unavailable(format!(
                    "postgres unavailable: {message}"
                )))
            }
            Err(_) => {
                self.breaker.record_failure();
                Err(StoreError::Unavailable(format!(
                    "postgres unavailable: no reply within {} ms",
                    self.timeout.as_millis()
                )))
            }
        }
    }

    /// Accepts a subtask durably; the same id again with the same content returns it.
    pub async fn accept(&self, spec: &SubtaskSpec) -> StoreResult<AssignmentView> {
        let row = self
            .guarded(async {
                let client = self.pool.get().await.map_err(|error| error.to_string())?;
                client
                    .execute(
                        "INSERT INTO pending_subtasks (subtask_id, specialist_type, \
                         required_capabilities, require_all_capabilities, priority, parent_id, \
                         depends_on, payload, accepted_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now()) \
                         ON CONFLICT (subtask_id) DO NOTHING",
                        &[
                            &spec.subtask_id,
                            &spec.specialist_type,
                            &spec.required_capabilities,
                            &spec.require_all_capabilities,
                            &spec.priority,
                            &spec.parent_id,
                            &spec.depends_on,
                            &spec.payload,
                        ],
                    )
                    .await
                    .map_err(|error| error.to_string())?;
                client
                    .query_one(
                        "SELECT * FROM pending_subtasks WHERE subtask_id = $1",
                        &[&spec.subtask_id],
                    )
                    .await
                    .map_err(|error| error.to_string())
            })
            .await?;
        if crate::store::postgres::spec_of_row(&row) != *spec {
            return Err(StoreError::already_exists(&spec.subtask_id));
        }
        metrics::counter!(crate::metrics::PENDING_ACCEPTED).increment(1);
        Ok(pending_view(spec, millis(row.get("accepted_at"))))
    }

    pub async fn get(&self, subtask_id: &str) -> StoreResult<Option<(AssignmentView, Subtask)>> {
        let row = self
            .guarded(async {
                let client = self.pool.get().await.map_err(|error| error.to_string())?;
                client
                    .query_opt(
                        "SELECT * FROM pending_subtasks WHERE subtask_id = $1",
                        &[&subtask_id],
                    )
                    .await
                    .map_err(|error| error.to_string())
            })
            .await?;
        Ok(row.map(|row| {
            let spec = crate::store::postgres::spec_of_row(&row);
            let accepted_at_ms = millis(row.get("accepted_at"));
            (
                pending_view(&spec, accepted_at_ms),
                Subtask {
                    spec,
                    created_at_ms: accepted_at_ms,
                },
            )
        }))
    }

    /// A finished subtask Redis no longer keeps (its retention passed), from the history.
    pub async fn finished(
        &self,
        subtask_id: &str,
    ) -> StoreResult<Option<(AssignmentView, Subtask)>> {
        self.guarded(async {
            let client = self.pool.get().await.map_err(|error| error.to_string())?;
            crate::store::postgres::finished_subtask(&client, subtask_id)
                .await
                .map_err(|error| error.to_string())
        })
        .await
    }

    /// The oldest pending subtasks, at most `limit`.
    pub async fn oldest(&self, limit: i64) -> StoreResult<Vec<SubtaskSpec>> {
        let rows = self
            .guarded(async {
                let client = self.pool.get().await.map_err(|error| error.to_string())?;
                client
                    .query(
                        "SELECT * FROM pending_subtasks ORDER BY accepted_at, subtask_id LIMIT $1",
                        &[&limit],
                    )
                    .await
                    .map_err(|error| error.to_string())
            })
            .await?;
        Ok(rows
            .iter()
            .map(crate::store::postgres::spec_of_row)
            .collect())
    }

    pub async fn remove(&self, subtask_id: &str) -> StoreResult<()> {
        self.guarded(async {
            let client = self.pool.get().await.map_err(|error| error.to_string())?;
            client
                .execute(
                    "DELETE FROM pending_subtasks WHERE subtask_id = $1",
                    &[&subtask_id],
                )
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        })
        .await
    }
}
