//! The history applier: writes a batch of outbox events to Postgres in one transaction, idempotently.
//!
//! The relay may hand the same event over twice (a retried or reclaimed batch) and events of one row
//! out of order (a reclaimed entry applied after newer ones). Neither moves anything backwards:
//! - append-only rows (`assignment_history`, `performance_reports`) are keyed by the event id and
//!   inserted with ON CONFLICT DO NOTHING; a subtask event whose history row exists already was
//!   applied whole, so nothing else of it is written again;
//! - current-state rows (`specialists`, `subtasks`) keep the position of the last event applied and
//!   take an event only if it is later (see `event_id.rs`; a specialist's registration and
//!   deregistration keep positions of their own); an event that arrives before the one that
//!   creates its row leaves a placeholder that the creating event fills in;
//! - an ASSIGNED event that arrives after a later event of the same assignment still gives the row
//!   its score, breakdown and assignment time.
//!
//! So every order of the same events ends in the rows the ordered run gives (tests/postgres_ordering.rs
//! tries all orders of a story).
//!
//! A batch is a handful of set-based statements, not several per event: its events are sorted by
//! table, row id and position (oldest first); the current-state rows they touch are read and locked
//! (FOR UPDATE, in key order), the events of each row are folded over it in Rust, one after another,
//! by the rules above (`collapse.rs`), and each row that changed is written once. The append-only
//! rows go in with one insert per table, which skips the recorded ones and names the new ones. Every
//! relay takes its locks in the same order (specialists, history rows, subtasks, reports, then the
//! rows it creates, each by id), so overlapping batches wait for each other instead of deadlocking;
//! a row that another relay created after this batch found it missing fails the batch with a unique
//! violation, and the batch is retried like a deadlock victim.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row, Statement, Transaction};

use super::collapse::{
    apply_specialist, apply_subtask, Position, SpecialistChange, SpecialistEvent, SpecialistRow,
    SubtaskEvent, SubtaskRow,
};
use super::columns::{breakdown_json, timestamp, to_i32, to_i64};
use super::error::PgError;
use super::event_id::EventId;
use super::statements::Statements;
use crate::domain::history::{Change, HistoryEvent};
use crate::domain::subtask::{Subtask, SubtaskState};

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Something new was written.
    Applied,
    /// Its event id (or, for a report, its subtask and epoch) was recorded already.
    Duplicate,
    /// Its row already holds this event or a later one.
    Superseded,
}

/// What applying one batch did; every event of the batch is counted once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplySummary {
    pub applied: usize,
    pub duplicate: usize,
    pub superseded: usize,
}

impl ApplySummary {
    fn count(&mut self, outcome: EventOutcome) {
        match outcome {
            EventOutcome::Applied => self.applied += 1,
            EventOutcome::Duplicate => self.duplicate += 1,
            EventOutcome::Superseded => self.superseded += 1,
        }
    }
}

/// Attempts at a batch that Postgres aborted to break a deadlock (or a serialization conflict).
const CONFLICT_ATTEMPTS: u32 = 5;

/// Applies `events` in one transaction and commits it: all of the batch or none of it. Safe to call
/// again with the same events (after a failed ack, say). Relays applying overlapping batches at once
/// can still be picked as a deadlock victim; such a batch is retried whole (it is idempotent) up to
/// CONFLICT_ATTEMPTS times. An error leaves the database unchanged; `PgError::is_transient` tells
/// whether retrying the batch later can help.
pub async fn apply_batch(
    client: &mut Client,
    events: &[HistoryEvent],
) -> Result<ApplySummary, PgError> {
    let mut attempt = 1;
    loop {
        match apply_batch_once(client, events).await {
            Err(error) if retryable(&error) && attempt < CONFLICT_ATTEMPTS => {
                tracing::debug!(attempt, %error, "history batch aborted by a conflict; retrying");
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// A deadlock or serialization conflict, or another relay creating a row this batch found missing
/// (after it locked the rest): running the batch again is expected to succeed.
fn retryable(error: &PgError) -> bool {
    if error.is_conflict() {
        return true;
    }
    let PgError::Postgres(error) = error else {
        return false;
    };
    error.as_db_error().is_some_and(|db| {
        db.code() == &SqlState::UNIQUE_VIOLATION
            && matches!(db.constraint(), Some("specialists_pkey" | "subtasks_pkey"))
    })
}

async fn apply_batch_once(
    client: &mut Client,
    events: &[HistoryEvent],
) -> Result<ApplySummary, PgError> {
    let transaction = client.transaction().await?;
    let summary = apply_in_transaction(&transaction, events).await?;
    transaction.commit().await?;
    Ok(summary)
}

/// Applies `events` inside a transaction the caller commits (to add its own writes to it).
///
/// A handful of statements whatever the batch's size, in three pipelined round trips: prepare;
/// lock the specialists, insert the history rows, lock the subtasks, insert the reports; write the
/// specialists and subtasks that changed (each row once, its events collapsed in `collapse.rs`).
pub async fn apply_in_transaction(
    transaction: &Transaction<'_>,
    events: &[HistoryEvent],
) -> Result<ApplySummary, PgError> {
    let batch = Batch::new(events)?;
    let mut summary = ApplySummary::default();
    if events.is_empty() {
        return Ok(summary);
    }
    let statements = Statements::prepare(transaction).await?;
    let (specialist_rows, new_history, subtask_rows, new_reports) = futures::try_join!(
        batch.lock_specialists(transaction, &statements),
        batch.insert_history(transaction, &statements),
        batch.lock_subtasks(transaction, &statements),
        batch.insert_reports(transaction, &statements),
    )?;
    let specialists = batch.collapse_specialists(specialist_rows, &mut summary);
    let subtasks = batch.collapse_subtasks(subtask_rows, &new_history, &mut summary);
    summary.applied += new_reports;
    summary.duplicate += batch.reports.len() - new_reports;
    futures::try_join!(
        write_specialists(
            transaction,
            &statements.specialist_update,
            &specialists.update
        ),
        write_specialists(
            transaction,
            &statements.specialist_insert,
            &specialists.insert
        ),
        write_subtasks(transaction, &statements.subtask_update, &subtasks.update),
        write_subtasks(transaction, &statements.subtask_insert, &subtasks.insert),
    )?;
    Ok(summary)
}

/// A batch's events by table, each in lock order (by row id, oldest event first), converted to
/// column values (so that an event that does not fit fails the batch before anything is written).
struct Batch<'a> {
    specialists: Vec<(&'a str, SpecialistEvent<'a>)>,
    subtasks: Vec<SubtaskItem<'a>>,
    /// All of them: one insert takes them in this order and skips, as one insert each would,
    /// those whose event id or subtask and epoch is recorded already (also by an earlier one).
    reports: Vec<ReportRow<'a>>,
}

struct SubtaskItem<'a> {
    subtask_id: &'a str,
    stream_type: &'a str,
    event: SubtaskEvent<'a>,
    /// False for a repeat of an event id earlier in the batch: a duplicate, not inserted.
    first: bool,
}

struct ReportRow<'a> {
    event_id: &'a str,
    stream_type: &'a str,
    position: Position,
    subtask_id: &'a str,
    specialist_id: &'a str,
    epoch: i64,
    success: bool,
    completion_time_ms: i64,
    quality_score: f64,
    at: SystemTime,
}

impl<'a> Batch<'a> {
    fn new(events: &'a [HistoryEvent]) -> Result<Self, PgError> {
        let mut ordered = Vec::with_capacity(events.len());
        for event in events {
            let event_id = EventId::parse(&event.event_id)?;
            ordered.push((lock_key(&event.change), event_id, event));
        }
        ordered.sort_by(|left, right| (left.0, &left.1).cmp(&(right.0, &right.1)));
        let mut batch = Batch {
            specialists: Vec::new(),
            subtasks: Vec::new(),
            reports: Vec::new(),
        };
        let mut history_ids = HashSet::new();
        for ((_, key), event_id, event) in ordered {
            let at = timestamp(event.at_ms);
            let id = event_id.raw;
            let position = event_id.position();
            let specialist = |change| SpecialistEvent {
                event_id: id,
                stream_type: event_id.stream_type,
                position,
                at,
                change,
            };
            match &event.change {
                Change::SpecialistRegistered {
                    specialist_type,
                    capabilities,
                    max_concurrency,
                    labels,
                    availability,
                    incarnation,
                    ..
                } => {
                    let change = SpecialistChange::Registered {
                        specialist_type,
                        capabilities: json_text(id, "capabilities", capabilities)?,
                        max_concurrency: to_i32(id, "max_concurrency", *max_concurrency)?,
                        labels: json_text(id, "labels", labels)?,
                        availability: availability.as_str(),
                        incarnation: incarnation.as_deref(),
                    };
                    batch.specialists.push((key, specialist(change)));
                }
                Change::SpecialistAvailability { availability, .. } => {
                    let change = SpecialistChange::Availability(availability.as_str());
                    batch.specialists.push((key, specialist(change)));
                }
                Change::SpecialistDeregistered { .. } => {
                    batch
                        .specialists
                        .push((key, specialist(SpecialistChange::Deregistered)));
                }
                Change::SubtaskCreated {
                    subtask,
                    routed_type,
                    state,
                    attempt,
                    specialist_id,
                    epoch,
                    breakdown,
                    detail,
                } => batch.subtasks.push(SubtaskItem {
                    subtask_id: key,
                    stream_type: event_id.stream_type,
                    event: SubtaskEvent {
                        event_id: id,
                        position,
                        at,
                        created: Some(subtask),
                        routed_type,
                        state: state.as_str(),
                        attempt: to_i32(id, "attempt", *attempt)?,
                        specialist_id: specialist_id.as_deref(),
                        epoch: to_i64(id, "epoch", *epoch)?,
                        score: breakdown.as_ref().map(|breakdown| breakdown.score),
                        breakdown: breakdown
                            .as_ref()
                            .map(|breakdown| breakdown_json(breakdown).to_string()),
                        detail,
                        assigned_at: (*state == SubtaskState::Assigned).then_some(at),
                        finished_at: state.is_terminal().then_some(at),
                    },
                    first: history_ids.insert(id),
                }),
                Change::SubtaskChanged {
                    state,
                    attempt,
                    specialist_id,
                    epoch,
                    breakdown,
                    detail,
                    ..
                } => batch.subtasks.push(SubtaskItem {
                    subtask_id: key,
                    stream_type: event_id.stream_type,
                    event: SubtaskEvent {
                        event_id: id,
                        position,
                        at,
                        created: None,
                        routed_type: event_id.stream_type,
                        state: state.as_str(),
                        attempt: to_i32(id, "attempt", *attempt)?,
                        specialist_id: specialist_id.as_deref(),
                        epoch: to_i64(id, "epoch", *epoch)?,
                        score: breakdown.as_ref().map(|breakdown| breakdown.score),
                        breakdown: breakdown
                            .as_ref()
                            .map(|breakdown| breakdown_json(breakdown).to_string()),
                        detail,
                        assigned_at: (*state == SubtaskState::Assigned).then_some(at),
                        finished_at: state.is_terminal().then_some(at),
                    },
                    first: history_ids.insert(id),
                }),
                Change::CompletionReported {
                    specialist_id,
                    epoch,
                    success,
                    completion_time_ms,
                    quality_score,
                    ..
                } => {
                    let epoch = to_i64(id, "epoch", *epoch)?;
                    let completion_time_ms = to_i64(id, "completion_time_ms", *completion_time_ms)?;
                    batch.reports.push(ReportRow {
                        event_id: id,
                        stream_type: event_id.stream_type,
                        position,
                        subtask_id: key,
                        specialist_id,
                        epoch,
                        success: *success,
                        completion_time_ms,
                        quality_score: *quality_score,
                        at,
                    });
                }
            }
        }
        Ok(batch)
    }
}

/// Table group, then the row's id.
fn lock_key(change: &Change) -> (u8, &str) {
    match change {
        Change::SpecialistRegistered { specialist_id, .. }
        | Change::SpecialistAvailability { specialist_id, .. }
        | Change::SpecialistDeregistered { specialist_id } => (0, specialist_id),
        Change::SubtaskCreated { subtask, .. } => (1, &subtask.spec.subtask_id),
        Change::SubtaskChanged { subtask_id, .. } => (1, subtask_id),
        Change::CompletionReported { subtask_id, .. } => (2, subtask_id),
    }
}

fn json_text(
    event_id: &str,
    field: &str,
    value: &impl serde::Serialize,
) -> Result<String, PgError> {
    serde_json::to_string(value)
        .map_err(|error| PgError::invalid_event(event_id, format!("{field}: {error}")))
}

/// The distinct row ids of `keys` (sorted, so consecutive).
fn distinct<'k>(keys: impl Iterator<Item = &'k str>) -> Vec<&'k str> {
    let mut distinct: Vec<&str> = keys.collect();
    distinct.dedup();
    distinct
}

/// Rows to write, in key order: those that exist (locked) and those to create.
struct Writes<R> {
    update: Vec<(String, R)>,
    insert: Vec<(String, R)>,
}

impl<R> Default for Writes<R> {
    fn default() -> Self {
        Writes {
            update: Vec::new(),
            insert: Vec::new(),
        }
    }
}

impl<'a> Batch<'a> {
    async fn lock_specialists(
        &self,
        transaction: &Transaction<'_>,
        statements: &Statements,
    ) -> Result<HashMap<String, SpecialistRow>, PgError> {
        if self.specialists.is_empty() {
            return Ok(HashMap::new());
        }
        let ids = distinct(self.specialists.iter().map(|(id, _)| *id));
        let rows = transaction
            .query(&statements.specialist_lock, &[&ids])
            .await?;
        let position = |row: &Row, ms: usize| {
            let millis: Option<i64> = row.get(ms);
            let seq: Option<i64> = row.get(ms + 1);
            millis.zip(seq)
        };
        Ok(rows
            .iter()
            .map(|row| {
                let specialist = SpecialistRow {
                    specialist_type: row.get(1),
                    capabilities: row.get(2),
                    max_concurrency: row.get(3),
                    labels: row.get(4),
                    registered_at: row.get(5),
                    registration: position(row, 6),
                    availability: row.get(8),
                    updated_at: row.get(9),
                    deregistered_at: row.get(10),
                    deregistration: position(row, 11),
                    last_event_id: row.get(13),
                    last: (row.get(14), row.get(15)),
                    incarnation: row.get(16),
                };
                (row.get(0), specialist)
            })
            .collect())
    }

    /// The event ids that were new to `assignment_history`.
    async fn insert_history(
        &self,
        transaction: &Transaction<'_>,
        statements: &Statements,
    ) -> Result<HashSet<String>, PgError> {
        let items: Vec<&SubtaskItem> = self.subtasks.iter().filter(|item| item.first).collect();
        if items.is_empty() {
            return Ok(HashSet::new());
        }
        let column = |value: fn(&SubtaskItem<'a>) -> &'a str| -> Vec<&'a str> {
            items.iter().map(|item| value(item)).collect()
        };
        let event_ids = column(|item| item.event.event_id);
        let stream_types = column(|item| item.stream_type);
        let subtask_ids = column(|item| item.subtask_id);
        let states = column(|item| item.event.state);
        let details = column(|item| item.event.detail);
        let kinds: Vec<&str> = items
            .iter()
            .map(|item| match item.event.created {
                Some(_) => "created",
                None => "changed",
            })
            .collect();
        let millis: Vec<i64> = items.iter().map(|item| item.event.position.0).collect();
        let seqs: Vec<i64> = items.iter().map(|item| item.event.position.1).collect();
        let attempts: Vec<i32> = items.iter().map(|item| item.event.attempt).collect();
        let specialist_ids: Vec<Option<&str>> =
            items.iter().map(|item| item.event.specialist_id).collect();
        let epochs: Vec<i64> = items.iter().map(|item| item.event.epoch).collect();
        let scores: Vec<Option<f64>> = items.iter().map(|item| item.event.score).collect();
        let breakdowns: Vec<Option<&str>> = items
            .iter()
            .map(|item| item.event.breakdown.as_deref())
            .collect();
        let ats: Vec<SystemTime> = items.iter().map(|item| item.event.at).collect();
        let rows = transaction
            .query(
                &statements.history_insert,
                &[
                    &event_ids,
                    &stream_types,
                    &millis,
                    &seqs,
                    &subtask_ids,
                    &kinds,
                    &states,
                    &attempts,
                    &specialist_ids,
                    &epochs,
                    &scores,
                    &breakdowns,
                    &details,
                    &ats,
                ],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn lock_subtasks(
        &self,
        transaction: &Transaction<'_>,
        statements: &Statements,
    ) -> Result<HashMap<String, SubtaskRow<'a>>, PgError> {
        if self.subtasks.is_empty() {
            return Ok(HashMap::new());
        }
        let ids = distinct(self.subtasks.iter().map(|item| item.subtask_id));
        let rows = transaction.query(&statements.subtask_lock, &[&ids]).await?;
        Ok(rows
            .iter()
            .map(|row| {
                let subtask = SubtaskRow {
                    has_spec: row.get(1),
                    fill: None,
                    routed_type: row.get(2),
                    state: row.get(3),
                    attempt: row.get(4),
                    specialist_id: row.get(5),
                    epoch: row.get(6),
                    score: row.get(7),
                    breakdown: row.get(8),
                    detail: row.get(9),
                    assigned_at: row.get(10),
                    finished_at: row.get(11),
                    updated_at: row.get(12),
                    last_event_id: row.get(13),
                    last: (row.get(14), row.get(15)),
                };
                (row.get(0), subtask)
            })
            .collect())
    }

    /// How many reports were new to `performance_reports`.
    async fn insert_reports(
        &self,
        transaction: &Transaction<'_>,
        statements: &Statements,
    ) -> Result<usize, PgError> {
        let reports = &self.reports;
        if reports.is_empty() {
            return Ok(0);
        }
        let event_ids: Vec<&str> = reports.iter().map(|report| report.event_id).collect();
        let stream_types: Vec<&str> = reports.iter().map(|report| report.stream_type).collect();
        let millis: Vec<i64> = reports.iter().map(|report| report.position.0).collect();
        let seqs: Vec<i64> = reports.iter().map(|report| report.position.1).collect();
        let subtask_ids: Vec<&str> = reports.iter().map(|report| report.subtask_id).collect();
        let specialist_ids: Vec<&str> = reports.iter().map(|report| report.specialist_id).collect();
        let epochs: Vec<i64> = reports.iter().map(|report| report.epoch).collect();
        let successes: Vec<bool> = reports.iter().map(|report| report.success).collect();
        let times: Vec<i64> = reports
            .iter()
            .map(|report| report.completion_time_ms)
            .collect();
        let qualities: Vec<f64> = reports.iter().map(|report| report.quality_score).collect();
        let ats: Vec<SystemTime> = reports.iter().map(|report| report.at).collect();
        let rows = transaction
            .query(
                &statements.report_insert,
                &[
                    &event_ids,
                    &stream_types,
                    &millis,
                    &seqs,
                    &subtask_ids,
                    &specialist_ids,
                    &epochs,
                    &successes,
                    &times,
                    &qualities,
                    &ats,
                ],
            )
            .await?;
        Ok(rows.len())
    }

    /// Folds each specialist's events over its row; counts every event.
    fn collapse_specialists(
        &self,
        mut rows: HashMap<String, SpecialistRow>,
        summary: &mut ApplySummary,
    ) -> Writes<SpecialistRow> {
        let mut writes = Writes::default();
        for events in self.specialists.chunk_by(|left, right| left.0 == right.0) {
            let id = events[0].0;
            let before = rows.remove(id);
            let mut row = before.clone();
            for (_, event) in events {
                summary.count(apply_specialist(&mut row, event));
            }
            writes.push(id, before.is_some(), row, &before);
        }
        writes
    }

    /// Folds each subtask's events that were new to the history over its row; counts every event.
    fn collapse_subtasks(
        &self,
        mut rows: HashMap<String, SubtaskRow<'a>>,
        new_history: &HashSet<String>,
        summary: &mut ApplySummary,
    ) -> Writes<SubtaskRow<'a>> {
        let mut writes = Writes::default();
        for items in self
            .subtasks
            .chunk_by(|left, right| left.subtask_id == right.subtask_id)
        {
            let id = items[0].subtask_id;
            let before = rows.remove(id);
            let mut row = before.clone();
            for item in items {
                if item.first && new_history.contains(item.event.event_id) {
                    summary.count(EventOutcome::Applied);
                    apply_subtask(&mut row, &item.event);
                } else {
                    summary.count(EventOutcome::Duplicate);
                }
            }
            writes.push(id, before.is_some(), row, &before);
        }
        writes
    }
}

impl<R: PartialEq> Writes<R> {
    /// Keeps `row` if the events changed it.
    fn push(&mut self, id: &str, existed: bool, row: Option<R>, before: &Option<R>) {
        let Some(row) = row else { return };
        if before.as_ref() == Some(&row) {
            return;
        }
        let target = if existed {
            &mut self.update
        } else {
            &mut self.insert
        };
        target.push((id.to_string(), row));
    }
}

async fn write_specialists(
    transaction: &Transaction<'_>,
    statement: &Statement,
    rows: &[(String, SpecialistRow)],
) -> Result<(), PgError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    let types: Vec<&str> = column(rows, |row| row.specialist_type.as_str());
    let capabilities: Vec<Option<&str>> = column(rows, |row| row.capabilities.as_deref());
    let max_concurrency: Vec<Option<i32>> = column(rows, |row| row.max_concurrency);
    let labels: Vec<Option<&str>> = column(rows, |row| row.labels.as_deref());
    let registered_at: Vec<Option<SystemTime>> = column(rows, |row| row.registered_at);
    let registration_ms: Vec<Option<i64>> =
        column(rows, |row| row.registration.map(|position| position.0));
    let registration_seq: Vec<Option<i64>> =
        column(rows, |row| row.registration.map(|position| position.1));
    let availability: Vec<&str> = column(rows, |row| row.availability.as_str());
    let updated_at: Vec<SystemTime> = column(rows, |row| row.updated_at);
    let deregistered_at: Vec<Option<SystemTime>> = column(rows, |row| row.deregistered_at);
    let deregistration_ms: Vec<Option<i64>> =
        column(rows, |row| row.deregistration.map(|position| position.0));
    let deregistration_seq: Vec<Option<i64>> =
        column(rows, |row| row.deregistration.map(|position| position.1));
    let last_event_ids: Vec<&str> = column(rows, |row| row.last_event_id.as_str());
    let last_ms: Vec<i64> = column(rows, |row| row.last.0);
    let last_seq: Vec<i64> = column(rows, |row| row.last.1);
    let incarnations: Vec<Option<&str>> = column(rows, |row| row.incarnation.as_deref());
    transaction
        .execute(
            statement,
            &[
                &ids,
                &types,
                &capabilities,
                &max_concurrency,
                &labels,
                &registered_at,
                &registration_ms,
                &registration_seq,
                &availability,
                &updated_at,
                &deregistered_at,
                &deregistration_ms,
                &deregistration_seq,
                &last_event_ids,
                &last_ms,
                &last_seq,
                &incarnations,
            ],
        )
        .await?;
    Ok(())
}

async fn write_subtasks(
    transaction: &Transaction<'_>,
    statement: &Statement,
    rows: &[(String, SubtaskRow<'_>)],
) -> Result<(), PgError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    let routed_types: Vec<&str> = column(rows, |row| row.routed_type.as_str());
    let states: Vec<&str> = column(rows, |row| row.state.as_str());
    let attempts: Vec<i32> = column(rows, |row| row.attempt);
    let specialist_ids: Vec<Option<&str>> = column(rows, |row| row.specialist_id.as_deref());
    let epochs: Vec<i64> = column(rows, |row| row.epoch);
    let scores: Vec<Option<f64>> = column(rows, |row| row.score);
    let breakdowns: Vec<Option<&str>> = column(rows, |row| row.breakdown.as_deref());
    let details: Vec<&str> = column(rows, |row| row.detail.as_str());
    let assigned_at: Vec<Option<SystemTime>> = column(rows, |row| row.assigned_at);
    let finished_at: Vec<Option<SystemTime>> = column(rows, |row| row.finished_at);
    let updated_at: Vec<SystemTime> = column(rows, |row| row.updated_at);
    let last_event_ids: Vec<&str> = column(rows, |row| row.last_event_id.as_str());
    let last_ms: Vec<i64> = column(rows, |row| row.last.0);
    let last_seq: Vec<i64> = column(rows, |row| row.last.1);
    let fills: Vec<bool> = column(rows, |row| row.fill.is_some());
    let specs: Vec<Option<&Subtask>> = column(rows, |row| row.fill);
    let spec_column = |value: fn(&Subtask) -> &str| -> Vec<Option<&str>> {
        specs.iter().map(|spec| spec.map(value)).collect()
    };
    let specialist_types = spec_column(|subtask| &subtask.spec.specialist_type);
    let parent_ids: Vec<Option<&str>> = specs
        .iter()
        .map(|spec| spec.and_then(|subtask| subtask.spec.parent_id.as_deref()))
        .collect();
    let required: Vec<Option<String>> = specs
        .iter()
        .map(|spec| spec.map(|subtask| json_array(&subtask.spec.required_capabilities)))
        .collect();
    let depends_on: Vec<Option<String>> = specs
        .iter()
        .map(|spec| spec.map(|subtask| json_array(&subtask.spec.depends_on)))
        .collect();
    let require_all: Vec<Option<bool>> = specs
        .iter()
        .map(|spec| spec.map(|subtask| subtask.spec.require_all_capabilities))
        .collect();
    let priorities: Vec<Option<i32>> = specs
        .iter()
        .map(|spec| spec.map(|subtask| subtask.spec.priority))
        .collect();
    let payloads: Vec<Option<&[u8]>> = specs
        .iter()
        .map(|spec| spec.map(|subtask| subtask.spec.payload.as_slice()))
        .collect();
    let created_at: Vec<Option<SystemTime>> = specs
        .iter()
        .map(|spec| spec.map(|subtask| timestamp(subtask.created_at_ms)))
        .collect();
    transaction
        .execute(
            statement,
            &[
                &ids,
                &routed_types,
                &states,
                &attempts,
                &specialist_ids,
                &epochs,
                &scores,
                &breakdowns,
                &details,
                &assigned_at,
                &finished_at,
                &updated_at,
                &last_event_ids,
                &last_ms,
                &last_seq,
                &fills,
                &specialist_types,
                &required,
                &require_all,
                &priorities,
                &parent_ids,
                &depends_on,
                &payloads,
                &created_at,
            ],
        )
        .await?;
    Ok(())
}

/// One value of each row, for a statement's array parameter.
fn column<'r, R, T>(rows: &'r [(String, R)], value: impl Fn(&'r R) -> T) -> Vec<T> {
    rows.iter().map(|(_, row)| value(row)).collect()
}

/// A list of names as a JSON array.
fn json_array(names: &[String]) -> String {
    serde_json::Value::from(names.to_vec()).to_string()
}
