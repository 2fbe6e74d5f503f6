//! What the Lua functions reply, as domain values. Replies are RESP arrays of flat fields (see
//! each function's header in `lua/functions/`); numbers may come as integers or as text. A score
//! breakdown comes as the hand-out's inputs and is computed here with `domain::scoring`, bit for
//! bit the score the pick used.

use std::collections::BTreeMap;

use redis::Value;

use crate::domain::learned::CandidateInfo;
use crate::domain::performance::window_performance;
use crate::domain::policy::ScoringWeights;
use crate::domain::scoring::{capability_share, score_of_factors, ScoreBreakdown};
use crate::domain::specialist::{Availability, Specialist};
use crate::domain::subtask::{AssignmentView, Holder, SubtaskState};
use crate::store::{StoreError, StoreResult};

pub fn malformed(what: &str) -> StoreError {
    StoreError::Internal(format!("redis reply: {what}"))
}

/// The items of an array reply.
pub fn items(value: &Value) -> StoreResult<&[Value]> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(&[]),
        _ => Err(malformed("expected an array")),
    }
}

pub fn bytes(value: &Value) -> StoreResult<&[u8]> {
    match value {
        Value::BulkString(bytes) => Ok(bytes),
        Value::Nil => Ok(&[]),
        Value::SimpleString(text) => Ok(text.as_bytes()),
        _ => Err(malformed("expected text")),
    }
}

pub fn text(value: &Value) -> StoreResult<String> {
    match value {
        Value::Int(number) => Ok(number.to_string()),
        other => String::from_utf8(bytes(other)?.to_vec()).map_err(|_| malformed("not utf-8")),
    }
}

pub fn int(value: &Value) -> StoreResult<i64> {
    match value {
        Value::Int(number) => Ok(*number),
        other => {
            let raw = bytes(other)?;
            std::str::from_utf8(raw)
                .ok()
                .and_then(|raw| raw.parse().ok())
                .ok_or_else(|| malformed("expected a number"))
        }
    }
}

pub fn float(value: &Value) -> StoreResult<f64> {
    let raw = text(value)?;
    raw.parse().map_err(|_| malformed("expected a float"))
}

/// An optional number: '' (or nil) is None.
pub fn optional_int(value: &Value) -> StoreResult<Option<i64>> {
    if bytes_is_empty(value) {
        return Ok(None);
    }
    int(value).map(Some)
}

fn bytes_is_empty(value: &Value) -> bool {
    match value {
        Value::Nil => true,
        Value::BulkString(bytes) => bytes.is_empty(),
        Value::SimpleString(text) => text.is_empty(),
        _ => false,
    }
}

/// A space-joined list.
pub fn list(value: &Value) -> StoreResult<Vec<String>> {
    Ok(text(value)?.split_whitespace().map(String::from).collect())
}

pub fn availability(text: &str) -> StoreResult<Availability> {
    Availability::parse(text).ok_or_else(|| malformed("unknown availability"))
}

pub fn state(text: &str) -> StoreResult<SubtaskState> {
    use SubtaskState::*;
    [Assigned, Queued, Blocked, Completed, Failed, Cancelled]
        .into_iter()
        .find(|state| state.as_str() == text)
        .ok_or_else(|| malformed("unknown subtask state"))
}

/// The breakdown of a hand-out from its recorded inputs: "<matched> <required> <active>
/// <availability> <performance>" (performance "<successes>/<outcomes>" of the rule window, or a
/// learned factor), plus the four weights when the subtask scored with learned ones.
pub fn breakdown(inputs: &str, policy: &ScoringWeights) -> StoreResult<ScoreBreakdown> {
    let parts: Vec<&str> = inputs.split(' ').collect();
    if parts.len() != 5 && parts.len() != 9 {
        return Err(malformed("breakdown inputs"));
    }
    let number =
        |text: &str| -> StoreResult<u32> { text.parse().map_err(|_| malformed("breakdown count")) };
    let real = |text: &str| -> StoreResult<f64> {
        text.parse().map_err(|_| malformed("breakdown factor"))
    };
    let matched = number(parts[0])? as usize;
    let required = number(parts[1])? as usize;
    let active = number(parts[2])?;
    let availability = availability(parts[3])?;
    let performance = match parts[4].split_once('/') {
        Some((successes, outcomes)) => window_performance(number(successes)?, number(outcomes)?),
        None => real(parts[4])?,
    };
    let weights = if parts.len() == 9 {
        ScoringWeights {
            capability: real(parts[5])?,
            load: real(parts[6])?,
            availability: real(parts[7])?,
            performance: real(parts[8])?,
        }
    } else {
        *policy
    };
    Ok(score_of_factors(
        &weights,
        capability_share(matched, required),
        active,
        availability,
        performance,
    ))
}

/// A view: {id, routed type, v, queue position} (lua/includes/subtasks.lua).
pub fn view(value: &Value, weights: &ScoringWeights) -> StoreResult<AssignmentView> {
    let fields = items(value)?;
    if fields.len() != 4 {
        return Err(malformed("view"));
    }
    view_of_state(
        text(&fields[0])?,
        text(&fields[1])?,
        &text(&fields[2])?,
        optional_int(&fields[3])?,
        weights,
    )
}

/// A view from its id, routed type, packed state `v` and queue position.
pub fn view_of_state(
    id: String,
    routed_type: String,
    v: &str,
    position: Option<i64>,
    weights: &ScoringWeights,
) -> StoreResult<AssignmentView> {
    let state = PackedState::parse(v)?;
    view_of_fields(
        ViewFields {
            id,
            routed_type,
            state: state.state.to_string(),
            attempt: state.number(state.attempt)?,
            holder: state.holder.to_string(),
            epoch: state.number(state.epoch)?,
            assigned_at: state.optional(state.assigned_at)?,
            breakdown: state.breakdown.to_string(),
            position,
            waiting: state.waiting.split_whitespace().map(String::from).collect(),
            detail: state.detail.to_string(),
            created: state.number(state.created)?,
            finished: state.optional(state.finished)?,
        },
        weights,
    )
}

/// A subtask's packed assignment state `v` (lua/includes/subtasks.lua), split; the fields a view
/// does not show are skipped.
pub struct PackedState<'a> {
    pub state: &'a str,
    pub attempt: &'a str,
    pub holder: &'a str,
    pub epoch: &'a str,
    pub assigned_at: &'a str,
    pub breakdown: &'a str,
    pub waiting: &'a str,
    pub created: &'a str,
    pub finished: &'a str,
    pub detail: &'a str,
}

impl<'a> PackedState<'a> {
    pub fn parse(v: &'a str) -> StoreResult<Self> {
        let parts: Vec<&str> = v.splitn(15, '\t').collect();
        if parts.len() != 15 {
            return Err(malformed("packed subtask state"));
        }
        Ok(Self {
            state: parts[0],
            attempt: parts[1],
            holder: parts[2],
            epoch: parts[3],
            assigned_at: parts[4],
            breakdown: parts[5],
            waiting: parts[8],
            created: parts[11],
            finished: parts[12],
            detail: parts[14],
        })
    }

    pub fn number(&self, text: &str) -> StoreResult<i64> {
        text.parse().map_err(|_| malformed("packed subtask number"))
    }

    pub fn optional(&self, text: &str) -> StoreResult<Option<i64>> {
        if text.is_empty() {
            return Ok(None);
        }
        self.number(text).map(Some)
    }
}

/// A view's fields, however they travelled (a reply, a watch message).
pub struct ViewFields {
    pub id: String,
    pub routed_type: String,
    pub state: String,
    pub attempt: i64,
    pub holder: String,
    pub epoch: i64,
    pub assigned_at: Option<i64>,
    pub breakdown: String,
    pub position: Option<i64>,
    pub waiting: Vec<String>,
    pub detail: String,
    pub created: i64,
    pub finished: Option<i64>,
}

pub fn view_of_fields(fields: ViewFields, weights: &ScoringWeights) -> StoreResult<AssignmentView> {
    let holder = if fields.holder.is_empty() {
        None
    } else {
        Some(Holder {
            specialist_id: fields.holder,
            epoch: fields.epoch as u64,
            assigned_at_ms: fields.assigned_at.unwrap_or_default(),
            breakdown: breakdown(&fields.breakdown, weights)?,
        })
    };
    let state = state(&fields.state)?;
    Ok(AssignmentView {
        subtask_id: fields.id,
        state,
        holder,
        queue_position: fields
            .position
            .filter(|_| state == SubtaskState::Queued)
            .map(|position| position as u64),
        attempt: fields.attempt as u32,
        routed_type: fields.routed_type,
        waiting_on: fields.waiting,
        detail: fields.detail,
        created_at_ms: fields.created,
        finished_at_ms: fields.finished,
    })
}

/// A specialist: {id, type, capabilities, r, d} (lua/includes/specialists.lua: r is max,
/// availability, lease, active, last epoch, free member, window successes and outcomes, held
/// subtasks; d is registered, heartbeat and labels, tab-joined).
pub fn specialist(value: &Value) -> StoreResult<Specialist> {
    let fields = items(value)?;
    if fields.len() != 5 {
        return Err(malformed("specialist"));
    }
    let routing = text(&fields[3])?;
    let r: Vec<&str> = routing.splitn(9, '\t').collect();
    let display = text(&fields[4])?;
    let d: Vec<&str> = display.splitn(3, '\t').collect();
    if r.len() != 9 || d.len() != 3 {
        return Err(malformed("specialist parts"));
    }
    let number = |text: &str| -> StoreResult<i64> {
        text.parse().map_err(|_| malformed("specialist number"))
    };
    let labels: BTreeMap<String, String> = if d[2].is_empty() {
        BTreeMap::new()
    } else {
        serde_json::from_str(d[2]).map_err(|_| malformed("labels"))?
    };
    Ok(Specialist {
        specialist_id: text(&fields[0])?,
        specialist_type: text(&fields[1])?,
        capabilities: list(&fields[2])?,
        max_concurrency: number(r[0])? as u32,
        labels,
        availability: availability(r[1])?,
        active_assignments: number(r[3])? as u32,
        registered_at_ms: number(d[0])?,
        last_heartbeat_at_ms: number(d[1])?,
        lease_expires_at_ms: number(r[2])?,
        performance: window_performance(number(r[6])? as u32, number(r[7])? as u32),
    })
}

/// Labels as the record keeps them (opaque to Lua).
pub fn labels_text(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return String::new();
    }
    serde_json::to_string(labels).unwrap_or_default()
}

/// A candidate: {id, capabilities, active, max, availability, window successes, window outcomes}.
pub fn candidate(value: &Value, specialist_type: &str) -> StoreResult<CandidateInfo> {
    let fields = items(value)?;
    if fields.len() != 7 {
        return Err(malformed("candidate"));
    }
    let successes = int(&fields[5])? as u32;
    let outcomes = int(&fields[6])? as u32;
    Ok(CandidateInfo {
        specialist_id: text(&fields[0])?,
        specialist_type: specialist_type.to_string(),
        capabilities: list(&fields[1])?,
        active: int(&fields[2])? as u32,
        max_concurrency: int(&fields[3])? as u32,
        availability: availability(&text(&fields[4])?)?,
        recent_successes: successes,
        recent_outcomes: outcomes,
        rule_performance: window_performance(successes, outcomes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::scoring::{score, CandidateFacts};

    #[test]
    fn a_breakdown_from_inputs_equals_the_score() {
        let weights = ScoringWeights::default();
        let caps = vec!["a".to_string(), "b".to_string()];
        let required = vec!["a".to_string(), "c".to_string()];
        let expected = score(
            &weights,
            &required,
            CandidateFacts {
                capabilities: &caps,
                active: 3,
                availability: Availability::Busy,
                performance: window_performance(7, 9),
            },
        );
        assert_eq!(breakdown("1 2 3 busy 7/9", &weights).unwrap(), expected);
        let learned = breakdown("2 2 0 online 0.3 0.1 0.2 0.3 0.4", &weights).unwrap();
        assert_eq!(learned.performance.weight, 0.4);
        assert_eq!(learned.performance.value, 0.3);
        assert!(breakdown("1 2", &weights).is_err());
    }
}
