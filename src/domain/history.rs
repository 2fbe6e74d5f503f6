//! History events: every state change the production store makes, as its outbox carries them to
//! Postgres. Pure data; the Redis scripts emit them and the Postgres relay applies them.

use std::collections::BTreeMap;

use super::scoring::ScoreBreakdown;
use super::specialist::Availability;
use super::subtask::{Subtask, SubtaskState};

/// One outbox entry. `event_id` is unique store-wide and, for one subtask or one specialist,
/// increases with every change (its type's stream id: `<type>/<millis>-<seq>`), so applying events
/// out of order or twice never moves a row backwards.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    pub event_id: String,
    pub at_ms: i64,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Registered or re-registered (the full current registration).
    SpecialistRegistered {
        specialist_id: String,
        specialist_type: String,
        capabilities: Vec<String>,
        max_concurrency: u32,
        labels: BTreeMap<String, String>,
        availability: Availability,
        /// The registering process's incarnation (None in history written before incarnations).
        incarnation: Option<String>,
    },
    /// Availability changed (heartbeat, lease lapse).
    SpecialistAvailability {
        specialist_id: String,
        availability: Availability,
    },
    SpecialistDeregistered {
        specialist_id: String,
    },
    /// A subtask was accepted, with the assignment state it was created in (its holder when
    /// that step already assigned it).
    SubtaskCreated {
        subtask: Subtask,
        routed_type: String,
        state: SubtaskState,
        attempt: u32,
        specialist_id: Option<String>,
        epoch: u64,
        breakdown: Option<ScoreBreakdown>,
        detail: String,
    },
    /// Any later change of a subtask's assignment state (assigned, queued, requeued, finished).
    SubtaskChanged {
        subtask_id: String,
        state: SubtaskState,
        attempt: u32,
        /// The holder after the change (ASSIGNED), or the one a report finished it under.
        specialist_id: Option<String>,
        epoch: u64,
        breakdown: Option<ScoreBreakdown>,
        detail: String,
    },
    /// A completion report that took effect: the learned scorer's training data.
    CompletionReported {
        subtask_id: String,
        specialist_id: String,
        epoch: u64,
        success: bool,
        completion_time_ms: u64,
        quality_score: f64,
    },
}
