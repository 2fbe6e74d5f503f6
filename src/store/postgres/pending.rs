//! `pending_subtasks`: subtasks accepted while Redis was unreachable, kept until they are moved
//! into Redis (store/production/pending.rs guards these calls).

use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::Client;

use super::reads::spec_of_row;
use super::PgError;
use crate::domain::subtask::SubtaskSpec;

fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

/// Keeps a subtask (once per id); returns the one kept under its id and when it was accepted.
pub async fn keep(client: &Client, spec: &SubtaskSpec) -> Result<(SubtaskSpec, i64), PgError> {
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
        .await?;
    let row = client
        .query_one(
            "SELECT * FROM pending_subtasks WHERE subtask_id = $1",
            &[&spec.subtask_id],
        )
        .await?;
    Ok((spec_of_row(&row), millis(row.get("accepted_at"))))
}

/// The kept subtask of an id and when it was accepted.
pub async fn find(
    client: &Client,
    subtask_id: &str,
) -> Result<Option<(SubtaskSpec, i64)>, PgError> {
    let row = client
        .query_opt(
            "SELECT * FROM pending_subtasks WHERE subtask_id = $1",
            &[&subtask_id],
        )
        .await?;
    Ok(row.map(|row| (spec_of_row(&row), millis(row.get("accepted_at")))))
}

/// The oldest kept subtasks, at most `limit`.
pub async fn oldest(client: &Client, limit: i64) -> Result<Vec<SubtaskSpec>, PgError> {
    let rows = client
        .query(
            "SELECT * FROM pending_subtasks ORDER BY accepted_at, subtask_id LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows.iter().map(spec_of_row).collect())
}

pub async fn remove(client: &Client, subtask_id: &str) -> Result<(), PgError> {
    client
        .execute(
            "DELETE FROM pending_subtasks WHERE subtask_id = $1",
            &[&subtask_id],
        )
        .await?;
    Ok(())
}
