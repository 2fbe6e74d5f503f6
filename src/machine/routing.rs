//! The assignment rules on the embedded state: pick, hand out, queue, drain, cascade.

use std::collections::BTreeSet;
use std::ops::Bound;

use crate::domain::scoring::{score, CandidateFacts, Rank, ScoreBreakdown};
use crate::domain::specialist::capabilities_suffice;
use crate::domain::subtask::{Holder, SubtaskState, WatchEventKind};

use super::state::{Machine, QueueKey, SubtaskRecord};

/// Why a held subtask goes back to its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Requeue {
    /// Lease lapsed or the holder released it: counts as a spent attempt.
    SpentAttempt,
    /// The holder deregistered: the attempt is not counted.
    HolderLeft,
}

impl Machine {
    /// The type whose specialists will serve a new subtask (see docs/rules.md, "Routing a new subtask").
    pub(super) fn routed_type_for(
        &self,
        requested: &str,
        required: &[String],
        require_all: bool,
    ) -> String {
        if self.any_capable(requested, required, require_all) {
            return requested.to_string();
        }
        if let Some(fallback) = &self.policy.fallback_type {
            if fallback != requested && self.any_capable(fallback, required, require_all) {
                return fallback.clone();
            }
        }
        requested.to_string()
    }

    /// The best eligible specialist for a subtask right now, with its score. Walks the type's free
    /// index from the highest possible score down and stops once no remaining specialist could
    /// reach the best real score found: the same answer as scoring everyone.
    pub(super) fn pick(
        &self,
        record: &SubtaskRecord,
        now_ms: i64,
    ) -> Option<(String, ScoreBreakdown)> {
        let free = self.index.free.get(&record.routed_type)?;
        let mut best: Option<(Rank<'_>, ScoreBreakdown)> = None;
        if record.learned.is_some() {
            // The index is ordered by the rule-based bound, which says nothing about learned
            // factors: score everyone with room (still only the free ones, not the whole type).
            for (_, _, _, specialist_id) in free {
                self.consider(record, specialist_id, now_ms, &mut best);
            }
            return best.map(|(rank, breakdown)| (rank.specialist_id.to_string(), breakdown));
        }
        for (bound_bits, active, last_assigned_seq, specialist_id) in free {
            let bound = f64::from_bits(bound_bits.0);
            if let Some((rank, _)) = &best {
                // Everyone from here on scores below the best, or at most ties it and loses the
                // tie-break (the index orders equal bounds by the tie-break).
                let loses_tie = (*active, *last_assigned_seq, specialist_id.as_str())
                    > (rank.active, rank.last_assigned_seq, rank.specialist_id);
                if bound < rank.score || (bound == rank.score && loses_tie) {
                    break;
                }
            }
            self.consider(record, specialist_id, now_ms, &mut best);
        }
        best.map(|(rank, breakdown)| (rank.specialist_id.to_string(), breakdown))
    }

    /// `pick` by scoring every specialist of the type: the reference the index must agree with.
    #[cfg(test)]
    pub(super) fn pick_by_scan(
        &self,
        record: &SubtaskRecord,
        now_ms: i64,
    ) -> Option<(String, ScoreBreakdown)> {
        let mut best: Option<(Rank<'_>, ScoreBreakdown)> = None;
        for specialist_id in self.specialists_by_type.get(&record.routed_type)? {
            self.consider(record, specialist_id, now_ms, &mut best);
        }
        best.map(|(rank, breakdown)| (rank.specialist_id.to_string(), breakdown))
    }

    /// Scores one specialist for a subtask if it is eligible and keeps it when it beats `best`.
    fn consider<'a>(
        &'a self,
        record: &SubtaskRecord,
        specialist_id: &'a str,
        now_ms: i64,
        best: &mut Option<(Rank<'a>, ScoreBreakdown)>,
    ) {
        let spec = &record.subtask.spec;
        let Some(specialist) = self.specialists.get(specialist_id) else {
            return;
        };
        let eligible = specialist.free_slots(now_ms) > 0
            && capabilities_suffice(
                &specialist.capabilities,
                &spec.required_capabilities,
                spec.require_all_capabilities,
            )
            && !record
                .excluded
                .iter()
                .any(|excluded| excluded == specialist_id);
        if !eligible {
            return;
        }
        let active = specialist.active.len() as u32;
        let rule_performance = self.performance_factor(specialist_id);
        let (weights, performance) = match &record.learned {
            Some(learned) => (
                learned.weights(&self.policy.weights),
                learned.performance_of(specialist_id, rule_performance),
            ),
            None => (self.policy.weights, rule_performance),
        };
        let breakdown = score(
            &weights,
            &spec.required_capabilities,
            CandidateFacts {
                capabilities: &specialist.capabilities,
                active,
                availability: specialist.availability,
                performance,
            },
        );
        let rank = Rank {
            score: breakdown.score,
            active,
            last_assigned_seq: specialist.last_assigned_seq,
            specialist_id,
        };
        let wins = match best {
            None => true,
            Some((best_rank, _)) => rank.better_than(best_rank).is_lt(),
        };
        if wins {
            *best = Some((rank, breakdown));
        }
    }

    fn type_of(&self, specialist_id: &str) -> Option<String> {
        self.specialists
            .get(specialist_id)
            .map(|specialist| specialist.specialist_type.clone())
    }

    /// Gives a subtask (not queued, not held) to a specialist with a fresh epoch.
    pub(super) fn hand_out(
        &mut self,
        subtask_id: &str,
        specialist_id: &str,
        breakdown: ScoreBreakdown,
        now_ms: i64,
    ) {
        let Some(specialist_type) = self.type_of(specialist_id) else {
            return;
        };
        let (epoch, assign_seq) = self.next_epoch_and_seq(&specialist_type);
        if let Some(specialist) = self.specialists.get_mut(specialist_id) {
            debug_assert!(specialist.active.len() < specialist.max_concurrency as usize);
            specialist.active.insert(subtask_id.to_string());
            specialist.last_assigned_seq = assign_seq;
        }
        self.reindex_free(specialist_id);
        if let Some(record) = self.subtasks.get_mut(subtask_id) {
            debug_assert!(record.holder.is_none() && record.queue_key.is_none());
            record.state = SubtaskState::Assigned;
            record.holder = Some(Holder {
                specialist_id: specialist_id.to_string(),
                epoch,
                assigned_at_ms: now_ms,
                breakdown,
            });
        }
        self.publish(specialist_id, WatchEventKind::Assigned, subtask_id);
    }

    pub(super) fn enqueue(&mut self, subtask_id: &str, at_head: bool, now_ms: i64) {
        let Some((priority, routed_type)) = self
            .subtasks
            .get(subtask_id)
            .map(|record| (record.subtask.spec.priority, record.routed_type.clone()))
        else {
            return;
        };
        let key = self.next_queue_key(&routed_type, priority, at_head);
        let Some(record) = self.subtasks.get_mut(subtask_id) else {
            return;
        };
        record.state = SubtaskState::Queued;
        record.queue_key = Some(key);
        record.enqueued_at_ms = now_ms;
        self.queues
            .entry(record.routed_type.clone())
            .or_default()
            .insert(
                key,
                subtask_id,
                &record.subtask.spec.required_capabilities,
                now_ms,
            );
    }

    /// Assigns a ready subtask to the best eligible specialist or queues it at the tail.
    /// Only valid while the queue invariant holds (no queued subtask servable now).
    pub(super) fn route_ready(&mut self, subtask_id: &str, now_ms: i64) {
        let Some(record) = self.subtasks.get(subtask_id) else {
            return;
        };
        match self.pick(record, now_ms) {
            Some((specialist_id, breakdown)) => {
                self.hand_out(subtask_id, &specialist_id, breakdown, now_ms)
            }
            None => self.enqueue(subtask_id, false, now_ms),
        }
    }

    /// Walks a type's queue in order and assigns every subtask someone eligible can take now.
    pub(super) fn drain(&mut self, specialist_type: &str, now_ms: i64) {
        if self
            .queues
            .get(specialist_type)
            .is_none_or(|queue| queue.is_empty())
        {
            return;
        }
        let mut free_slots = self.free_slots_of_type(specialist_type, now_ms);
        let mut cursor: Option<QueueKey> = None;
        while free_slots > 0 {
            let next = self.queues.get(specialist_type).and_then(|queue| {
                queue
                    .iter_after(cursor.as_ref())
                    .next()
                    .map(|(key, subtask_id)| (*key, subtask_id.clone()))
            });
            let Some((key, subtask_id)) = next else {
                break;
            };
            cursor = Some(key);
            let Some(choice) = self
                .subtasks
                .get(&subtask_id)
                .and_then(|record| self.pick(record, now_ms))
            else {
                continue;
            };
            self.take_from_queue(&subtask_id);
            self.hand_out(&subtask_id, &choice.0, choice.1, now_ms);
            free_slots -= 1;
        }
    }

    /// Capacity appeared at one specialist only (completion, release, cancel, registration,
    /// heartbeat back online). The queue invariant says no queued subtask could be served by anyone
    /// else before, so it alone can take new work: the first queued subtask it can serve, in queue
    /// order, found in the queue's indexes of what it could serve (nothing required, or one of
    /// its capabilities), not by walking the queue.
    pub(super) fn drain_for(&mut self, specialist_id: &str, now_ms: i64) {
        let Some(specialist_type) = self.type_of(specialist_id) else {
            return;
        };
        // Per index, the last entry found unservable: later rounds start after it.
        let mut cursors: Vec<Option<QueueKey>> = Vec::new();
        loop {
            let Some(specialist) = self
                .specialists
                .get(specialist_id)
                .filter(|specialist| specialist.free_slots(now_ms) > 0)
            else {
                return;
            };
            let Some(queue) = self
                .queues
                .get(&specialist_type)
                .filter(|queue| !queue.is_empty())
            else {
                return;
            };
            let indexes = queue.indexes_for(&specialist.capabilities);
            cursors.resize(indexes.len(), None);
            let mut chosen: Option<(QueueKey, &str, ScoreBreakdown)> = None;
            for (index, cursor) in indexes.into_iter().zip(cursors.iter_mut()) {
                let lower = cursor.map_or(Bound::Unbounded, Bound::Excluded);
                for (key, subtask_id) in index.range((lower, Bound::Unbounded)) {
                    if chosen.as_ref().is_some_and(|(best, _, _)| best < key) {
                        break;
                    }
                    let Some(record) = self.subtasks.get(subtask_id) else {
                        continue;
                    };
                    let mut best = None;
                    self.consider(record, specialist_id, now_ms, &mut best);
                    if let Some((_, breakdown)) = best {
                        chosen = Some((*key, subtask_id, breakdown));
                        break;
                    }
                    *cursor = Some(*key);
                }
            }
            let Some((_, subtask_id, breakdown)) = chosen else {
                return;
            };
            let subtask_id = subtask_id.to_string();
            self.take_from_queue(&subtask_id);
            self.hand_out(&subtask_id, specialist_id, breakdown, now_ms);
        }
    }

    /// Gives a queued subtask to the best eligible specialist now, if there is one (a subtask that
    /// was just requeued at the head, whose old holder cannot take it).
    pub(super) fn place_queued(&mut self, subtask_id: &str, now_ms: i64) {
        let Some(record) = self
            .subtasks
            .get(subtask_id)
            .filter(|record| record.state == SubtaskState::Queued)
        else {
            return;
        };
        let Some((specialist_id, breakdown)) = self.pick(record, now_ms) else {
            return;
        };
        self.take_from_queue(subtask_id);
        self.hand_out(subtask_id, &specialist_id, breakdown, now_ms);
    }

    pub(super) fn take_from_queue(&mut self, subtask_id: &str) {
        let Some(record) = self.subtasks.get_mut(subtask_id) else {
            return;
        };
        if let Some(key) = record.queue_key.take() {
            if let Some(queue) = self.queues.get_mut(&record.routed_type) {
                queue.remove(
                    key,
                    &record.subtask.spec.required_capabilities,
                    record.enqueued_at_ms,
                );
            }
        }
    }

    /// Frees the holder's slot for a subtask; returns the holder's type.
    pub(super) fn free_holder_slot(
        &mut self,
        specialist_id: &str,
        subtask_id: &str,
    ) -> Option<String> {
        let specialist = self.specialists.get_mut(specialist_id)?;
        specialist.active.remove(subtask_id);
        let specialist_type = specialist.specialist_type.clone();
        self.reindex_free(specialist_id);
        Some(specialist_type)
    }

    /// Puts a subtask whose holder is gone back at the head of its queue, or fails it when out of
    /// attempts. The caller has freed the holder's slot. Returns true when it was requeued.
    pub(super) fn requeue_or_fail(
        &mut self,
        subtask_id: &str,
        why: Requeue,
        detail: String,
        now_ms: i64,
    ) -> bool {
        let max_attempts = self.policy.max_attempts;
        let Some(record) = self.subtasks.get_mut(subtask_id) else {
            return false;
        };
        record.holder = None;
        record.detail = detail;
        if why == Requeue::SpentAttempt {
            if record.attempt >= max_attempts {
                record.detail = format!(
                    "{}; no attempts left ({max_attempts} of {max_attempts} spent)",
                    record.detail
                );
                self.finish(subtask_id, SubtaskState::Failed, None, now_ms);
                return false;
            }
            record.attempt += 1;
        }
        self.enqueue(subtask_id, true, now_ms);
        true
    }

    /// Moves a subtask to a terminal state (detail: Some replaces it) and settles its dependents.
    pub(super) fn finish(
        &mut self,
        subtask_id: &str,
        state: SubtaskState,
        detail: Option<String>,
        now_ms: i64,
    ) {
        debug_assert!(state.is_terminal());
        let Some(record) = self.subtasks.get_mut(subtask_id) else {
            return;
        };
        record.state = state;
        record.finished_at_ms = Some(now_ms);
        if let Some(detail) = detail {
            record.detail = detail;
        }
        self.done.insert((now_ms, subtask_id.to_string()));
        self.settle_dependents(subtask_id, now_ms);
    }

    /// Forgets subtasks that finished longer than the retention ago (the lease sweep calls it).
    pub(super) fn retire_finished(&mut self, now_ms: i64) -> usize {
        let cutoff = now_ms.saturating_sub(self.policy.retention_ms);
        let mut retired = 0;
        while let Some((finished_at, subtask_id)) = self.done.first().cloned() {
            if finished_at > cutoff {
                break;
            }
            self.done.pop_first();
            let finished_then = self.subtasks.get(&subtask_id).is_some_and(|record| {
                record.state.is_terminal() && record.finished_at_ms == Some(finished_at)
            });
            if finished_then {
                self.subtasks.remove(&subtask_id);
                self.dependents.remove(&subtask_id);
                retired += 1;
            }
        }
        retired
    }

    /// After a subtask finished: unblock dependents whose dependencies are all done, or fail them
    /// (transitively) when it did not complete.
    fn settle_dependents(&mut self, finished_id: &str, now_ms: i64) {
        let mut pending: Vec<String> = vec![finished_id.to_string()];
        while let Some(dependency_id) = pending.pop() {
            let Some(dependency_state) =
                self.subtasks.get(&dependency_id).map(|record| record.state)
            else {
                continue;
            };
            let waiting = self.dependents.remove(&dependency_id).unwrap_or_default();
            for dependent_id in waiting {
                let Some(dependent) = self.subtasks.get_mut(&dependent_id) else {
                    continue;
                };
                if dependent.state != SubtaskState::Blocked {
                    continue;
                }
                if dependency_state == SubtaskState::Completed {
                    dependent.waiting_on.remove(&dependency_id);
                    if dependent.waiting_on.is_empty() {
                        self.unblock(&dependent_id);
                        self.route_ready(&dependent_id, now_ms);
                    }
                    continue;
                }
                dependent.state = SubtaskState::Failed;
                dependent.finished_at_ms = Some(now_ms);
                dependent.detail = format!(
                    "dependency {dependency_id} is {}",
                    dependency_state.as_str()
                );
                self.done.insert((now_ms, dependent_id.clone()));
                self.unblock(&dependent_id);
                pending.push(dependent_id);
            }
        }
    }

    pub(super) fn block(&mut self, subtask_id: &str, waiting_on: BTreeSet<String>) {
        let Some(record) = self.subtasks.get_mut(subtask_id) else {
            return;
        };
        record.state = SubtaskState::Blocked;
        record.waiting_on = waiting_on.clone();
        let routed_type = record.routed_type.clone();
        for dependency_id in waiting_on {
            self.dependents
                .entry(dependency_id)
                .or_default()
                .push(subtask_id.to_string());
        }
        self.blocked_by_type
            .entry(routed_type)
            .or_default()
            .insert(subtask_id.to_string());
    }

    /// Forgets that a subtask is blocked (its state is set by the caller).
    pub(super) fn unblock(&mut self, subtask_id: &str) {
        let Some(record) = self.subtasks.get_mut(subtask_id) else {
            return;
        };
        record.waiting_on.clear();
        if let Some(blocked) = self.blocked_by_type.get_mut(&record.routed_type) {
            blocked.remove(subtask_id);
        }
    }
}
