//! What a rebuild of an empty Redis reads from the history (store/production/rebuild.rs): the
//! performance records, the registered specialists, the finished subtasks unfinished ones depend
//! on, and the unfinished subtasks.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::Client;

use super::reads::spec_of_row;
use super::PgError;
use crate::domain::performance::PERFORMANCE_WINDOW;
use crate::domain::specialist::Availability;
use crate::domain::subtask::SubtaskSpec;

/// A specialist's performance record as the reports add up.
pub struct PerformanceRow {
    pub specialist_id: String,
    /// The type whose slot keeps it (its registration's, else the stream of its last report).
    pub specialist_type: String,
    pub completed: i64,
    pub succeeded: i64,
    pub quality_sum: f64,
    pub time_sum: f64,
    /// The last PERFORMANCE_WINDOW outcomes, oldest first, as 1/0.
    pub window: String,
}

pub struct SpecialistRow {
    pub specialist_id: String,
    pub specialist_type: String,
    pub capabilities: Vec<String>,
    pub max_concurrency: u32,
    pub labels: BTreeMap<String, String>,
    /// Offline comes back as online: it is registered again, and it heartbeats or lapses.
    pub availability: Availability,
    /// None: registered before incarnations (the rebuild starts a new one).
    pub incarnation: Option<String>,
}

pub struct FinishedRow {
    pub spec: SubtaskSpec,
    pub routed_type: String,
    pub state: String,
    pub attempt: i32,
    pub detail: String,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

pub async fn performance_records(client: &Client) -> Result<Vec<PerformanceRow>, PgError> {
    let rows = client
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
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let outcomes: String = row.get("outcomes");
            PerformanceRow {
                specialist_id: row.get("specialist_id"),
                specialist_type: row.get("specialist_type"),
                completed: row.get("completed"),
                succeeded: row.get("succeeded"),
                quality_sum: row.get("quality_sum"),
                time_sum: row.get("time_sum"),
                window: outcomes[outcomes.len().saturating_sub(PERFORMANCE_WINDOW)..].to_string(),
            }
        })
        .collect())
}

pub async fn registered_specialists(client: &Client) -> Result<Vec<SpecialistRow>, PgError> {
    let rows = client
        .query(
            "SELECT specialist_id, specialist_type, capabilities, max_concurrency, labels, \
             availability, incarnation FROM specialists \
             WHERE deregistered_at IS NULL AND registered_at IS NOT NULL ORDER BY specialist_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| SpecialistRow {
            specialist_id: row.get("specialist_id"),
            specialist_type: row.get("specialist_type"),
            capabilities: row.get("capabilities"),
            max_concurrency: row.get::<_, i32>("max_concurrency") as u32,
            labels: serde_json::from_value(row.get("labels")).unwrap_or_default(),
            availability: match Availability::parse(row.get("availability")) {
                Some(Availability::Offline) | None => Availability::Online,
                Some(availability) => availability,
            },
            incarnation: row.get("incarnation"),
        })
        .collect())
}

pub async fn finished_dependencies(client: &Client) -> Result<Vec<FinishedRow>, PgError> {
    let rows = client
        .query(
            "SELECT * FROM subtasks WHERE created_at IS NOT NULL \
             AND state IN ('COMPLETED', 'FAILED', 'CANCELLED') \
             AND subtask_id IN (SELECT unnest(depends_on) FROM subtasks \
                                WHERE state IN ('QUEUED', 'ASSIGNED', 'BLOCKED'))",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| FinishedRow {
            spec: spec_of_row(row),
            routed_type: row.get("routed_type"),
            state: row.get("state"),
            attempt: row.get("attempt"),
            detail: row.get("detail"),
            created_at_ms: millis(row.get("created_at")),
            finished_at_ms: row.get::<_, Option<SystemTime>>("finished_at").map(millis),
        })
        .collect())
}

/// An unfinished subtask as the history left it.
pub struct UnfinishedRow {
    pub spec: SubtaskSpec,
    pub routed_type: String,
    /// The holder and its epoch while ASSIGNED (None otherwise).
    pub holder: Option<(String, i64)>,
    pub attempt: i32,
    pub created_at_ms: i64,
    pub assigned_at_ms: Option<i64>,
}

/// Unfinished subtasks, oldest first.
pub async fn unfinished_subtasks(client: &Client) -> Result<Vec<UnfinishedRow>, PgError> {
    let rows = client
        .query(
            "SELECT * FROM subtasks WHERE created_at IS NOT NULL \
             AND state IN ('QUEUED', 'ASSIGNED', 'BLOCKED') ORDER BY created_at, subtask_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let state: &str = row.get("state");
            let holder = row.get::<_, Option<String>>("specialist_id");
            let epoch: i64 = row.get("epoch");
            UnfinishedRow {
                spec: spec_of_row(row),
                routed_type: row.get("routed_type"),
                holder: holder
                    .filter(|_| state == "ASSIGNED" && epoch > 0)
                    .map(|id| (id, epoch)),
                attempt: row.get("attempt"),
                created_at_ms: millis(row.get("created_at")),
                assigned_at_ms: row.get::<_, Option<SystemTime>>("assigned_at").map(millis),
            }
        })
        .collect())
}

/// The highest epoch each type handed out, as far as the history knows.
pub async fn highest_epochs(client: &Client) -> Result<Vec<(String, i64)>, PgError> {
    let rows = client
        .query(
            "SELECT routed_type, max(epoch) AS epoch FROM subtasks GROUP BY routed_type",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| (row.get("routed_type"), row.get("epoch")))
        .collect())
}
