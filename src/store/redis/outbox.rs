//! Outbox entries (what the scripts append to the `outbox` stream) as domain history events.

use serde::Deserialize;

use crate::domain::history::{Change, HistoryEvent};
use crate::domain::subtask::Subtask;
use crate::store::{StoreError, StoreResult};

use super::wire::{
    availability_from, float, lenient_list, spec_from_json, state_from, BreakdownWire,
};

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum OutboxWire {
    SpecialistRegistered {
        specialist_id: String,
        specialist_type: String,
        #[serde(deserialize_with = "lenient_list")]
        capabilities: Vec<String>,
        max_concurrency: u32,
        labels: String,
        availability: String,
    },
    SpecialistAvailability {
        specialist_id: String,
        availability: String,
    },
    SpecialistDeregistered {
        specialist_id: String,
    },
    SubtaskCreated {
        spec: String,
        created_at_ms: i64,
        routed_type: String,
        state: String,
    },
    SubtaskChanged {
        subtask_id: String,
        state: String,
        attempt: u32,
        epoch: u64,
        detail: String,
        specialist_id: Option<String>,
        breakdown: Option<Box<BreakdownWire>>,
    },
    CompletionReported {
        subtask_id: String,
        specialist_id: String,
        epoch: u64,
        success: bool,
        completion_time_ms: u64,
        quality_score: String,
    },
}

/// Decodes one stream entry (`stream_id`, its `e` field) of the type `label`'s stream into a
/// history event with the id `<label>/<stream id>` (see postgres/event_id.rs).
pub fn decode(label: &str, stream_id: &str, body: &str) -> StoreResult<HistoryEvent> {
    let at_ms = stream_id
        .split_once('-')
        .and_then(|(millis, _)| millis.parse().ok())
        .ok_or_else(|| StoreError::Internal(format!("outbox id {stream_id:?}")))?;
    let wire: OutboxWire = serde_json::from_str(body)
        .map_err(|error| StoreError::Internal(format!("outbox entry {stream_id}: {error}")))?;
    let change = match wire {
        OutboxWire::SpecialistRegistered {
            specialist_id,
            specialist_type,
            capabilities,
            max_concurrency,
            labels,
            availability,
        } => Change::SpecialistRegistered {
            specialist_id,
            specialist_type,
            capabilities,
            max_concurrency,
            labels: serde_json::from_str(&labels)
                .map_err(|error| StoreError::Internal(format!("outbox labels: {error}")))?,
            availability: availability_from(&availability)?,
        },
        OutboxWire::SpecialistAvailability {
            specialist_id,
            availability,
        } => Change::SpecialistAvailability {
            specialist_id,
            availability: availability_from(&availability)?,
        },
        OutboxWire::SpecialistDeregistered { specialist_id } => {
            Change::SpecialistDeregistered { specialist_id }
        }
        OutboxWire::SubtaskCreated {
            spec,
            created_at_ms,
            routed_type,
            state,
        } => Change::SubtaskCreated {
            subtask: Subtask {
                spec: spec_from_json(&spec)?,
                created_at_ms,
            },
            routed_type,
            state: state_from(&state)?,
        },
        OutboxWire::SubtaskChanged {
            subtask_id,
            state,
            attempt,
            epoch,
            detail,
            specialist_id,
            breakdown,
        } => Change::SubtaskChanged {
            subtask_id,
            state: state_from(&state)?,
            attempt,
            specialist_id,
            epoch,
            breakdown: breakdown.map(|wire| wire.into_domain()).transpose()?,
            detail,
        },
        OutboxWire::CompletionReported {
            subtask_id,
            specialist_id,
            epoch,
            success,
            completion_time_ms,
            quality_score,
        } => Change::CompletionReported {
            subtask_id,
            specialist_id,
            epoch,
            success,
            completion_time_ms,
            quality_score: float(&quality_score)?,
        },
    };
    Ok(HistoryEvent {
        event_id: format!("{label}/{stream_id}"),
        at_ms,
        change,
    })
}
