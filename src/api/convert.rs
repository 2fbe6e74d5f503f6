//! Proto <-> domain conversion with validation: every rule on caller input lives here.

use std::collections::BTreeMap;

use prost_types::Timestamp;

use crate::domain::error::StoreError;
use crate::domain::limits::*;
use crate::domain::performance::{PERFORMANCE_PRIOR, PERFORMANCE_WINDOW};
use crate::domain::policy::RoutingPolicy;
use crate::domain::scoring::{Factor, ScoreBreakdown};
use crate::domain::specialist::{Availability, Incarnation, Registration, Specialist};
use crate::domain::subtask::{
    AssignmentView, CompletionReport, ReleaseRequest, Subtask, SubtaskSpec, SubtaskState,
    WatchEvent, WatchEventKind,
};
use crate::learned_scorer::features::SubtaskContext;
use crate::learned_scorer::ModelStatus;
use crate::pb;
use crate::store::PageRequest;

use super::status::ApiError;

/// Violations an answer names one by one; past them it says how many more there were, so the
/// answer (sent in headers) stays small whatever the request holds.
const MAX_VIOLATIONS: usize = 16;
/// Longest field name and description in an answer (they may quote what the caller sent).
const MAX_VIOLATION_FIELD_BYTES: usize = 96;
const MAX_VIOLATION_DESCRIPTION_BYTES: usize = 192;

/// `text` cut to at most `max` bytes at a character boundary, marked with "..." when cut.
fn shortened(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str("...");
    text
}

/// Collects the rules a request breaks, so the caller learns them at once (the first
/// `MAX_VIOLATIONS` of them, each shortened, and how many more).
#[derive(Debug, Default)]
pub struct Violations(Vec<(String, String)>, usize);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        if self.0.len() >= MAX_VIOLATIONS {
            self.1 += 1;
            return;
        }
        self.0.push((
            shortened(field.into(), MAX_VIOLATION_FIELD_BYTES),
            shortened(description.into(), MAX_VIOLATION_DESCRIPTION_BYTES),
        ));
    }

    pub fn finish(mut self) -> Result<(), ApiError> {
        if self.1 > 0 {
            self.0.push((
                "request".to_string(),
                format!("and {} more violations", self.1),
            ));
        }
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidArgument(self.0))
        }
    }

    /// Ids: non-empty, at most 128 bytes, printable without whitespace.
    pub fn id(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.add(field, "must not be empty");
        } else if value.len() > MAX_ID_BYTES {
            self.add(
                field,
                format!("must be at most {MAX_ID_BYTES} bytes, got {}", value.len()),
            );
        } else if !is_printable_token(value) {
            self.add(
                field,
                "must be printable, without whitespace or control characters",
            );
        }
    }

    /// Incarnations: as Register returns them (hex, at most 64 characters).
    pub fn incarnation(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.add(
                field,
                "must not be empty: pass the incarnation Register returned",
            );
        } else if value.len() > MAX_INCARNATION_BYTES
            || !value.bytes().all(|byte| byte.is_ascii_hexdigit())
        {
            self.add(
                field,
                format!("must be the incarnation Register returned (at most {MAX_INCARNATION_BYTES} hex digits)"),
            );
        }
    }

    fn text(&mut self, field: &str, value: &str, max_bytes: usize) {
        if value.len() > max_bytes {
            self.add(
                field,
                format!("must be at most {max_bytes} bytes, got {}", value.len()),
            );
        } else if !is_free_text(value) {
            self.add(
                field,
                "must not hold control characters (tab and line breaks aside) or bidirectional overrides",
            );
        }
    }

    /// Capability lists: at most 64 names of 1..=64 printable bytes; returned sorted and deduplicated.
    fn capabilities(&mut self, field: &str, values: &[String]) -> Vec<String> {
        if values.len() > MAX_CAPABILITIES {
            self.add(
                field,
                format!(
                    "at most {MAX_CAPABILITIES} capabilities, got {}",
                    values.len()
                ),
            );
        }
        for (index, value) in values.iter().enumerate() {
            let element = format!("{field}[{index}]");
            if value.is_empty() {
                self.add(element, "must not be empty");
            } else if value.len() > MAX_CAPABILITY_BYTES {
                self.add(
                    element,
                    format!(
                        "must be at most {MAX_CAPABILITY_BYTES} bytes, got {}",
                        value.len()
                    ),
                );
            } else if !is_printable_token(value) {
                self.add(
                    element,
                    "must be printable, without whitespace or control characters",
                );
            }
        }
        let mut normalized = values.to_vec();
        normalized.sort();
        normalized.dedup();
        normalized
    }

    fn specialist_type(&mut self, field: &str, value: &str, policy: &RoutingPolicy) {
        if value.is_empty() {
            self.add(
                field,
                format!(
                    "must not be empty; one of {}",
                    policy.specialist_types.join(", ")
                ),
            );
        } else if !policy.knows_type(value) {
            self.add(
                field,
                format!(
                    "unknown type {value:?}; one of {}",
                    policy.specialist_types.join(", ")
                ),
            );
        }
    }

    fn epoch(&mut self, field: &str, value: u64) {
        if value == 0 {
            self.add(
                field,
                "must be the epoch of the assignment (epochs start at 1)",
            );
        }
    }
}

pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn optional_timestamp(ms: i64) -> Option<Timestamp> {
    (ms > 0).then(|| timestamp(ms))
}

pub fn availability_from_proto(
    field: &str,
    raw: i32,
    violations: &mut Violations,
) -> Option<Availability> {
    match pb::Availability::try_from(raw) {
        Ok(pb::Availability::Unspecified) => None,
        Ok(pb::Availability::Online) => Some(Availability::Online),
        Ok(pb::Availability::Idle) => Some(Availability::Idle),
        Ok(pb::Availability::Busy) => Some(Availability::Busy),
        Ok(pb::Availability::Away) => Some(Availability::Away),
        Ok(pb::Availability::Offline) => Some(Availability::Offline),
        Err(_) => {
            violations.add(field, format!("unknown availability value {raw}"));
            None
        }
    }
}

pub fn availability_to_proto(availability: Availability) -> pb::Availability {
    match availability {
        Availability::Online => pb::Availability::Online,
        Availability::Idle => pb::Availability::Idle,
        Availability::Busy => pb::Availability::Busy,
        Availability::Away => pb::Availability::Away,
        Availability::Offline => pb::Availability::Offline,
    }
}

pub fn registration(
    request: pb::RegisterRequest,
    policy: &RoutingPolicy,
) -> Result<Registration, ApiError> {
    let mut violations = Violations::default();
    if !request.specialist_id.is_empty() {
        violations.id("specialist_id", &request.specialist_id);
    }
    violations.specialist_type("specialist_type", &request.specialist_type, policy);
    let capabilities = violations.capabilities("capabilities", &request.capabilities);
    if request.max_concurrency > MAX_CONCURRENCY {
        violations.add(
            "max_concurrency",
            format!("must be at most {MAX_CONCURRENCY}"),
        );
    }
    if request.labels.len() > MAX_LABELS {
        violations.add(
            "labels",
            format!("at most {MAX_LABELS} labels, got {}", request.labels.len()),
        );
    }
    for (key, value) in &request.labels {
        if key.is_empty() || key.len() > MAX_LABEL_KEY_BYTES || !is_printable_token(key) {
            violations.add(
                format!("labels[{key}]"),
                format!("label keys must be 1..={MAX_LABEL_KEY_BYTES} printable bytes without whitespace"),
            );
        }
        if value.len() > MAX_LABEL_VALUE_BYTES {
            violations.add(
                format!("labels[{key}]"),
                format!("label values must be at most {MAX_LABEL_VALUE_BYTES} bytes"),
            );
        } else if !is_free_text(value) {
            violations.add(
                format!("labels[{key}]"),
                "label values must not hold control characters (tab and line breaks aside) or bidirectional overrides",
            );
        }
    }
    let availability =
        availability_from_proto("availability", request.availability, &mut violations);
    let incarnation = if request.incarnation.is_empty() {
        Incarnation::Start {
            incarnation: Incarnation::mint()
                .map_err(|error| ApiError::Store(StoreError::Internal(error)))?,
            take_over: request.take_over,
        }
    } else {
        violations.incarnation("incarnation", &request.incarnation);
        if request.take_over {
            violations.add(
                "take_over",
                "a Register that keeps its incarnation takes nothing over; leave incarnation empty to start a new one",
            );
        }
        Incarnation::Keep(request.incarnation)
    };
    violations.finish()?;
    Ok(Registration {
        specialist_id: (!request.specialist_id.is_empty()).then_some(request.specialist_id),
        specialist_type: request.specialist_type,
        capabilities,
        max_concurrency: (request.max_concurrency > 0).then_some(request.max_concurrency),
        labels: request.labels.into_iter().collect::<BTreeMap<_, _>>(),
        availability: availability.unwrap_or(Availability::Online),
        incarnation,
    })
}

/// An optional incarnation field: None when empty.
fn optional_incarnation(violations: &mut Violations, field: &str, value: String) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    violations.incarnation(field, &value);
    Some(value)
}

/// Checks one required id field.
pub fn id(field: &str, value: &str) -> Result<(), ApiError> {
    let mut violations = Violations::default();
    violations.id(field, value);
    violations.finish()
}

/// Longest Assign description hint accepted.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;

/// What the learned scorer knows of a subtask: its spec and the Assign hints (read before
/// `subtask_spec` takes the request).
pub fn subtask_context(spec: &SubtaskSpec, request: &pb::AssignRequest) -> SubtaskContext {
    SubtaskContext {
        specialist_type: spec.specialist_type.clone(),
        required_capabilities: spec.required_capabilities.clone(),
        priority: spec.priority,
        description: (!request.description.is_empty()).then(|| request.description.clone()),
        estimated_duration_ms: request.estimated_duration_ms,
    }
}

pub fn subtask_spec(
    request: pb::AssignRequest,
    policy: &RoutingPolicy,
) -> Result<SubtaskSpec, ApiError> {
    let mut violations = Violations::default();
    violations.id("subtask_id", &request.subtask_id);
    violations.specialist_type("specialist_type", &request.specialist_type, policy);
    let required_capabilities =
        violations.capabilities("required_capabilities", &request.required_capabilities);
    if !(0..=MAX_PRIORITY).contains(&request.priority) {
        violations.add(
            "priority",
            format!(
                "must be between 0 and {MAX_PRIORITY}, got {}",
                request.priority
            ),
        );
    }
    if !request.parent_id.is_empty() {
        violations.id("parent_id", &request.parent_id);
    }
    if request.depends_on.len() > MAX_DEPENDENCIES {
        violations.add(
            "depends_on",
            format!(
                "at most {MAX_DEPENDENCIES} dependencies, got {}",
                request.depends_on.len()
            ),
        );
    }
    for (index, dependency) in request.depends_on.iter().enumerate() {
        let field = format!("depends_on[{index}]");
        violations.id(&field, dependency);
        if *dependency == request.subtask_id {
            violations.add(field, "a subtask cannot depend on itself");
        }
    }
    if request.payload.len() > MAX_PAYLOAD_BYTES {
        violations.add(
            "payload",
            format!(
                "must be at most {MAX_PAYLOAD_BYTES} bytes, got {}",
                request.payload.len()
            ),
        );
    }
    if request.description.len() > MAX_DESCRIPTION_BYTES {
        violations.add(
            "description",
            format!(
                "must be at most {MAX_DESCRIPTION_BYTES} bytes, got {}",
                request.description.len()
            ),
        );
    }
    violations.finish()?;
    let mut depends_on = request.depends_on;
    depends_on.sort();
    depends_on.dedup();
    Ok(SubtaskSpec {
        subtask_id: request.subtask_id,
        specialist_type: request.specialist_type,
        required_capabilities,
        priority: request.priority,
        parent_id: (!request.parent_id.is_empty()).then_some(request.parent_id),
        depends_on,
        payload: request.payload,
        require_all_capabilities: request.require_all_capabilities,
    })
}

pub fn release_request(request: pb::ReleaseRequest) -> Result<ReleaseRequest, ApiError> {
    let mut violations = Violations::default();
    violations.id("subtask_id", &request.subtask_id);
    violations.id("specialist_id", &request.specialist_id);
    violations.epoch("epoch", request.epoch);
    violations.text("reason", &request.reason, MAX_REASON_BYTES);
    let incarnation = optional_incarnation(&mut violations, "incarnation", request.incarnation);
    violations.finish()?;
    Ok(ReleaseRequest {
        subtask_id: request.subtask_id,
        specialist_id: request.specialist_id,
        epoch: request.epoch,
        reason: request.reason,
        incarnation,
    })
}

pub fn cancel_request(request: &pb::CancelRequest) -> Result<(), ApiError> {
    let mut violations = Violations::default();
    violations.id("subtask_id", &request.subtask_id);
    violations.text("reason", &request.reason, MAX_REASON_BYTES);
    violations.finish()
}

pub fn completion_report(
    request: pb::ReportCompletionRequest,
) -> Result<CompletionReport, ApiError> {
    let mut violations = Violations::default();
    violations.id("subtask_id", &request.subtask_id);
    violations.id("specialist_id", &request.specialist_id);
    violations.epoch("epoch", request.epoch);
    if !request.quality_score.is_finite() || !(0.0..=1.0).contains(&request.quality_score) {
        violations.add(
            "quality_score",
            format!("must be between 0 and 1, got {}", request.quality_score),
        );
    }
    violations.text("detail", &request.detail, MAX_REASON_BYTES);
    if request.completion_time_ms > MAX_COMPLETION_TIME_MS {
        violations.add(
            "completion_time_ms",
            format!(
                "must be at most {MAX_COMPLETION_TIME_MS} (30 days), got {}",
                request.completion_time_ms
            ),
        );
    }
    let incarnation = optional_incarnation(&mut violations, "incarnation", request.incarnation);
    violations.finish()?;
    Ok(CompletionReport {
        subtask_id: request.subtask_id,
        specialist_id: request.specialist_id,
        epoch: request.epoch,
        success: request.success,
        completion_time_ms: request.completion_time_ms,
        quality_score: request.quality_score,
        detail: request.detail,
        incarnation,
    })
}

pub fn page_request(page_size: u32, page_token: String) -> Result<PageRequest, ApiError> {
    let size = match page_size as usize {
        0 => DEFAULT_PAGE_SIZE,
        size if size > MAX_PAGE_SIZE => {
            return Err(ApiError::invalid(
                "page_size",
                format!("must be at most {MAX_PAGE_SIZE}"),
            ))
        }
        size => size,
    };
    if page_token.len() > 2 * MAX_ID_BYTES {
        return Err(ApiError::invalid(
            "page_token",
            "not a token this server issued",
        ));
    }
    Ok(PageRequest {
        size,
        token: (!page_token.is_empty()).then_some(page_token),
    })
}

/// An optional type filter: empty means every type; otherwise it must be configured.
pub fn type_filter(
    field: &str,
    value: &str,
    policy: &RoutingPolicy,
) -> Result<Option<String>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    let mut violations = Violations::default();
    violations.specialist_type(field, value, policy);
    violations.finish()?;
    Ok(Some(value.to_string()))
}

pub fn required_type(field: &str, value: &str, policy: &RoutingPolicy) -> Result<(), ApiError> {
    let mut violations = Violations::default();
    violations.specialist_type(field, value, policy);
    violations.finish()
}

pub fn specialist_to_proto(specialist: Specialist) -> pb::Specialist {
    pb::Specialist {
        specialist_id: specialist.specialist_id,
        specialist_type: specialist.specialist_type,
        capabilities: specialist.capabilities,
        max_concurrency: specialist.max_concurrency,
        labels: specialist.labels.into_iter().collect(),
        availability: availability_to_proto(specialist.availability) as i32,
        active_assignments: specialist.active_assignments,
        registered_at: optional_timestamp(specialist.registered_at_ms),
        last_heartbeat_at: optional_timestamp(specialist.last_heartbeat_at_ms),
        lease_expires_at: optional_timestamp(specialist.lease_expires_at_ms),
        performance: specialist.performance,
    }
}

fn state_to_proto(state: SubtaskState) -> pb::AssignmentState {
    match state {
        SubtaskState::Assigned => pb::AssignmentState::Assigned,
        SubtaskState::Queued => pb::AssignmentState::Queued,
        SubtaskState::Blocked => pb::AssignmentState::Blocked,
        SubtaskState::Completed => pb::AssignmentState::Completed,
        SubtaskState::Failed => pb::AssignmentState::Failed,
        SubtaskState::Cancelled => pb::AssignmentState::Cancelled,
    }
}

fn factor_to_proto(factor: Factor) -> pb::ScoreFactor {
    pb::ScoreFactor {
        value: factor.value,
        weight: factor.weight,
        points: factor.points,
    }
}

fn breakdown_to_proto(breakdown: &ScoreBreakdown) -> pb::ScoreBreakdown {
    pb::ScoreBreakdown {
        capability: Some(factor_to_proto(breakdown.capability)),
        load: Some(factor_to_proto(breakdown.load)),
        availability: Some(factor_to_proto(breakdown.availability)),
        performance: Some(factor_to_proto(breakdown.performance)),
    }
}

pub fn assignment_to_proto(view: AssignmentView) -> pb::Assignment {
    let holder = view.holder.as_ref();
    pb::Assignment {
        subtask_id: view.subtask_id,
        state: state_to_proto(view.state) as i32,
        specialist_id: holder
            .map(|holder| holder.specialist_id.clone())
            .unwrap_or_default(),
        score: holder.map_or(0.0, |holder| holder.breakdown.score),
        assigned_at: holder.map(|holder| timestamp(holder.assigned_at_ms)),
        queue_position: view.queue_position.unwrap_or(0),
        breakdown: holder.map(|holder| breakdown_to_proto(&holder.breakdown)),
        epoch: holder.map_or(0, |holder| holder.epoch),
        attempt: view.attempt,
        routed_type: view.routed_type,
        waiting_on: view.waiting_on,
        detail: view.detail,
        created_at: optional_timestamp(view.created_at_ms),
        finished_at: view.finished_at_ms.map(timestamp),
    }
}

pub fn subtask_to_proto(subtask: Subtask) -> pb::Subtask {
    let spec = subtask.spec;
    pb::Subtask {
        subtask_id: spec.subtask_id,
        specialist_type: spec.specialist_type,
        required_capabilities: spec.required_capabilities,
        priority: spec.priority,
        parent_id: spec.parent_id.unwrap_or_default(),
        depends_on: spec.depends_on,
        payload: spec.payload,
        require_all_capabilities: spec.require_all_capabilities,
        created_at: optional_timestamp(subtask.created_at_ms),
    }
}

pub fn watch_event_to_proto(event: WatchEvent) -> pb::WatchAssignmentsResponse {
    let kind = match event.kind {
        WatchEventKind::Assigned => pb::WatchEventKind::Assigned,
        WatchEventKind::Revoked => pb::WatchEventKind::Revoked,
    };
    pb::WatchAssignmentsResponse {
        kind: kind as i32,
        assignment: Some(assignment_to_proto(event.assignment)),
        subtask: Some(subtask_to_proto(event.subtask)),
    }
}

pub fn model_status(
    policy: &RoutingPolicy,
    learned: Option<ModelStatus>,
) -> pb::GetModelStatusResponse {
    let weights = policy.weights;
    let rules_detail = format!(
        "the rule-based performance factor is (recent successes + {}) / (recent outcomes + 2) over the last {PERFORMANCE_WINDOW} reports",
        2.0 * PERFORMANCE_PRIOR
    );
    let mut response = pb::GetModelStatusResponse {
        scorer: "rules".into(),
        weights: Some(pb::ScoringWeights {
            capability: weights.capability,
            load: weights.load,
            availability: weights.availability,
            performance: weights.performance,
        }),
        performance_prior: PERFORMANCE_PRIOR,
        performance_window: PERFORMANCE_WINDOW as u32,
        detail: format!(
            "rule-based scoring (learned scoring is off, --scorer rules); {rules_detail}"
        ),
        learned_performance_weight: weights.performance,
        ..Default::default()
    };
    let Some(status) = learned else {
        return response;
    };
    response.scorer = status.scorer.into();
    response.detail = if status.scorer == "rules" {
        format!("{}; {rules_detail}", status.detail)
    } else {
        status.detail
    };
    response.model_version = status.version;
    response.training_set_size = status.training_set_size;
    response.holdout = status.holdout.map(|holdout| pb::HoldoutMetrics {
        log_loss: holdout.log_loss,
        auc: holdout.auc,
        accuracy: holdout.accuracy,
        quality_mae: holdout.quality_mae,
        examples: holdout.examples as u64,
    });
    response.last_trained_at = status.last_trained_at_ms.map(timestamp);
    response.examples = status.examples;
    response.trainings = status.trainings;
    response.rejected_trainings = status.rejected;
    response.learned_performance_weight = status.performance_weight;
    response
}
