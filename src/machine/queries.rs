//! The embedded store's read operations.

use std::ops::Bound;

use crate::domain::error::{Precondition, StoreError, StoreResult};
use crate::domain::learned::CandidateInfo;
use crate::domain::performance::{PerformanceRecord, PerformanceSummary};
use crate::domain::reads::{
    AvailabilityCounts, InFlight, Page, PageRequest, QueuePage, QueuePosition, QueuedEntry,
    TypeStats,
};
use crate::domain::specialist::{capabilities_suffice, Availability, Specialist};
use crate::domain::subtask::{
    AssignmentView, Subtask, SubtaskSpec, SubtaskState, WatchEvent, WatchEventKind,
};

use super::state::{Machine, QueueKey};

impl Machine {
    pub fn get_specialist(&self, specialist_id: &str) -> StoreResult<Specialist> {
        self.specialists
            .get(specialist_id)
            .map(|record| self.specialist_view(record))
            .ok_or_else(|| StoreError::specialist_not_found(specialist_id))
    }

    pub fn list_specialists(
        &self,
        specialist_type: Option<&str>,
        page: PageRequest,
    ) -> Page<Specialist> {
        let lower = page
            .token
            .as_deref()
            .map_or(Bound::Unbounded, |after| Bound::Excluded(after.to_string()));
        let mut matching = self
            .specialists
            .range((lower, Bound::Unbounded))
            .map(|(_, record)| record)
            .filter(|record| specialist_type.is_none_or(|wanted| record.specialist_type == wanted));
        let items: Vec<Specialist> = matching
            .by_ref()
            .take(page.size)
            .map(|record| self.specialist_view(record))
            .collect();
        let next_page_token = match (items.last(), matching.next()) {
            (Some(last), Some(_)) => Some(last.specialist_id.clone()),
            _ => None,
        };
        Page {
            items,
            next_page_token,
        }
    }

    pub fn get_assignment(&self, subtask_id: &str) -> StoreResult<(AssignmentView, Subtask)> {
        let record = self
            .subtasks
            .get(subtask_id)
            .ok_or_else(|| StoreError::subtask_not_found(subtask_id))?;
        Ok((self.assignment_view(record), record.subtask.clone()))
    }

    pub fn queue_position(&self, subtask_id: &str) -> StoreResult<QueuePosition> {
        let record = self
            .subtasks
            .get(subtask_id)
            .ok_or_else(|| StoreError::subtask_not_found(subtask_id))?;
        let Some(key) = record
            .queue_key
            .filter(|_| record.state == SubtaskState::Queued)
        else {
            return Err(Precondition::NotQueued {
                subtask_id: subtask_id.to_string(),
                state: record.state,
            }
            .into());
        };
        Ok(QueuePosition {
            subtask_id: subtask_id.to_string(),
            routed_type: record.routed_type.clone(),
            position: self.queue_rank(&record.routed_type, key),
            depth: self.queue_depth(&record.routed_type),
        })
    }

    fn queue_depth(&self, specialist_type: &str) -> u64 {
        self.queues
            .get(specialist_type)
            .map_or(0, |queue| queue.len() as u64)
    }

    pub fn list_queue(&self, specialist_type: &str, page: PageRequest) -> StoreResult<QueuePage> {
        let after = match page.token.as_deref() {
            None => None,
            Some(token) => Some(QueueKey::from_token(token).ok_or_else(|| {
                StoreError::invalid("page_token", "not a token this server issued")
            })?),
        };
        let Some(queue) = self.queues.get(specialist_type) else {
            return Ok(QueuePage {
                entries: Vec::new(),
                depth: 0,
                next_page_token: None,
            });
        };
        // Entries at or before the token's key, whether it is still queued or not.
        let first_position = after.map_or(1, |key| {
            queue.position(key) + u64::from(queue.get(key).is_some())
        });
        let mut remaining = queue.iter_after(after.as_ref());
        let mut entries = Vec::new();
        for (offset, (_, subtask_id)) in remaining.by_ref().take(page.size).enumerate() {
            let Some(record) = self.subtasks.get(subtask_id) else {
                continue;
            };
            entries.push(QueuedEntry {
                subtask_id: subtask_id.clone(),
                position: first_position + offset as u64,
                priority: record.subtask.spec.priority,
                attempt: record.attempt,
                required_capabilities: record.subtask.spec.required_capabilities.clone(),
                enqueued_at_ms: record.enqueued_at_ms,
            });
        }
        let next_page_token = match remaining.next() {
            Some(_) => entries
                .last()
                .and_then(|last| self.subtasks.get(&last.subtask_id))
                .and_then(|record| record.queue_key)
                .map(QueueKey::to_token),
            None => None,
        };
        Ok(QueuePage {
            entries,
            depth: queue.len() as u64,
            next_page_token,
        })
    }

    pub fn queue_stats(&self, specialist_type: Option<&str>, now_ms: i64) -> Vec<TypeStats> {
        self.policy
            .specialist_types
            .iter()
            .filter(|known| specialist_type.is_none_or(|wanted| wanted == known.as_str()))
            .map(|known| self.type_stats(known, now_ms))
            .collect()
    }

    fn type_stats(&self, specialist_type: &str, now_ms: i64) -> TypeStats {
        let mut specialists = AvailabilityCounts::default();
        let mut active_assignments = 0;
        let mut free_capacity = 0;
        for record in self
            .specialists_by_type
            .get(specialist_type)
            .into_iter()
            .flatten()
            .filter_map(|specialist_id| self.specialists.get(specialist_id))
        {
            let availability = if record.lease_expires_at_ms > now_ms {
                record.availability
            } else {
                Availability::Offline
            };
            specialists.add(availability);
            active_assignments += record.active.len() as u64;
            free_capacity += record.free_slots(now_ms);
        }
        let oldest_enqueued = self
            .queues
            .get(specialist_type)
            .and_then(|queue| queue.oldest_enqueued());
        TypeStats {
            specialist_type: specialist_type.to_string(),
            depth: self.queue_depth(specialist_type),
            oldest_wait_ms: oldest_enqueued.map_or(0, |enqueued| (now_ms - enqueued).max(0)),
            specialists,
            active_assignments,
            blocked: self
                .blocked_by_type
                .get(specialist_type)
                .map_or(0, |blocked| blocked.len() as u64),
            free_capacity,
        }
    }

    pub fn performance_summary(&self, specialist_id: &str) -> StoreResult<PerformanceSummary> {
        match self.performance.get(specialist_id) {
            Some(record) => Ok(record.summary()),
            None if self.specialists.contains_key(specialist_id) => {
                Ok(PerformanceRecord::default().summary())
            }
            None => Err(StoreError::specialist_not_found(specialist_id)),
        }
    }

    pub fn in_flight(&self, specialist_id: &str) -> StoreResult<InFlight> {
        let specialist = self
            .specialists
            .get(specialist_id)
            .ok_or_else(|| StoreError::specialist_not_found(specialist_id))?;
        let mut events: Vec<WatchEvent> = specialist
            .active
            .iter()
            .filter_map(|subtask_id| self.subtasks.get(subtask_id))
            .map(|record| WatchEvent {
                kind: WatchEventKind::Assigned,
                assignment: self.assignment_view(record),
                subtask: record.subtask.clone(),
            })
            .collect();
        events.sort_by_key(WatchEvent::epoch);
        let epoch = self
            .counters
            .get(&specialist.specialist_type)
            .map_or(0, |counters| counters.epoch);
        Ok(InFlight {
            events,
            epoch,
            incarnation: Some(specialist.incarnation.clone()),
        })
    }

    /// Who could take a new subtask right now: the eligible specialists of its routed type.
    pub fn candidates(&self, spec: &SubtaskSpec, now_ms: i64) -> Vec<CandidateInfo> {
        if self.subtasks.contains_key(&spec.subtask_id) {
            return Vec::new();
        }
        let waits = spec.depends_on.iter().any(|dependency_id| {
            self.subtasks
                .get(dependency_id)
                .is_none_or(|dependency| dependency.state != SubtaskState::Completed)
        });
        if waits {
            return Vec::new();
        }
        let routed_type = self.routed_type_for(
            &spec.specialist_type,
            &spec.required_capabilities,
            spec.require_all_capabilities,
        );
        self.index
            .free
            .get(&routed_type)
            .into_iter()
            .flatten()
            .filter_map(|(_, _, _, specialist_id)| self.specialists.get(specialist_id))
            .filter(|specialist| {
                specialist.free_slots(now_ms) > 0
                    && capabilities_suffice(
                        &specialist.capabilities,
                        &spec.required_capabilities,
                        spec.require_all_capabilities,
                    )
            })
            .map(|specialist| {
                let recent = self
                    .performance
                    .get(&specialist.specialist_id)
                    .map(|record| &record.recent);
                CandidateInfo {
                    specialist_id: specialist.specialist_id.clone(),
                    specialist_type: specialist.specialist_type.clone(),
                    capabilities: specialist.capabilities.clone(),
                    active: specialist.active.len() as u32,
                    max_concurrency: specialist.max_concurrency,
                    availability: specialist.availability,
                    recent_successes: recent.map_or(0, |recent| {
                        recent.iter().filter(|success| **success).count()
                    }) as u32,
                    recent_outcomes: recent.map_or(0, |recent| recent.len()) as u32,
                    rule_performance: self.performance_factor(&specialist.specialist_id),
                }
            })
            .collect()
    }
}
