//! The machine's data: specialists, subtasks, per-type queues, and the indexes between them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::domain::error::{StoreError, StoreResult};
use crate::domain::learned::LearnedFactors;
use crate::domain::performance::PerformanceRecord;
use crate::domain::policy::RoutingPolicy;
use crate::domain::specialist::{Availability, Specialist};
use crate::domain::subtask::{
    AssignmentView, Holder, Subtask, SubtaskState, WatchEvent, WatchEventKind,
};

use super::index::SpecialistIndex;
use super::queue::TypeQueue;

/// Order inside one type's queue: higher priority first, then by sequence (head inserts are negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct QueueKey {
    pub priority: Reverse<i32>,
    pub seq: i64,
}

impl QueueKey {
    pub(super) fn to_token(self) -> String {
        format!("{}:{}", self.priority.0, self.seq)
    }

    pub(super) fn from_token(token: &str) -> Option<Self> {
        let (priority, seq) = token.split_once(':')?;
        Some(QueueKey {
            priority: Reverse(priority.parse().ok()?),
            seq: seq.parse().ok()?,
        })
    }
}

#[derive(Debug, Clone)]
pub(super) struct SpecialistRecord {
    pub specialist_id: String,
    pub specialist_type: String,
    pub capabilities: Vec<String>,
    pub max_concurrency: u32,
    pub labels: BTreeMap<String, String>,
    pub availability: Availability,
    pub registered_at_ms: i64,
    pub last_heartbeat_at_ms: i64,
    pub lease_expires_at_ms: i64,
    /// Subtask ids it holds.
    pub active: BTreeSet<String>,
    /// Store-wide hand-out counter value of its latest assignment (0: never).
    pub last_assigned_seq: u64,
    /// The live process's session (see `Incarnation`).
    pub incarnation: String,
}

impl SpecialistRecord {
    /// Not OFFLINE and lease alive: it may receive work if it has room.
    pub(super) fn can_take_work(&self, now_ms: i64) -> bool {
        self.availability != Availability::Offline && self.lease_expires_at_ms > now_ms
    }

    pub(super) fn free_slots(&self, now_ms: i64) -> u64 {
        if !self.can_take_work(now_ms) {
            return 0;
        }
        u64::from(self.max_concurrency).saturating_sub(self.active.len() as u64)
    }
}

#[derive(Debug, Clone)]
pub(super) struct SubtaskRecord {
    pub subtask: Subtask,
    pub state: SubtaskState,
    pub attempt: u32,
    pub routed_type: String,
    pub holder: Option<Holder>,
    pub queue_key: Option<QueueKey>,
    pub enqueued_at_ms: i64,
    pub waiting_on: BTreeSet<String>,
    /// Specialists that released it; they are not offered it again.
    pub excluded: Vec<String>,
    pub detail: String,
    pub finished_at_ms: Option<i64>,
    /// Learned performance factors it was submitted with; every pick for it uses them.
    pub learned: Option<Arc<LearnedFactors>>,
}

pub struct Machine {
    pub(super) policy: RoutingPolicy,
    pub(super) specialists: BTreeMap<String, SpecialistRecord>,
    pub(super) specialists_by_type: HashMap<String, BTreeSet<String>>,
    pub(super) subtasks: HashMap<String, SubtaskRecord>,
    pub(super) queues: HashMap<String, TypeQueue>,
    /// Dependency id -> subtasks BLOCKED on it.
    pub(super) dependents: HashMap<String, Vec<String>>,
    pub(super) blocked_by_type: HashMap<String, BTreeSet<String>>,
    pub(super) performance: HashMap<String, PerformanceRecord>,
    pub(super) minted_per_type: HashMap<String, u64>,
    /// Per specialist type: epochs, queue sequences and assignment sequences are counted per type
    /// (a type is one Redis Cluster slot in the production store; see lua/README.md).
    pub(super) counters: HashMap<String, TypeCounters>,
    /// Specialists someone watches: only their events are built.
    pub(super) watched: HashSet<String>,
    /// Events of the current step, for the caller to hand out (take_events).
    pub(super) events: Vec<MachineEvent>,
    pub(super) index: SpecialistIndex,
    /// (finished at, id) of finished subtasks: the retention forgets them in this order.
    pub(super) done: BTreeSet<(i64, String)>,
}

/// One type's counters (the production store keeps the same ones in the type's slot).
#[derive(Debug, Default)]
pub(super) struct TypeCounters {
    pub epoch: u64,
    pub assign_seq: u64,
    pub tail_seq: i64,
    pub head_seq: i64,
}

/// What a step tells watchers, in step order; the machine never sends anything itself.
#[derive(Debug, Clone, PartialEq)]
pub enum MachineEvent {
    /// An ASSIGNED or REVOKED event for one specialist's watchers.
    Watch {
        specialist_id: String,
        event: Box<WatchEvent>,
    },
    /// The specialist left: its watch streams end.
    Ended { specialist_id: String },
    /// A new incarnation started: streams of any other end.
    Incarnation {
        specialist_id: String,
        incarnation: String,
    },
}

impl Machine {
    pub fn new(policy: RoutingPolicy) -> Self {
        Self {
            policy,
            specialists: BTreeMap::new(),
            specialists_by_type: HashMap::new(),
            subtasks: HashMap::new(),
            queues: HashMap::new(),
            dependents: HashMap::new(),
            blocked_by_type: HashMap::new(),
            performance: HashMap::new(),
            minted_per_type: HashMap::new(),
            counters: HashMap::new(),
            watched: HashSet::new(),
            events: Vec::new(),
            index: SpecialistIndex::default(),
            done: BTreeSet::new(),
        }
    }

    pub(super) fn performance_factor(&self, specialist_id: &str) -> f64 {
        self.performance
            .get(specialist_id)
            .map(PerformanceRecord::performance_factor)
            .unwrap_or(crate::domain::performance::PERFORMANCE_PRIOR)
    }

    pub(super) fn specialist_view(&self, record: &SpecialistRecord) -> Specialist {
        Specialist {
            specialist_id: record.specialist_id.clone(),
            specialist_type: record.specialist_type.clone(),
            capabilities: record.capabilities.clone(),
            max_concurrency: record.max_concurrency,
            labels: record.labels.clone(),
            availability: record.availability,
            active_assignments: record.active.len() as u32,
            registered_at_ms: record.registered_at_ms,
            last_heartbeat_at_ms: record.last_heartbeat_at_ms,
            lease_expires_at_ms: record.lease_expires_at_ms,
            performance: self.performance_factor(&record.specialist_id),
        }
    }

    /// 1-based rank of a queued subtask in its queue.
    pub(super) fn queue_rank(&self, routed_type: &str, key: QueueKey) -> u64 {
        self.queues
            .get(routed_type)
            .map_or(0, |queue| queue.position(key))
    }

    pub(super) fn assignment_view(&self, record: &SubtaskRecord) -> AssignmentView {
        let queue_position = match (record.state, record.queue_key) {
            (SubtaskState::Queued, Some(key)) => Some(self.queue_rank(&record.routed_type, key)),
            _ => None,
        };
        AssignmentView {
            subtask_id: record.subtask.spec.subtask_id.clone(),
            state: record.state,
            holder: record.holder.clone(),
            queue_position,
            attempt: record.attempt,
            routed_type: record.routed_type.clone(),
            waiting_on: record.waiting_on.iter().cloned().collect(),
            detail: record.detail.clone(),
            created_at_ms: record.subtask.created_at_ms,
            finished_at_ms: record.finished_at_ms,
        }
    }

    pub(super) fn view_of(&self, subtask_id: &str) -> Option<AssignmentView> {
        self.subtasks
            .get(subtask_id)
            .map(|record| self.assignment_view(record))
    }

    /// Someone watches this specialist from now on: its events are kept for take_events.
    pub fn watch(&mut self, specialist_id: &str) -> StoreResult<()> {
        if !self.specialists.contains_key(specialist_id) {
            return Err(StoreError::specialist_not_found(specialist_id));
        }
        self.watched.insert(specialist_id.to_string());
        Ok(())
    }

    /// Nobody watches this specialist any more.
    pub fn unwatch(&mut self, specialist_id: &str) {
        self.watched.remove(specialist_id);
    }

    /// The events of the steps since the last call, in order.
    pub fn take_events(&mut self) -> Vec<MachineEvent> {
        std::mem::take(&mut self.events)
    }

    /// An event for the specialist's watchers, in step order.
    pub(super) fn publish(&mut self, specialist_id: &str, kind: WatchEventKind, subtask_id: &str) {
        if !self.watched.contains(specialist_id) {
            return;
        }
        let Some(record) = self.subtasks.get(subtask_id) else {
            return;
        };
        let event = WatchEvent {
            kind,
            assignment: self.assignment_view(record),
            subtask: record.subtask.clone(),
        };
        self.events.push(MachineEvent::Watch {
            specialist_id: specialist_id.to_string(),
            event: Box::new(event),
        });
    }

    /// Tells a former holder that its subtask was taken away; the event carries the new state with
    /// the revoked holder (so the epoch it must stop working under).
    pub(super) fn publish_revoked(&mut self, revoked: Holder, subtask_id: &str) {
        if !self.watched.contains(&revoked.specialist_id) {
            return;
        }
        let specialist_id = revoked.specialist_id.clone();
        let Some(record) = self.subtasks.get(subtask_id) else {
            return;
        };
        let mut assignment = self.assignment_view(record);
        assignment.holder = Some(revoked);
        let event = WatchEvent {
            kind: WatchEventKind::Revoked,
            assignment,
            subtask: record.subtask.clone(),
        };
        self.events.push(MachineEvent::Watch {
            specialist_id,
            event: Box::new(event),
        });
    }

    fn counters_of(&mut self, specialist_type: &str) -> &mut TypeCounters {
        if !self.counters.contains_key(specialist_type) {
            self.counters
                .insert(specialist_type.to_string(), TypeCounters::default());
        }
        self.counters
            .get_mut(specialist_type)
            .expect("inserted above")
    }

    /// A fresh epoch and assignment sequence for a hand-out to a specialist of this type.
    pub(super) fn next_epoch_and_seq(&mut self, specialist_type: &str) -> (u64, u64) {
        let counters = self.counters_of(specialist_type);
        counters.epoch += 1;
        counters.assign_seq += 1;
        (counters.epoch, counters.assign_seq)
    }

    pub(super) fn next_queue_key(
        &mut self,
        specialist_type: &str,
        priority: i32,
        at_head: bool,
    ) -> QueueKey {
        let counters = self.counters_of(specialist_type);
        let seq = if at_head {
            counters.head_seq -= 1;
            counters.head_seq
        } else {
            counters.tail_seq += 1;
            counters.tail_seq
        };
        QueueKey {
            priority: Reverse(priority),
            seq,
        }
    }
}
