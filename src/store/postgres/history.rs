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
//! tries all orders of a story). Within a batch, events are applied in lock order (specialists, then
//! subtasks, then reports, each by id, oldest event first), so two relays applying overlapping
//! batches wait for each other instead of deadlocking.

use std::time::SystemTime;

use tokio_postgres::{Client, Transaction};

use super::columns::{breakdown_json, timestamp, to_i32, to_i64};
use super::error::PgError;
use super::event_id::EventId;
use super::statements::Statements;
use crate::domain::history::{Change, HistoryEvent};
use crate::domain::scoring::ScoreBreakdown;
use crate::domain::subtask::SubtaskState;

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
            Err(error) if error.is_conflict() && attempt < CONFLICT_ATTEMPTS => {
                tracing::debug!(attempt, %error, "history batch aborted by a conflict; retrying");
                attempt += 1;
            }
            result => return result,
        }
    }
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
pub async fn apply_in_transaction(
    transaction: &Transaction<'_>,
    events: &[HistoryEvent],
) -> Result<ApplySummary, PgError> {
    let mut ordered = Vec::with_capacity(events.len());
    for event in events {
        let event_id = EventId::parse(&event.event_id)?;
        ordered.push((lock_key(&event.change), event_id, event));
    }
    ordered.sort_by(|left, right| (left.0, &left.1).cmp(&(right.0, &right.1)));
    let mut summary = ApplySummary::default();
    if ordered.is_empty() {
        return Ok(summary);
    }
    let statements = Statements::prepare(transaction).await?;
    for (_, event_id, event) in &ordered {
        let outcome = apply_event(transaction, &statements, event_id, event).await?;
        summary.count(outcome);
    }
    Ok(summary)
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

async fn apply_event(
    transaction: &Transaction<'_>,
    statements: &Statements,
    event_id: &EventId<'_>,
    event: &HistoryEvent,
) -> Result<EventOutcome, PgError> {
    let at = timestamp(event.at_ms);
    let id = event_id.raw;
    let (position_ms, position_seq) = event_id.position();
    let written = |rows: u64| {
        if rows > 0 {
            EventOutcome::Applied
        } else {
            EventOutcome::Superseded
        }
    };
    match &event.change {
        Change::SpecialistRegistered {
            specialist_id,
            specialist_type,
            capabilities,
            max_concurrency,
            labels,
            availability,
        } => {
            let max_concurrency = to_i32(id, "max_concurrency", *max_concurrency)?;
            let labels = serde_json::to_value(labels)
                .map_err(|error| PgError::invalid_event(id, format!("labels: {error}")))?;
            let availability = availability.as_str();
            let rows = transaction
                .execute(
                    &statements.specialist_registered,
                    &[
                        specialist_id,
                        specialist_type,
                        capabilities,
                        &max_concurrency,
                        &labels,
                        &at,
                        &availability,
                        &id,
                        &position_ms,
                        &position_seq,
                    ],
                )
                .await?;
            Ok(written(rows))
        }
        Change::SpecialistAvailability {
            specialist_id,
            availability,
        } => {
            let rows = transaction
                .execute(
                    &statements.specialist_availability,
                    &[
                        specialist_id,
                        &event_id.stream_type,
                        &availability.as_str(),
                        &at,
                        &id,
                        &position_ms,
                        &position_seq,
                    ],
                )
                .await?;
            Ok(written(rows))
        }
        Change::SpecialistDeregistered { specialist_id } => {
            let rows = transaction
                .execute(
                    &statements.specialist_deregistered,
                    &[
                        specialist_id,
                        &event_id.stream_type,
                        &at,
                        &id,
                        &position_ms,
                        &position_seq,
                    ],
                )
                .await?;
            Ok(written(rows))
        }
        Change::SubtaskCreated {
            subtask,
            routed_type,
            state,
        } => {
            let spec = &subtask.spec;
            let change = SubtaskRow {
                subtask_id: &spec.subtask_id,
                routed_type,
                kind: "created",
                state: *state,
                attempt: 1,
                specialist_id: None,
                epoch: 0,
                breakdown: None,
                detail: "",
            };
            if !change.record(transaction, statements, event_id, at).await? {
                return Ok(EventOutcome::Duplicate);
            }
            transaction
                .execute(
                    &statements.subtask_fill,
                    &[
                        &spec.subtask_id,
                        &spec.specialist_type,
                        &spec.required_capabilities,
                        &spec.require_all_capabilities,
                        &spec.priority,
                        &spec.parent_id,
                        &spec.depends_on,
                        &spec.payload,
                        &timestamp(subtask.created_at_ms),
                        routed_type,
                    ],
                )
                .await?;
            Ok(EventOutcome::Applied)
        }
        Change::SubtaskChanged {
            subtask_id,
            state,
            attempt,
            specialist_id,
            epoch,
            breakdown,
            detail,
        } => {
            let change = SubtaskRow {
                subtask_id,
                routed_type: event_id.stream_type,
                kind: "changed",
                state: *state,
                attempt: to_i32(id, "attempt", *attempt)?,
                specialist_id: specialist_id.as_deref(),
                epoch: to_i64(id, "epoch", *epoch)?,
                breakdown: breakdown.as_ref(),
                detail,
            };
            if !change.record(transaction, statements, event_id, at).await? {
                return Ok(EventOutcome::Duplicate);
            }
            Ok(EventOutcome::Applied)
        }
        Change::CompletionReported {
            subtask_id,
            specialist_id,
            epoch,
            success,
            completion_time_ms,
            quality_score,
        } => {
            let rows = transaction
                .execute(
                    &statements.report,
                    &[
                        &id,
                        &event_id.stream_type,
                        &position_ms,
                        &position_seq,
                        subtask_id,
                        specialist_id,
                        &to_i64(id, "epoch", *epoch)?,
                        success,
                        &to_i64(id, "completion_time_ms", *completion_time_ms)?,
                        quality_score,
                        &at,
                    ],
                )
                .await?;
            Ok(if rows > 0 {
                EventOutcome::Applied
            } else {
                EventOutcome::Duplicate
            })
        }
    }
}

/// One subtask event as both tables see it.
struct SubtaskRow<'a> {
    subtask_id: &'a str,
    routed_type: &'a str,
    kind: &'static str,
    state: SubtaskState,
    attempt: i32,
    specialist_id: Option<&'a str>,
    epoch: i64,
    breakdown: Option<&'a ScoreBreakdown>,
    detail: &'a str,
}

impl SubtaskRow<'_> {
    /// Appends the history row and, if it was new, moves the current-state row forward (if this
    /// event is later than its last one). False: the event was recorded already.
    async fn record(
        &self,
        transaction: &Transaction<'_>,
        statements: &Statements,
        event_id: &EventId<'_>,
        at: SystemTime,
    ) -> Result<bool, PgError> {
        let (position_ms, position_seq) = event_id.position();
        let state = self.state.as_str();
        let score = self.breakdown.map(|breakdown| breakdown.score);
        let breakdown = self.breakdown.map(breakdown_json);
        let inserted = transaction
            .execute(
                &statements.subtask_history,
                &[
                    &event_id.raw,
                    &event_id.stream_type,
                    &position_ms,
                    &position_seq,
                    &self.subtask_id,
                    &self.kind,
                    &state,
                    &self.attempt,
                    &self.specialist_id,
                    &self.epoch,
                    &score,
                    &breakdown,
                    &self.detail,
                    &at,
                ],
            )
            .await?;
        if inserted == 0 {
            return Ok(false);
        }
        let assigned_at = (self.state == SubtaskState::Assigned).then_some(at);
        let finished_at = self.state.is_terminal().then_some(at);
        let moved = transaction
            .execute(
                &statements.subtask_state,
                &[
                    &self.subtask_id,
                    &self.routed_type,
                    &state,
                    &self.attempt,
                    &self.specialist_id,
                    &self.epoch,
                    &score,
                    &breakdown,
                    &self.detail,
                    &assigned_at,
                    &finished_at,
                    &at,
                    &event_id.raw,
                    &position_ms,
                    &position_seq,
                ],
            )
            .await?;
        let carries_assignment = breakdown.is_some() || assigned_at.is_some();
        if moved == 0 && carries_assignment && self.specialist_id.is_some() {
            transaction
                .execute(
                    &statements.subtask_holder_fill,
                    &[
                        &self.subtask_id,
                        &self.specialist_id,
                        &self.epoch,
                        &score,
                        &breakdown,
                        &assigned_at,
                    ],
                )
                .await?;
        }
        Ok(true)
    }
}
