//! The embedded store's write operations; each runs under the store lock as one atomic step.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::domain::learned::LearnedFactors;

use crate::domain::error::{Precondition, StoreError, StoreResult};
use crate::domain::reads::{ExpirySummary, Registered};
use crate::domain::specialist::{Availability, Incarnation, Registration, Specialist};
use crate::domain::subtask::{
    AssignmentView, CompletionReport, Holder, ReleaseRequest, Subtask, SubtaskSpec, SubtaskState,
};

use super::routing::Requeue;
use super::state::{Machine, MachineEvent, SpecialistRecord, SubtaskRecord};

impl Machine {
    pub fn register(&mut self, registration: Registration, now_ms: i64) -> StoreResult<Registered> {
        let lease_expires_at_ms = now_ms + self.policy.lease_ttl_ms;
        let max_concurrency = registration
            .max_concurrency
            .unwrap_or(self.policy.default_max_concurrency);
        let specialist_id = match registration.specialist_id {
            Some(specialist_id) => specialist_id,
            None => self.mint_specialist_id(&registration.specialist_type),
        };
        let new_capabilities = registration.capabilities.clone();
        let mut requeued = Vec::new();
        let (created, old_capabilities, incarnation) = match self.specialists.get(&specialist_id) {
            Some(existing) => {
                if existing.specialist_type != registration.specialist_type {
                    return Err(Precondition::TypeMismatch {
                        specialist_id: specialist_id.clone(),
                        registered: existing.specialist_type.clone(),
                        requested: registration.specialist_type.clone(),
                    }
                    .into());
                }
                let incarnation = match registration.incarnation {
                    // The same Register again (a retried call) keeps what the first one started.
                    Incarnation::Start { incarnation, .. }
                        if existing.incarnation == incarnation =>
                    {
                        incarnation
                    }
                    Incarnation::Keep(incarnation) => {
                        if existing.incarnation != incarnation {
                            return Err(Precondition::IncarnationEnded {
                                specialist_id: specialist_id.clone(),
                                incarnation,
                            }
                            .into());
                        }
                        incarnation
                    }
                    Incarnation::Start {
                        incarnation,
                        take_over,
                    } => {
                        if existing.lease_expires_at_ms > now_ms && !take_over {
                            return Err(StoreError::SpecialistLive {
                                specialist_id: specialist_id.clone(),
                                lease_left_ms: existing.lease_expires_at_ms - now_ms,
                            });
                        }
                        requeued = self.end_incarnation(&specialist_id, &incarnation, now_ms);
                        incarnation
                    }
                };
                let Some(existing) = self.specialists.get_mut(&specialist_id) else {
                    return Err(StoreError::specialist_not_found(&specialist_id));
                };
                let old_capabilities =
                    std::mem::replace(&mut existing.capabilities, registration.capabilities);
                existing.max_concurrency = max_concurrency;
                existing.labels = registration.labels;
                existing.availability = registration.availability;
                existing.last_heartbeat_at_ms = now_ms;
                existing.lease_expires_at_ms = lease_expires_at_ms;
                (false, old_capabilities, incarnation)
            }
            None => {
                // An unknown id (deregistered, or lost with a store's data) is registered anew,
                // under the incarnation the caller keeps, if it names one.
                let incarnation = match registration.incarnation {
                    Incarnation::Keep(incarnation) | Incarnation::Start { incarnation, .. } => {
                        incarnation
                    }
                };
                self.specialists.insert(
                    specialist_id.clone(),
                    SpecialistRecord {
                        specialist_id: specialist_id.clone(),
                        specialist_type: registration.specialist_type.clone(),
                        capabilities: registration.capabilities,
                        max_concurrency,
                        labels: registration.labels,
                        availability: registration.availability,
                        registered_at_ms: now_ms,
                        last_heartbeat_at_ms: now_ms,
                        lease_expires_at_ms,
                        active: BTreeSet::new(),
                        last_assigned_seq: 0,
                        incarnation: incarnation.clone(),
                    },
                );
                self.specialists_by_type
                    .entry(registration.specialist_type.clone())
                    .or_default()
                    .insert(specialist_id.clone());
                (true, Vec::new(), incarnation)
            }
        };
        self.reindex_capabilities(
            &registration.specialist_type,
            &specialist_id,
            &old_capabilities,
            &new_capabilities,
        );
        self.reindex_free(&specialist_id);
        // What the ended incarnation held goes out again first, in queue order.
        let mut requeued: Vec<_> = requeued
            .into_iter()
            .filter_map(|subtask_id| {
                let key = self.subtasks.get(&subtask_id)?.queue_key?;
                Some((key, subtask_id))
            })
            .collect();
        requeued.sort();
        for (_, subtask_id) in requeued {
            self.place_queued(&subtask_id, now_ms);
        }
        self.drain_for(&specialist_id, now_ms);
        let specialist = self.specialist_snapshot(&specialist_id)?;
        Ok(Registered {
            specialist,
            created,
            incarnation,
        })
    }

    /// A new incarnation replaces the specialist's current one: the old one's streams end, and
    /// what it held is retried as a new attempt (or fails after the last), as when a lease lapses.
    /// Returns the subtasks that went back to their queue.
    fn end_incarnation(
        &mut self,
        specialist_id: &str,
        incarnation: &str,
        now_ms: i64,
    ) -> Vec<String> {
        let Some(specialist) = self.specialists.get_mut(specialist_id) else {
            return Vec::new();
        };
        specialist.incarnation = incarnation.to_string();
        let held_set = std::mem::take(&mut specialist.active);
        self.reindex_free(specialist_id);
        if self.watched.contains(specialist_id) {
            self.events.push(MachineEvent::Incarnation {
                specialist_id: specialist_id.to_string(),
                incarnation: incarnation.to_string(),
            });
        }
        let held = self.held_oldest_last(&held_set);
        let mut requeued = Vec::new();
        for subtask_id in held {
            let revoked = self.holder_of(&subtask_id);
            let detail = format!("specialist {specialist_id} restarted (a new incarnation)");
            if self.requeue_or_fail(&subtask_id, Requeue::SpentAttempt, detail, now_ms) {
                requeued.push(subtask_id.clone());
            }
            self.revoke(revoked, &subtask_id);
        }
        requeued
    }

    /// Refuses a call that names an incarnation of `specialist_id` other than its current one.
    fn check_incarnation(&self, specialist_id: &str, incarnation: Option<&str>) -> StoreResult<()> {
        let (Some(incarnation), Some(specialist)) =
            (incarnation, self.specialists.get(specialist_id))
        else {
            return Ok(());
        };
        if specialist.incarnation == incarnation {
            return Ok(());
        }
        Err(Precondition::IncarnationEnded {
            specialist_id: specialist_id.to_string(),
            incarnation: incarnation.to_string(),
        }
        .into())
    }

    fn mint_specialist_id(&mut self, specialist_type: &str) -> String {
        loop {
            let counter = self
                .minted_per_type
                .entry(specialist_type.to_string())
                .or_insert(0);
            *counter += 1;
            let candidate = format!("specialist-{specialist_type}-{counter}");
            if !self.specialists.contains_key(&candidate) {
                return candidate;
            }
        }
    }

    fn specialist_snapshot(&self, specialist_id: &str) -> StoreResult<Specialist> {
        self.specialists
            .get(specialist_id)
            .map(|record| self.specialist_view(record))
            .ok_or_else(|| StoreError::specialist_not_found(specialist_id))
    }

    pub fn heartbeat(
        &mut self,
        specialist_id: &str,
        incarnation: &str,
        availability: Option<Availability>,
        now_ms: i64,
    ) -> StoreResult<Specialist> {
        let lease_ttl_ms = self.policy.lease_ttl_ms;
        self.check_incarnation(specialist_id, Some(incarnation))?;
        let specialist = self
            .specialists
            .get_mut(specialist_id)
            .ok_or_else(|| StoreError::specialist_not_found(specialist_id))?;
        let could_take_work = specialist.can_take_work(now_ms);
        specialist.availability = match (availability, specialist.availability) {
            (Some(stated), _) => stated,
            (None, Availability::Offline) => Availability::Online,
            (None, current) => current,
        };
        specialist.last_heartbeat_at_ms = now_ms;
        specialist.lease_expires_at_ms = now_ms + lease_ttl_ms;
        let can_take_work = specialist.can_take_work(now_ms);
        self.reindex_free(specialist_id);
        if !could_take_work && can_take_work {
            self.drain_for(specialist_id, now_ms);
        }
        self.specialist_snapshot(specialist_id)
    }

    pub fn deregister(&mut self, specialist_id: &str, now_ms: i64) -> StoreResult<Vec<String>> {
        let specialist = self
            .specialists
            .remove(specialist_id)
            .ok_or_else(|| StoreError::specialist_not_found(specialist_id))?;
        if let Some(ids) = self
            .specialists_by_type
            .get_mut(&specialist.specialist_type)
        {
            ids.remove(specialist_id);
        }
        self.reindex_capabilities(
            &specialist.specialist_type,
            specialist_id,
            &specialist.capabilities,
            &[],
        );
        self.reindex_free(specialist_id);
        let held = self.held_oldest_last(&specialist.active);
        for subtask_id in &held {
            let revoked = self.holder_of(subtask_id);
            let detail = format!("specialist {specialist_id} deregistered");
            self.requeue_or_fail(subtask_id, Requeue::HolderLeft, detail, now_ms);
            self.revoke(revoked, subtask_id);
        }
        // Its watch streams end.
        if self.watched.remove(specialist_id) {
            self.events.push(MachineEvent::Ended {
                specialist_id: specialist_id.to_string(),
            });
        }
        self.drain(&specialist.specialist_type, now_ms);
        Ok(held.into_iter().rev().collect())
    }

    /// Held subtasks ordered so that inserting each at the queue head leaves the oldest first.
    fn held_oldest_last(&self, held: &BTreeSet<String>) -> Vec<String> {
        let mut by_epoch: Vec<(u64, String)> = held
            .iter()
            .map(|subtask_id| {
                let epoch = self
                    .subtasks
                    .get(subtask_id)
                    .and_then(|record| record.holder.as_ref())
                    .map_or(0, |holder| holder.epoch);
                (epoch, subtask_id.clone())
            })
            .collect();
        by_epoch.sort();
        by_epoch
            .into_iter()
            .rev()
            .map(|(_, subtask_id)| subtask_id)
            .collect()
    }

    fn holder_of(&self, subtask_id: &str) -> Option<Holder> {
        self.subtasks
            .get(subtask_id)
            .and_then(|record| record.holder.clone())
    }

    /// Tells the former holder its subtask was taken away: the event shows the subtask's new state
    /// and detail, with the revoked holder and epoch.
    fn revoke(&mut self, revoked: Option<Holder>, subtask_id: &str) {
        if let Some(revoked) = revoked {
            self.publish_revoked(revoked, subtask_id);
        }
    }

    pub fn assign(&mut self, spec: SubtaskSpec, now_ms: i64) -> StoreResult<AssignmentView> {
        self.assign_with(spec, None, now_ms)
    }

    /// Assign, picking with learned performance factors when given (kept with the subtask for
    /// later picks while it is queued).
    pub fn assign_with(
        &mut self,
        spec: SubtaskSpec,
        learned: Option<LearnedFactors>,
        now_ms: i64,
    ) -> StoreResult<AssignmentView> {
        if let Some(existing) = self.subtasks.get(&spec.subtask_id) {
            if existing.subtask.spec == spec {
                return Ok(self.assignment_view(existing));
            }
            return Err(StoreError::already_exists(&spec.subtask_id));
        }
        let mut waiting_on = BTreeSet::new();
        let mut failed_dependency: Option<(String, SubtaskState)> = None;
        for dependency_id in &spec.depends_on {
            let Some(dependency) = self.subtasks.get(dependency_id) else {
                return Err(Precondition::UnknownDependency {
                    dependency_id: dependency_id.clone(),
                }
                .into());
            };
            match dependency.state {
                SubtaskState::Completed => {}
                SubtaskState::Failed | SubtaskState::Cancelled => {
                    failed_dependency.get_or_insert((dependency_id.clone(), dependency.state));
                }
                _ => {
                    waiting_on.insert(dependency_id.clone());
                }
            }
        }
        let routed_type = self.routed_type_for(
            &spec.specialist_type,
            &spec.required_capabilities,
            spec.require_all_capabilities,
        );
        let subtask_id = spec.subtask_id.clone();
        self.subtasks.insert(
            subtask_id.clone(),
            SubtaskRecord {
                subtask: Subtask {
                    spec,
                    created_at_ms: now_ms,
                },
                state: SubtaskState::Blocked,
                attempt: 1,
                routed_type,
                holder: None,
                queue_key: None,
                enqueued_at_ms: now_ms,
                waiting_on: BTreeSet::new(),
                excluded: Vec::new(),
                detail: String::new(),
                finished_at_ms: None,
                learned: learned.map(Arc::new),
            },
        );
        if let Some((dependency_id, state)) = failed_dependency {
            let detail = format!("dependency {dependency_id} is {}", state.as_str());
            self.finish(&subtask_id, SubtaskState::Failed, Some(detail), now_ms);
        } else if !waiting_on.is_empty() {
            self.block(&subtask_id, waiting_on);
        } else {
            self.route_ready(&subtask_id, now_ms);
        }
        self.view(&subtask_id)
    }

    pub(super) fn view(&self, subtask_id: &str) -> StoreResult<AssignmentView> {
        self.view_of(subtask_id)
            .ok_or_else(|| StoreError::subtask_not_found(subtask_id))
    }

    /// The holder of an ASSIGNED subtask, if the caller names it and its current epoch.
    fn fenced_holder(
        &self,
        subtask_id: &str,
        specialist_id: &str,
        epoch: u64,
    ) -> StoreResult<Holder> {
        let record = self
            .subtasks
            .get(subtask_id)
            .ok_or_else(|| StoreError::subtask_not_found(subtask_id))?;
        let Some(holder) = record
            .holder
            .as_ref()
            .filter(|_| record.state == SubtaskState::Assigned)
        else {
            return Err(Precondition::NotAssigned {
                subtask_id: subtask_id.to_string(),
                state: record.state,
            }
            .into());
        };
        if holder.specialist_id != specialist_id {
            return Err(Precondition::WrongHolder {
                subtask_id: subtask_id.to_string(),
                specialist_id: specialist_id.to_string(),
            }
            .into());
        }
        if holder.epoch != epoch {
            return Err(Precondition::StaleEpoch {
                subtask_id: subtask_id.to_string(),
                epoch,
                current: holder.epoch,
            }
            .into());
        }
        Ok(holder.clone())
    }

    pub fn report_completion(
        &mut self,
        report: CompletionReport,
        now_ms: i64,
    ) -> StoreResult<AssignmentView> {
        if let Some(record) = self.subtasks.get(&report.subtask_id) {
            let same_report = record.holder.as_ref().is_some_and(|holder| {
                holder.specialist_id == report.specialist_id && holder.epoch == report.epoch
            });
            let reported_state = if report.success {
                SubtaskState::Completed
            } else {
                SubtaskState::Failed
            };
            if same_report && record.state == reported_state {
                return Ok(self.assignment_view(record));
            }
        }
        self.check_incarnation(&report.specialist_id, report.incarnation.as_deref())?;
        self.fenced_holder(&report.subtask_id, &report.specialist_id, report.epoch)?;
        let specialist_type = self.free_holder_slot(&report.specialist_id, &report.subtask_id);
        self.performance
            .entry(report.specialist_id.clone())
            .or_default()
            .record(
                report.success,
                report.quality_score,
                report.completion_time_ms,
            );
        self.reindex_free(&report.specialist_id);
        if specialist_type.is_some() {
            self.drain_for(&report.specialist_id, now_ms);
        }
        let (state, detail) = if report.success {
            (SubtaskState::Completed, report.detail)
        } else if report.detail.is_empty() {
            (
                SubtaskState::Failed,
                format!("specialist {} reported failure", report.specialist_id),
            )
        } else {
            (SubtaskState::Failed, report.detail)
        };
        self.finish(&report.subtask_id, state, Some(detail), now_ms);
        self.view(&report.subtask_id)
    }

    pub fn release(&mut self, request: ReleaseRequest, now_ms: i64) -> StoreResult<AssignmentView> {
        self.check_incarnation(&request.specialist_id, request.incarnation.as_deref())?;
        self.fenced_holder(&request.subtask_id, &request.specialist_id, request.epoch)?;
        let specialist_type = self.free_holder_slot(&request.specialist_id, &request.subtask_id);
        if let Some(record) = self.subtasks.get_mut(&request.subtask_id) {
            record.excluded.push(request.specialist_id.clone());
        }
        let detail = if request.reason.is_empty() {
            format!("released by specialist {}", request.specialist_id)
        } else {
            format!(
                "released by specialist {}: {}",
                request.specialist_id, request.reason
            )
        };
        // The releaser's freed slot first (it is not offered this subtask again), then the subtask
        // goes back to the head of its queue and to whoever else can take it now.
        if specialist_type.is_some() {
            self.drain_for(&request.specialist_id, now_ms);
        }
        if self.requeue_or_fail(&request.subtask_id, Requeue::SpentAttempt, detail, now_ms) {
            self.place_queued(&request.subtask_id, now_ms);
        }
        self.view(&request.subtask_id)
    }

    pub fn cancel(
        &mut self,
        subtask_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<AssignmentView> {
        let record = self
            .subtasks
            .get(subtask_id)
            .ok_or_else(|| StoreError::subtask_not_found(subtask_id))?;
        let state = record.state;
        let holder = record.holder.clone();
        match state {
            SubtaskState::Cancelled => return self.view(subtask_id),
            SubtaskState::Completed | SubtaskState::Failed => {
                return Err(Precondition::CannotCancel {
                    subtask_id: subtask_id.to_string(),
                    state,
                }
                .into())
            }
            SubtaskState::Queued => self.take_from_queue(subtask_id),
            SubtaskState::Blocked => self.unblock(subtask_id),
            SubtaskState::Assigned => {}
        }
        let detail = if reason.is_empty() {
            "cancelled".to_string()
        } else {
            format!("cancelled: {reason}")
        };
        if let Some(record) = self.subtasks.get_mut(subtask_id) {
            record.state = SubtaskState::Cancelled;
            record.detail = detail;
            record.finished_at_ms = Some(now_ms);
        }
        if let Some(holder) = holder {
            if let Some(record) = self.subtasks.get_mut(subtask_id) {
                record.holder = None;
            }
            self.revoke(Some(holder.clone()), subtask_id);
            if self
                .free_holder_slot(&holder.specialist_id, subtask_id)
                .is_some()
            {
                self.drain_for(&holder.specialist_id, now_ms);
            }
        }
        self.finish(subtask_id, SubtaskState::Cancelled, None, now_ms);
        self.view(subtask_id)
    }

    pub fn expire_leases(&mut self, now_ms: i64) -> ExpirySummary {
        let lapsed: Vec<String> = self
            .specialists
            .values()
            .filter(|specialist| {
                specialist.lease_expires_at_ms <= now_ms
                    && (specialist.availability != Availability::Offline
                        || !specialist.active.is_empty())
            })
            .map(|specialist| specialist.specialist_id.clone())
            .collect();
        let mut summary = ExpirySummary::default();
        let mut types = BTreeSet::new();
        for specialist_id in lapsed {
            let Some(specialist) = self.specialists.get_mut(&specialist_id) else {
                continue;
            };
            specialist.availability = Availability::Offline;
            let held_set = std::mem::take(&mut specialist.active);
            types.insert(specialist.specialist_type.clone());
            self.reindex_free(&specialist_id);
            let held = self.held_oldest_last(&held_set);
            for subtask_id in &held {
                let revoked = self.holder_of(subtask_id);
                let detail = format!("lease of specialist {specialist_id} lapsed");
                if self.requeue_or_fail(subtask_id, Requeue::SpentAttempt, detail, now_ms) {
                    summary.requeued_subtasks += 1;
                } else {
                    summary.failed_subtasks += 1;
                }
                self.revoke(revoked, subtask_id);
            }
            summary.expired_specialists.push(specialist_id);
        }
        for specialist_type in types {
            self.drain(&specialist_type, now_ms);
        }
        self.retire_finished(now_ms);
        summary
    }
}
