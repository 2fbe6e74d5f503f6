//! Reads of the durable history: a finished subtask the live store has forgotten (its retention
//! passed) still answers GetAssignment from here.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio_postgres::{Client, Row};

use super::PgError;
use crate::domain::scoring::{Factor, ScoreBreakdown};
use crate::domain::subtask::{AssignmentView, Holder, Subtask, SubtaskSpec, SubtaskState};

/// A finished subtask's last recorded assignment and its spec; None when Postgres has no finished
/// subtask of that id (unfinished ones are the live store's to answer).
pub async fn finished_subtask(
    client: &Client,
    subtask_id: &str,
) -> Result<Option<(AssignmentView, Subtask)>, PgError> {
    let row = client
        .query_opt(
            "SELECT * FROM subtasks WHERE subtask_id = $1 AND created_at IS NOT NULL \
             AND state IN ('COMPLETED', 'FAILED', 'CANCELLED')",
            &[&subtask_id],
        )
        .await?;
    Ok(row.and_then(|row| finished_of(&row)))
}

fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

fn finished_of(row: &Row) -> Option<(AssignmentView, Subtask)> {
    let state = match row.get::<_, &str>("state") {
        "COMPLETED" => SubtaskState::Completed,
        "FAILED" => SubtaskState::Failed,
        "CANCELLED" => SubtaskState::Cancelled,
        _ => return None,
    };
    let created_at_ms = millis(row.get("created_at"));
    let holder = match (
        row.get::<_, Option<String>>("specialist_id"),
        row.get::<_, Option<Value>>("breakdown"),
    ) {
        (Some(specialist_id), Some(breakdown)) => Some(Holder {
            specialist_id,
            epoch: row.get::<_, i64>("epoch") as u64,
            assigned_at_ms: row
                .get::<_, Option<SystemTime>>("assigned_at")
                .map_or(0, millis),
            breakdown: breakdown_of(&breakdown)?,
        }),
        _ => None,
    };
    let spec = spec_of_row(row);
    let view = AssignmentView {
        subtask_id: spec.subtask_id.clone(),
        state,
        holder,
        queue_position: None,
        attempt: row.get::<_, i32>("attempt") as u32,
        routed_type: row.get("routed_type"),
        waiting_on: Vec::new(),
        detail: row.get("detail"),
        created_at_ms,
        finished_at_ms: row.get::<_, Option<SystemTime>>("finished_at").map(millis),
    };
    Some((
        view,
        Subtask {
            spec,
            created_at_ms,
        },
    ))
}

/// The spec columns of a `subtasks` or `pending_subtasks` row.
pub fn spec_of_row(row: &Row) -> SubtaskSpec {
    SubtaskSpec {
        subtask_id: row.get("subtask_id"),
        specialist_type: row.get("specialist_type"),
        required_capabilities: row.get("required_capabilities"),
        priority: row.get("priority"),
        parent_id: row.get("parent_id"),
        depends_on: row.get("depends_on"),
        payload: row.get("payload"),
        require_all_capabilities: row.get("require_all_capabilities"),
    }
}

/// The inverse of `columns::breakdown_json`.
fn breakdown_of(json: &Value) -> Option<ScoreBreakdown> {
    let factor = |name: &str| -> Option<Factor> {
        let part = json.get(name)?;
        Some(Factor {
            value: part.get("value")?.as_f64()?,
            weight: part.get("weight")?.as_f64()?,
            points: part.get("points")?.as_f64()?,
        })
    };
    Some(ScoreBreakdown {
        score: json.get("score")?.as_f64()?,
        capability: factor("capability")?,
        load: factor("load")?,
        availability: factor("availability")?,
        performance: factor("performance")?,
    })
}
