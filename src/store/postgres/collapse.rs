//! The applier's per-row rules, in Rust: a batch's events of one current-state row, applied one
//! after another (oldest first) to the row as the transaction locked it, collapse into the row to
//! write (at most one write per row, whatever number of events touched it).
//!
//! Each function here is the statement-by-statement applier of `statements.rs`' history, for one
//! event: the same guards (positions compared by parts, a missing position counting as -1), the
//! same columns, the same outcome. `history.rs` reads the rows (FOR UPDATE), folds the events over
//! them with these functions and writes the rows that changed.

use std::time::SystemTime;

use super::history::EventOutcome;
use crate::domain::subtask::Subtask;

/// An event's position in its stream, `(millis, seq)`.
pub(super) type Position = (i64, i64);

/// What a missing position compares as: before every real one.
const NO_POSITION: Position = (-1, -1);

/// A `specialists` row (`capabilities` and `labels` as JSON text).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SpecialistRow {
    pub specialist_type: String,
    pub capabilities: Option<String>,
    pub max_concurrency: Option<i32>,
    pub labels: Option<String>,
    pub registered_at: Option<SystemTime>,
    pub registration: Option<Position>,
    pub availability: String,
    pub updated_at: SystemTime,
    pub deregistered_at: Option<SystemTime>,
    pub deregistration: Option<Position>,
    pub last_event_id: String,
    pub last: Position,
    /// The latest registration's incarnation (None before incarnations, or in a placeholder).
    pub incarnation: Option<String>,
}

/// A specialist event, its values converted to columns.
#[derive(Debug, Clone)]
pub(super) struct SpecialistEvent<'a> {
    pub event_id: &'a str,
    /// The stream it came from: the type of a row it creates without registering.
    pub stream_type: &'a str,
    pub position: Position,
    pub at: SystemTime,
    pub change: SpecialistChange<'a>,
}

#[derive(Debug, Clone)]
pub(super) enum SpecialistChange<'a> {
    Registered {
        specialist_type: &'a str,
        capabilities: String,
        max_concurrency: i32,
        labels: String,
        availability: &'static str,
        incarnation: Option<&'a str>,
    },
    Availability(&'static str),
    Deregistered,
}

/// Applies one specialist event to the row (None: there is none yet).
pub(super) fn apply_specialist(
    row: &mut Option<SpecialistRow>,
    event: &SpecialistEvent<'_>,
) -> EventOutcome {
    let position = event.position;
    let Some(current) = row else {
        *row = Some(new_specialist(event));
        return EventOutcome::Applied;
    };
    let later_than_registration = current.registration.unwrap_or(NO_POSITION) < position;
    let later_than_deregistration = current.deregistration.unwrap_or(NO_POSITION) < position;
    let later_than_both = later_than_registration && later_than_deregistration;
    let later_than_state = current.last < position;
    let (written, availability) = match &event.change {
        SpecialistChange::Registered {
            specialist_type,
            capabilities,
            max_concurrency,
            labels,
            availability,
            incarnation,
        } => {
            if later_than_registration {
                current.incarnation = incarnation.map(str::to_string);
                current.specialist_type = specialist_type.to_string();
                current.capabilities = Some(capabilities.clone());
                current.max_concurrency = Some(*max_concurrency);
                current.labels = Some(labels.clone());
                current.registered_at = Some(event.at);
                current.registration = Some(position);
            }
            if later_than_both {
                current.deregistered_at = None;
                current.deregistration = None;
            }
            (later_than_registration || later_than_state, *availability)
        }
        SpecialistChange::Availability(availability) => (later_than_state, *availability),
        SpecialistChange::Deregistered => {
            if later_than_both {
                current.deregistered_at = Some(event.at);
                current.deregistration = Some(position);
            }
            (later_than_both || later_than_state, "offline")
        }
    };
    if later_than_state {
        current.availability = availability.to_string();
        current.updated_at = event.at;
        current.last_event_id = event.event_id.to_string();
        current.last = position;
    }
    if written {
        EventOutcome::Applied
    } else {
        EventOutcome::Superseded
    }
}

/// The row an event creates: what the event makes of a row that holds no position yet.
fn new_specialist(event: &SpecialistEvent<'_>) -> SpecialistRow {
    let mut row = Some(SpecialistRow {
        specialist_type: event.stream_type.to_string(),
        capabilities: None,
        max_concurrency: None,
        labels: None,
        registered_at: None,
        registration: None,
        availability: String::new(),
        updated_at: event.at,
        deregistered_at: None,
        deregistration: None,
        last_event_id: String::new(),
        last: NO_POSITION,
        incarnation: None,
    });
    apply_specialist(&mut row, event);
    row.expect("a row")
}

/// A `subtasks` row: the state part as read, and the spec only when this batch fills it in.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SubtaskRow<'a> {
    /// Whether the row has its spec (read) or gets it from this batch (`fill`).
    pub has_spec: bool,
    /// The spec this batch writes into the row (and its routed type).
    pub fill: Option<&'a Subtask>,
    pub routed_type: String,
    pub state: String,
    pub attempt: i32,
    pub specialist_id: Option<String>,
    pub epoch: i64,
    pub score: Option<f64>,
    /// JSON text.
    pub breakdown: Option<String>,
    pub detail: String,
    pub assigned_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub updated_at: SystemTime,
    pub last_event_id: String,
    pub last: Position,
}

/// A SubtaskCreated or SubtaskChanged event as the `subtasks` row sees it.
#[derive(Debug, Clone)]
pub(super) struct SubtaskEvent<'a> {
    pub event_id: &'a str,
    pub position: Position,
    pub at: SystemTime,
    /// The spec of a SubtaskCreated event.
    pub created: Option<&'a Subtask>,
    /// The routed type of a creation, the stream's type of a change: the type of a row it creates.
    pub routed_type: &'a str,
    pub state: &'static str,
    pub attempt: i32,
    pub specialist_id: Option<&'a str>,
    pub epoch: i64,
    pub score: Option<f64>,
    /// JSON text.
    pub breakdown: Option<String>,
    pub detail: &'a str,
    /// Set when the event makes the subtask ASSIGNED.
    pub assigned_at: Option<SystemTime>,
    /// Set when the event finishes the subtask.
    pub finished_at: Option<SystemTime>,
}

/// Applies one subtask event that was new to the history (a recorded one changes nothing) to the
/// row (None: there is none yet).
pub(super) fn apply_subtask<'a>(row: &mut Option<SubtaskRow<'a>>, event: &SubtaskEvent<'a>) {
    let moved = match row {
        None => {
            *row = Some(new_subtask(event));
            true
        }
        Some(current) if current.last < event.position => {
            let same_holder = event.specialist_id.is_some()
                && current.specialist_id.as_deref() == event.specialist_id
                && current.epoch == event.epoch;
            if event.breakdown.is_some() {
                current.score = event.score;
                current.breakdown = event.breakdown.clone();
            } else if !same_holder {
                current.score = None;
                current.breakdown = None;
            }
            if event.assigned_at.is_some() || !same_holder {
                current.assigned_at = event.assigned_at;
            }
            current.state = event.state.to_string();
            current.attempt = event.attempt;
            current.specialist_id = event.specialist_id.map(str::to_string);
            current.epoch = event.epoch;
            current.detail = event.detail.to_string();
            current.finished_at = event.finished_at;
            current.updated_at = event.at;
            current.last_event_id = event.event_id.to_string();
            current.last = event.position;
            true
        }
        Some(_) => false,
    };
    let Some(current) = row else {
        return;
    };
    // An ASSIGNED event that arrives after a later one of the same assignment.
    let carries_assignment = event.breakdown.is_some() || event.assigned_at.is_some();
    if !moved
        && carries_assignment
        && event.specialist_id.is_some()
        && current.specialist_id.as_deref() == event.specialist_id
        && current.epoch == event.epoch
    {
        if current.score.is_none() {
            current.score = event.score;
        }
        if current.breakdown.is_none() {
            current.breakdown = event.breakdown.clone();
        }
        if current.assigned_at.is_none() {
            current.assigned_at = event.assigned_at;
        }
    }
    if let Some(subtask) = event.created {
        // A creation later than everything the row holds, of a row that has its spec already,
        // is the id used again after the live store forgot the finished subtask (its
        // retention): the row becomes the new subtask (the history keeps both).
        let reused = moved && current.has_spec;
        if !current.has_spec || reused {
            current.has_spec = true;
            current.fill = Some(subtask);
            current.routed_type = event.routed_type.to_string();
        }
    }
}

/// The row an event creates: what the event makes of a row that holds no position yet (nor a
/// holder, so nothing of one is kept).
fn new_subtask<'a>(event: &SubtaskEvent<'a>) -> SubtaskRow<'a> {
    let mut row = Some(SubtaskRow {
        has_spec: false,
        fill: None,
        routed_type: event.routed_type.to_string(),
        state: String::new(),
        attempt: 0,
        specialist_id: None,
        epoch: 0,
        score: None,
        breakdown: None,
        detail: String::new(),
        assigned_at: None,
        finished_at: None,
        updated_at: event.at,
        last_event_id: String::new(),
        last: NO_POSITION,
    });
    apply_subtask(&mut row, event);
    row.expect("a row")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    fn specialist(
        position: Position,
        change: SpecialistChange<'static>,
    ) -> SpecialistEvent<'static> {
        let event_id = Box::leak(format!("backend/{}-{}", position.0, position.1).into_boxed_str());
        SpecialistEvent {
            event_id,
            stream_type: "backend",
            position,
            at: at(position.0 as u64),
            change,
        }
    }

    fn registered(capabilities: &str) -> SpecialistChange<'static> {
        SpecialistChange::Registered {
            specialist_type: "backend",
            capabilities: capabilities.to_string(),
            max_concurrency: 4,
            labels: "{}".to_string(),
            availability: "online",
            incarnation: Some("ab12"),
        }
    }

    fn changed(
        position: Position,
        state: &'static str,
        holder: Option<&'static str>,
        epoch: i64,
        score: Option<f64>,
    ) -> SubtaskEvent<'static> {
        let event_id = Box::leak(format!("backend/{}-{}", position.0, position.1).into_boxed_str());
        SubtaskEvent {
            event_id,
            position,
            at: at(position.0 as u64),
            created: None,
            routed_type: "backend",
            state,
            attempt: 1,
            specialist_id: holder,
            epoch,
            score,
            breakdown: score.map(|score| format!("{{\"score\": {score}}}")),
            detail: "",
            assigned_at: (state == "ASSIGNED").then(|| at(position.0 as u64)),
            finished_at: (state == "COMPLETED").then(|| at(position.0 as u64)),
        }
    }

    #[test]
    fn several_specialist_events_collapse_to_the_latest() {
        let events = [
            specialist((1, 0), registered("[\"a\"]")),
            specialist((2, 0), SpecialistChange::Availability("busy")),
            specialist((3, 0), SpecialistChange::Deregistered),
            specialist((4, 0), registered("[\"b\"]")),
        ];
        let mut row = None;
        for event in &events {
            assert_eq!(apply_specialist(&mut row, event), EventOutcome::Applied);
        }
        let row = row.unwrap();
        assert_eq!(row.capabilities.as_deref(), Some("[\"b\"]"));
        assert_eq!(row.availability, "online");
        assert_eq!(
            row.deregistered_at, None,
            "the later registration clears it"
        );
        assert_eq!(row.last, (4, 0));
        assert_eq!(row.registration, Some((4, 0)));
    }

    #[test]
    fn a_repeated_or_older_specialist_event_is_superseded() {
        let mut row = None;
        let heartbeat = specialist((5, 0), SpecialistChange::Availability("busy"));
        assert_eq!(
            apply_specialist(&mut row, &heartbeat),
            EventOutcome::Applied
        );
        assert_eq!(
            apply_specialist(&mut row, &heartbeat),
            EventOutcome::Superseded
        );
        let older = specialist((4, 0), SpecialistChange::Availability("idle"));
        assert_eq!(apply_specialist(&mut row, &older), EventOutcome::Superseded);
        // An older registration still fills in the placeholder's registration part.
        let registration = specialist((3, 0), registered("[\"a\"]"));
        assert_eq!(
            apply_specialist(&mut row, &registration),
            EventOutcome::Applied
        );
        let row = row.unwrap();
        assert_eq!(row.availability, "busy");
        assert_eq!(row.last, (5, 0));
        assert_eq!(row.registration, Some((3, 0)));
    }

    #[test]
    fn assign_then_complete_keeps_the_holders_score() {
        let mut row = None;
        apply_subtask(
            &mut row,
            &changed((1, 0), "ASSIGNED", Some("sp"), 7, Some(7.0)),
        );
        apply_subtask(&mut row, &changed((2, 0), "COMPLETED", Some("sp"), 7, None));
        let row = row.unwrap();
        assert_eq!(row.state, "COMPLETED");
        assert_eq!(row.score, Some(7.0));
        assert_eq!(row.assigned_at, Some(at(1)));
        assert_eq!(row.finished_at, Some(at(2)));
        assert_eq!(row.last, (2, 0));
    }

    #[test]
    fn a_late_assignment_fills_in_the_holder_only() {
        let mut row = None;
        apply_subtask(&mut row, &changed((2, 0), "COMPLETED", Some("sp"), 7, None));
        apply_subtask(
            &mut row,
            &changed((1, 0), "ASSIGNED", Some("sp"), 7, Some(7.0)),
        );
        let other = changed((1, 5), "ASSIGNED", Some("other"), 6, Some(6.0));
        apply_subtask(&mut row, &other);
        let row = row.unwrap();
        assert_eq!(row.state, "COMPLETED", "never moves backwards");
        assert_eq!(row.score, Some(7.0));
        assert_eq!(row.assigned_at, Some(at(1)));
        assert_eq!(row.last, (2, 0));
    }

    #[test]
    fn a_new_holder_drops_the_old_score() {
        let mut row = None;
        apply_subtask(
            &mut row,
            &changed((1, 0), "ASSIGNED", Some("a"), 1, Some(1.0)),
        );
        apply_subtask(&mut row, &changed((2, 0), "QUEUED", None, 1, None));
        let row = row.unwrap();
        assert_eq!(row.score, None);
        assert_eq!(row.assigned_at, None);
    }
}
