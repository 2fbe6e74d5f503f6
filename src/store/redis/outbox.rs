//! Outbox entries (what the functions append to a type's `outbox` stream, as flat fields) as
//! domain history events. `k` names the kind:
//! - `c` a subtask created, with the state the step left it in: id, v (its packed assignment
//!   state, lua/includes/subtasks.lua) and spec (the subtask as submitted);
//! - `s` a subtask changed: id, v;
//! - `f` a subtask finished by a completion report: id, v, and the report's ok, ms and q (its
//!   specialist and epoch are the holder's); two history events share its id;
//! - `R` a registration: sp, caps, max, lab, av; `A` an availability: sp, av; `D` a
//!   deregistration: sp.

use std::collections::HashMap;

use redis::Value;

use crate::domain::history::{Change, HistoryEvent};
use crate::domain::policy::ScoringWeights;
use crate::domain::scoring::ScoreBreakdown;
use crate::domain::subtask::Subtask;
use crate::store::{StoreError, StoreResult};

use super::codec::decode_spec;
use super::replies::{
    availability, breakdown, bytes, int, list, state as state_of, text, PackedState,
};

/// An entry's fields by name.
pub struct Fields<'a> {
    map: &'a HashMap<String, Value>,
    stream_id: &'a str,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a HashMap<String, Value>, stream_id: &'a str) -> Self {
        Self { map, stream_id }
    }

    fn value(&self, name: &str) -> StoreResult<&'a Value> {
        self.map.get(name).ok_or_else(|| {
            StoreError::Internal(format!("outbox entry {}: no field {name}", self.stream_id))
        })
    }

    fn text(&self, name: &str) -> StoreResult<String> {
        text(self.value(name)?)
    }

    fn int(&self, name: &str) -> StoreResult<i64> {
        int(self.value(name)?)
    }

    /// A field entries written before it existed lack (None then).
    fn optional_text(&self, name: &str) -> StoreResult<Option<String>> {
        self.map.get(name).map(text).transpose()
    }

    /// The packed assignment state `v`.
    fn state(&self) -> StoreResult<String> {
        self.text("v")
    }
}

/// Holder, epoch and breakdown of a packed state: the holder when one is named, its breakdown
/// when it has one.
fn holder(
    state: &PackedState<'_>,
    weights: &ScoringWeights,
) -> StoreResult<(Option<String>, u64, Option<ScoreBreakdown>)> {
    let epoch = state.number(state.epoch)? as u64;
    if state.holder.is_empty() {
        return Ok((None, epoch, None));
    }
    let scored = if state.breakdown.is_empty() {
        None
    } else {
        Some(breakdown(state.breakdown, weights)?)
    };
    Ok((Some(state.holder.to_string()), epoch, scored))
}

/// A subtask change (`s`, and the change part of `f`).
fn changed(fields: &Fields<'_>, weights: &ScoringWeights) -> StoreResult<Change> {
    let packed = fields.state()?;
    let state = PackedState::parse(&packed)?;
    let (specialist_id, epoch, breakdown) = holder(&state, weights)?;
    Ok(Change::SubtaskChanged {
        subtask_id: fields.text("id")?,
        state: state_of(state.state)?,
        attempt: state.number(state.attempt)? as u32,
        specialist_id,
        epoch,
        breakdown,
        detail: state.detail.to_string(),
    })
}

/// Decodes one stream entry of the type `label`'s stream into its history events (one, or two for
/// `f`), each with the id `<label>/<stream id>` (see postgres/event_id.rs; a subtask change and a
/// report go to different tables, so they may share it). `weights`: the policy's (the deployment's
/// replicas share one; see policy.rs), for breakdowns.
pub fn decode(
    label: &str,
    stream_id: &str,
    fields: &Fields<'_>,
    weights: &ScoringWeights,
) -> StoreResult<Vec<HistoryEvent>> {
    let at_ms = stream_id
        .split_once('-')
        .and_then(|(millis, _)| millis.parse().ok())
        .ok_or_else(|| StoreError::Internal(format!("outbox id {stream_id:?}")))?;
    let event = |change| HistoryEvent {
        event_id: format!("{label}/{stream_id}"),
        at_ms,
        change,
    };
    let change = match fields.text("k")?.as_str() {
        "f" => {
            let packed = fields.state()?;
            let state = PackedState::parse(&packed)?;
            let report = Change::CompletionReported {
                subtask_id: fields.text("id")?,
                specialist_id: state.holder.to_string(),
                epoch: state.number(state.epoch)? as u64,
                success: fields.text("ok")? == "1",
                completion_time_ms: fields.int("ms")? as u64,
                quality_score: fields
                    .text("q")?
                    .parse()
                    .map_err(|_| StoreError::Internal(format!("outbox entry {stream_id}: q")))?,
            };
            return Ok(vec![event(changed(fields, weights)?), event(report)]);
        }
        "c" => {
            let packed = fields.state()?;
            let state = PackedState::parse(&packed)?;
            let (specialist_id, epoch, breakdown) = holder(&state, weights)?;
            Change::SubtaskCreated {
                subtask: Subtask {
                    spec: decode_spec(bytes(fields.value("spec")?)?)?,
                    created_at_ms: state.number(state.created)?,
                },
                routed_type: label.to_string(),
                state: state_of(state.state)?,
                attempt: state.number(state.attempt)? as u32,
                specialist_id,
                epoch,
                breakdown,
                detail: state.detail.to_string(),
            }
        }
        "s" => changed(fields, weights)?,
        "R" => {
            let labels_text = fields.text("lab")?;
            Change::SpecialistRegistered {
                specialist_id: fields.text("sp")?,
                specialist_type: label.to_string(),
                capabilities: list(fields.value("caps")?)?,
                max_concurrency: fields.int("max")? as u32,
                labels: if labels_text.is_empty() {
                    Default::default()
                } else {
                    serde_json::from_str(&labels_text)
                        .map_err(|error| StoreError::Internal(format!("outbox labels: {error}")))?
                },
                availability: availability(&fields.text("av")?)?,
                incarnation: fields.optional_text("inc")?,
            }
        }
        "A" => Change::SpecialistAvailability {
            specialist_id: fields.text("sp")?,
            availability: availability(&fields.text("av")?)?,
        },
        "D" => Change::SpecialistDeregistered {
            specialist_id: fields.text("sp")?,
        },
        other => {
            return Err(StoreError::Internal(format!(
                "outbox entry {stream_id}: unknown kind {other:?}"
            )))
        }
    };
    Ok(vec![event(change)])
}
