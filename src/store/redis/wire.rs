//! What crosses the script boundary: the JSON the Rust side passes in ARGV and the JSON the
//! scripts return, with their domain forms. Floats the scripts computed travel as `%.17g` text so
//! they arrive bit for bit; Lua's JSON encoder writes an empty list as `{}`, so lists are lenient.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use crate::domain::learned::{CandidateInfo, LearnedFactors};
use crate::domain::policy::{RoutingPolicy, ScoringWeights};
use crate::domain::scoring::{Factor, ScoreBreakdown};
use crate::domain::specialist::{Availability, Specialist};
use crate::domain::subtask::{
    AssignmentView, Holder, Subtask, SubtaskSpec, SubtaskState, WatchEvent, WatchEventKind,
};
use crate::store::{StoreError, StoreResult};

/// A list that Lua's cjson may have written as `{}` when empty.
pub fn lenient_list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrEmpty<T> {
        List(Vec<T>),
        Empty(BTreeMap<String, serde_json::Value>),
    }
    match ListOrEmpty::<T>::deserialize(deserializer)? {
        ListOrEmpty::List(items) => Ok(items),
        ListOrEmpty::Empty(map) if map.is_empty() => Ok(Vec::new()),
        ListOrEmpty::Empty(_) => Err(de::Error::custom("expected a list")),
    }
}

pub fn float(text: &str) -> StoreResult<f64> {
    text.parse()
        .map_err(|_| StoreError::Internal(format!("script returned a bad number {text:?}")))
}

/// The routing policy as every script reads it (ARGV[1]).
#[derive(Serialize)]
pub struct PolicyWire<'a> {
    pub fallback: Option<&'a str>,
    pub weights: WeightsWire,
    pub default_max_concurrency: u32,
    pub lease_ttl_ms: i64,
    pub max_attempts: u32,
    pub outbox: bool,
    pub outbox_bound: u64,
    /// The watch channel scripts publish to.
    pub channel: &'a str,
}

#[derive(Serialize)]
pub struct WeightsWire {
    pub capability: f64,
    pub load: f64,
    pub availability: f64,
    pub performance: f64,
}

pub fn policy_json(
    policy: &RoutingPolicy,
    outbox: bool,
    outbox_bound: u64,
    channel: &str,
) -> String {
    let wire = PolicyWire {
        fallback: policy.fallback_type.as_deref(),
        weights: WeightsWire {
            capability: policy.weights.capability,
            load: policy.weights.load,
            availability: policy.weights.availability,
            performance: policy.weights.performance,
        },
        default_max_concurrency: policy.default_max_concurrency,
        lease_ttl_ms: policy.lease_ttl_ms,
        max_attempts: policy.max_attempts,
        outbox,
        outbox_bound,
        channel,
    };
    serde_json::to_string(&wire).expect("policy serializes")
}

/// A subtask spec in its canonical stored form; equal specs give equal text (idempotent Assign).
#[derive(Serialize, Deserialize)]
pub struct SpecWire {
    pub subtask_id: String,
    pub specialist_type: String,
    pub required_capabilities: Vec<String>,
    pub priority: i32,
    pub parent_id: Option<String>,
    pub depends_on: Vec<String>,
    pub payload: String,
    pub require_all_capabilities: bool,
}

pub fn spec_json(spec: &SubtaskSpec) -> String {
    let wire = SpecWire {
        subtask_id: spec.subtask_id.clone(),
        specialist_type: spec.specialist_type.clone(),
        required_capabilities: spec.required_capabilities.clone(),
        priority: spec.priority,
        parent_id: spec.parent_id.clone(),
        depends_on: spec.depends_on.clone(),
        payload: BASE64.encode(&spec.payload),
        require_all_capabilities: spec.require_all_capabilities,
    };
    serde_json::to_string(&wire).expect("spec serializes")
}

pub fn spec_from_json(text: &str) -> StoreResult<SubtaskSpec> {
    let wire: SpecWire = serde_json::from_str(text)
        .map_err(|error| StoreError::Internal(format!("stored subtask spec: {error}")))?;
    let payload = BASE64
        .decode(wire.payload)
        .map_err(|error| StoreError::Internal(format!("stored subtask payload: {error}")))?;
    Ok(SubtaskSpec {
        subtask_id: wire.subtask_id,
        specialist_type: wire.specialist_type,
        required_capabilities: wire.required_capabilities,
        priority: wire.priority,
        parent_id: wire.parent_id,
        depends_on: wire.depends_on,
        payload,
        require_all_capabilities: wire.require_all_capabilities,
    })
}

pub fn availability_str(availability: Availability) -> &'static str {
    availability.as_str()
}

pub fn availability_from(text: &str) -> StoreResult<Availability> {
    Availability::ALL
        .into_iter()
        .find(|availability| availability.as_str() == text)
        .ok_or_else(|| StoreError::Internal(format!("stored availability {text:?}")))
}

pub fn state_from(text: &str) -> StoreResult<SubtaskState> {
    use SubtaskState::*;
    [Assigned, Queued, Blocked, Completed, Failed, Cancelled]
        .into_iter()
        .find(|state| state.as_str() == text)
        .ok_or_else(|| StoreError::Internal(format!("stored subtask state {text:?}")))
}

#[derive(Deserialize)]
pub struct SpecialistWire {
    pub specialist_id: String,
    pub specialist_type: String,
    #[serde(deserialize_with = "lenient_list")]
    pub capabilities: Vec<String>,
    pub max_concurrency: u32,
    pub labels: String,
    pub availability: String,
    pub active_assignments: u32,
    pub registered_at_ms: i64,
    pub last_heartbeat_at_ms: i64,
    pub lease_expires_at_ms: i64,
    pub performance: String,
}

impl SpecialistWire {
    pub fn into_domain(self) -> StoreResult<Specialist> {
        let labels: BTreeMap<String, String> = if self.labels.is_empty() {
            BTreeMap::new()
        } else {
            serde_json::from_str(&self.labels)
                .map_err(|error| StoreError::Internal(format!("stored labels: {error}")))?
        };
        Ok(Specialist {
            specialist_id: self.specialist_id,
            specialist_type: self.specialist_type,
            capabilities: self.capabilities,
            max_concurrency: self.max_concurrency,
            labels,
            availability: availability_from(&self.availability)?,
            active_assignments: self.active_assignments,
            registered_at_ms: self.registered_at_ms,
            last_heartbeat_at_ms: self.last_heartbeat_at_ms,
            lease_expires_at_ms: self.lease_expires_at_ms,
            performance: float(&self.performance)?,
        })
    }
}

#[derive(Deserialize)]
pub struct FactorWire {
    pub value: String,
    pub weight: String,
    pub points: String,
}

impl FactorWire {
    fn into_domain(self) -> StoreResult<Factor> {
        Ok(Factor {
            value: float(&self.value)?,
            weight: float(&self.weight)?,
            points: float(&self.points)?,
        })
    }
}

#[derive(Deserialize)]
pub struct BreakdownWire {
    pub score: String,
    pub capability: FactorWire,
    pub load: FactorWire,
    pub availability: FactorWire,
    pub performance: FactorWire,
}

impl BreakdownWire {
    pub fn into_domain(self) -> StoreResult<ScoreBreakdown> {
        Ok(ScoreBreakdown {
            score: float(&self.score)?,
            capability: self.capability.into_domain()?,
            load: self.load.into_domain()?,
            availability: self.availability.into_domain()?,
            performance: self.performance.into_domain()?,
        })
    }
}

#[derive(Deserialize)]
pub struct HolderWire {
    pub specialist_id: String,
    pub epoch: u64,
    pub assigned_at_ms: i64,
    pub breakdown: BreakdownWire,
}

#[derive(Deserialize)]
pub struct ViewWire {
    pub subtask_id: String,
    pub state: String,
    pub attempt: u32,
    pub routed_type: String,
    #[serde(deserialize_with = "lenient_list")]
    pub waiting_on: Vec<String>,
    pub detail: String,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub holder: Option<HolderWire>,
    pub queue_position: Option<u64>,
}

impl ViewWire {
    pub fn into_domain(self) -> StoreResult<AssignmentView> {
        let holder = match self.holder {
            None => None,
            Some(holder) => Some(Holder {
                specialist_id: holder.specialist_id,
                epoch: holder.epoch,
                assigned_at_ms: holder.assigned_at_ms,
                breakdown: holder.breakdown.into_domain()?,
            }),
        };
        Ok(AssignmentView {
            subtask_id: self.subtask_id,
            state: state_from(&self.state)?,
            holder,
            queue_position: self.queue_position,
            attempt: self.attempt,
            routed_type: self.routed_type,
            waiting_on: self.waiting_on,
            detail: self.detail,
            created_at_ms: self.created_at_ms,
            finished_at_ms: self.finished_at_ms,
        })
    }
}

/// A subtask view with its spec: in-flight replays, watch events, GetAssignment.
#[derive(Deserialize)]
pub struct EventWire {
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub kind: String,
    pub assignment: Option<ViewWire>,
    pub spec: Option<String>,
    pub created_at_ms: Option<i64>,
}

impl EventWire {
    pub fn into_domain(self, kind: WatchEventKind) -> StoreResult<WatchEvent> {
        let (Some(assignment), Some(spec), Some(created_at_ms)) =
            (self.assignment, self.spec, self.created_at_ms)
        else {
            return Err(StoreError::Internal("watch event without a subtask".into()));
        };
        Ok(WatchEvent {
            kind,
            assignment: assignment.into_domain()?,
            subtask: Subtask {
                spec: spec_from_json(&spec)?,
                created_at_ms,
            },
        })
    }
}

/// Learned factors as a subtask keeps them in Redis: the weights to score with (already scaled, so
/// both stores use the very same numbers) and the per-specialist performance factors.
pub fn learned_json(factors: &LearnedFactors, base: &ScoringWeights) -> String {
    let weights = factors.weights(base);
    serde_json::json!({
        "weights": {
            "capability": weights.capability,
            "load": weights.load,
            "availability": weights.availability,
            "performance": weights.performance,
        },
        "performance": factors.performance,
    })
    .to_string()
}

#[derive(Deserialize)]
pub struct CandidateWire {
    pub specialist_id: String,
    pub specialist_type: String,
    #[serde(deserialize_with = "lenient_list")]
    pub capabilities: Vec<String>,
    pub active: u32,
    pub max_concurrency: u32,
    pub availability: String,
    pub recent_successes: u32,
    pub recent_outcomes: u32,
    pub rule_performance: String,
}

impl CandidateWire {
    pub fn into_domain(self) -> StoreResult<CandidateInfo> {
        Ok(CandidateInfo {
            specialist_id: self.specialist_id,
            specialist_type: self.specialist_type,
            capabilities: self.capabilities,
            active: self.active,
            max_concurrency: self.max_concurrency,
            availability: availability_from(&self.availability)?,
            recent_successes: self.recent_successes,
            recent_outcomes: self.recent_outcomes,
            rule_performance: float(&self.rule_performance)?,
        })
    }
}
