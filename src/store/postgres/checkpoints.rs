//! Model checkpoints in Postgres (`model_checkpoints`): the learned scorer's accepted models, one of
//! them active, so that every replica loads the same model at start. The engine calls these from its
//! trainer thread or at start-up; each call runs on a short-lived thread of its own with its own
//! connection, so it never blocks a tokio worker (checkpoints are saved seldom).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::learned_scorer::checkpoints::{Checkpoint, CheckpointStore};
use crate::learned_scorer::trainer::HoldoutMetrics;
use crate::learned_scorer::EngineError;

pub struct PgCheckpoints {
    database_url: String,
}

impl PgCheckpoints {
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
        }
    }

    /// Runs `work` with a fresh connection on a thread of its own, waiting for its result.
    fn run<T, F, Fut>(&self, work: F) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: FnOnce(tokio_postgres::Client) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let database_url = self.database_url.clone();
        let worker = std::thread::Builder::new()
            .name("switchboard-checkpoints".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|error| error.to_string())?;
                runtime.block_on(async move {
                    let connecting = super::connect(&database_url);
                    let client = tokio::time::timeout(Duration::from_secs(10), connecting)
                        .await
                        .map_err(|_| "no connection within 10 s".to_string())?
                        .map_err(|error| error.to_string())?;
                    work(client).await
                })
            })
            .map_err(|error| EngineError::Storage(error.to_string()))?;
        worker
            .join()
            .map_err(|_| EngineError::Storage("checkpoint thread panicked".into()))?
            .map_err(EngineError::Storage)
    }
}

fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

impl CheckpointStore for PgCheckpoints {
    fn save(&self, checkpoint: &Checkpoint) -> Result<(), EngineError> {
        let checkpoint = checkpoint.clone();
        self.run(move |mut client| async move {
            let holdout = serde_json::to_value(checkpoint.holdout).map_err(|e| e.to_string())?;
            let created_at =
                UNIX_EPOCH + Duration::from_millis(checkpoint.created_at_ms.max(0) as u64);
            let transaction = client.transaction().await.map_err(|e| e.to_string())?;
            transaction
                .execute(
                    "UPDATE model_checkpoints SET active = false WHERE active",
                    &[],
                )
                .await
                .map_err(|e| e.to_string())?;
            transaction
                .execute(
                    "INSERT INTO model_checkpoints \
                     (created_at, training_set_size, holdout_metrics, format, weights, active) \
                     VALUES ($1, $2, $3, 'safetensors', $4, true)",
                    &[
                        &created_at,
                        &(checkpoint.training_set_size as i64),
                        &holdout,
                        &checkpoint.weights,
                    ],
                )
                .await
                .map_err(|e| e.to_string())?;
            transaction.commit().await.map_err(|e| e.to_string())
        })
    }

    fn load_active(&self) -> Result<Option<Checkpoint>, EngineError> {
        self.run(|client| async move {
            let row = client
                .query_opt(
                    "SELECT version, created_at, training_set_size, holdout_metrics, weights \
                     FROM model_checkpoints WHERE active AND format = 'safetensors'",
                    &[],
                )
                .await
                .map_err(|e| e.to_string())?;
            let Some(row) = row else {
                return Ok(None);
            };
            let holdout: HoldoutMetrics =
                serde_json::from_value(row.get("holdout_metrics")).map_err(|e| e.to_string())?;
            Ok(Some(Checkpoint {
                version: row.get::<_, i64>("version") as u64,
                created_at_ms: millis(row.get("created_at")),
                training_set_size: row.get::<_, i64>("training_set_size") as u64,
                holdout,
                weights: row.get("weights"),
            }))
        })
    }
}
