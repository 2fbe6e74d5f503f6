//! The production store's reads and writes of Postgres on the request path. Subtasks accepted
//! while Redis is unreachable are kept durably (`pending_subtasks`) and moved into Redis, oldest
//! first, once it answers again; until then they read as QUEUED without a queue position (there is
//! no queue to rank them in yet). A finished subtask Redis forgot (its retention passed) is read
//! from the history.

use std::time::Duration;

use crate::domain::subtask::{AssignmentView, Subtask, SubtaskSpec, SubtaskState};
use crate::store::breaker::{BreakerConfig, CircuitBreaker};
use crate::store::postgres::{self, finished_subtask, pending, PgPool};
use crate::store::{StoreError, StoreResult};

pub const PENDING_DETAIL: &str =
    "accepted while redis is unavailable; it joins its queue when redis is back";

pub struct PendingStore {
    pool: PgPool,
    breaker: CircuitBreaker,
    timeout: Duration,
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

    /// While the breaker is open: `SELECT 1` past it; an answer closes it, so accepting into
    /// Postgres works again as soon as Postgres is back.
    pub async fn probe_if_open(&self) {
        if !self.breaker.is_open() {
            return;
        }
        if let Ok(Ok(())) = tokio::time::timeout(self.timeout, postgres::ping(&self.pool)).await {
            tracing::info!("postgres answers again: circuit breaker closed");
            self.breaker.record_success();
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
        let (kept, accepted_at_ms) = self
            .guarded(async {
                let client = self.pool.get().await.map_err(|error| error.to_string())?;
                pending::keep(&client, spec)
                    .await
                    .map_err(|error| error.to_string())
            })
            .await?;
        if kept != *spec {
            return Err(StoreError::already_exists(&spec.subtask_id));
        }
        metrics::counter!(crate::metrics::PENDING_ACCEPTED).increment(1);
        Ok(pending_view(spec, accepted_at_ms))
    }

    pub async fn get(&self, subtask_id: &str) -> StoreResult<Option<(AssignmentView, Subtask)>> {
        let found = self
            .guarded(async {
                let client = self.pool.get().await.map_err(|error| error.to_string())?;
                pending::find(&client, subtask_id)
                    .await
                    .map_err(|error| error.to_string())
            })
            .await?;
        Ok(found.map(|(spec, accepted_at_ms)| {
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
            finished_subtask(&client, subtask_id)
                .await
                .map_err(|error| error.to_string())
        })
        .await
    }

    /// The oldest pending subtasks, at most `limit`.
    pub async fn oldest(&self, limit: i64) -> StoreResult<Vec<SubtaskSpec>> {
        self.guarded(async {
            let client = self.pool.get().await.map_err(|error| error.to_string())?;
            pending::oldest(&client, limit)
                .await
                .map_err(|error| error.to_string())
        })
        .await
    }

    pub async fn remove(&self, subtask_id: &str) -> StoreResult<()> {
        self.guarded(async {
            let client = self.pool.get().await.map_err(|error| error.to_string())?;
            pending::remove(&client, subtask_id)
                .await
                .map_err(|error| error.to_string())
        })
        .await
    }
}
