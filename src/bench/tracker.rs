//! Follows each subtask of the run from Assign to completion, matching the Assign reply (caller side)
//! with the stream message (agent side) by subtask id, whichever comes first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::stats::{Counter, Stats};

/// Which part of the run a subtask belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Submitted before the agents started; measured by drain time only.
    Backlog,
    /// Submitted while the agents run; measured by every histogram.
    Measured,
}

/// What the Assign reply said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replied {
    Assigned,
    Queued,
    Other,
}

#[derive(Debug, Clone, Copy)]
enum Reply {
    Pending,
    Got(Replied, Instant),
}

struct Entry {
    phase: Phase,
    sent: Instant,
    reply: Reply,
    delivered: Option<Instant>,
    /// Completed before its Assign reply arrived; removed when the reply comes.
    completed: bool,
}

/// Counts of one phase.
#[derive(Default)]
pub struct PhaseCounts {
    /// Assign replies (any state).
    pub accepted: Counter,
    /// Accepted in a state that is never delivered (BLOCKED, FAILED, finished before).
    pub undeliverable: Counter,
    pub delivered: Counter,
    pub completed: Counter,
    last_delivered: Latest,
    last_completed: Latest,
}

impl PhaseCounts {
    /// When the last first-delivery of this phase arrived.
    pub fn last_delivered(&self) -> Option<Instant> {
        self.last_delivered.get()
    }

    /// When the last completion of this phase was acknowledged.
    pub fn last_completed(&self) -> Option<Instant> {
        self.last_completed.get()
    }

    /// Accepted subtasks that will be delivered.
    pub fn deliverable(&self) -> u64 {
        self.accepted.get().saturating_sub(self.undeliverable.get())
    }
}

/// The latest of the instants it was shown.
#[derive(Default)]
struct Latest(Mutex<Option<Instant>>);

impl Latest {
    fn see(&self, at: Instant) {
        let mut latest = self.0.lock();
        if latest.is_none_or(|seen| seen < at) {
            *latest = Some(at);
        }
    }

    fn get(&self) -> Option<Instant> {
        *self.0.lock()
    }
}

/// Subtasks in flight, keyed by id.
pub struct Tracker {
    stats: Arc<Stats>,
    entries: Mutex<HashMap<String, Entry>>,
    pub backlog: PhaseCounts,
    pub measured: PhaseCounts,
}

impl Tracker {
    pub fn new(stats: Arc<Stats>) -> Self {
        Self {
            stats,
            entries: Mutex::new(HashMap::new()),
            backlog: PhaseCounts::default(),
            measured: PhaseCounts::default(),
        }
    }

    fn counts(&self, phase: Phase) -> &PhaseCounts {
        match phase {
            Phase::Backlog => &self.backlog,
            Phase::Measured => &self.measured,
        }
    }

    /// Called just before the Assign request goes out (a delivery can beat the reply).
    pub fn sent(&self, subtask_id: &str, phase: Phase, at: Instant) {
        self.stats.sent.incr();
        self.entries.lock().insert(
            subtask_id.to_string(),
            Entry {
                phase,
                sent: at,
                reply: Reply::Pending,
                delivered: None,
                completed: false,
            },
        );
    }

    /// The Assign call failed: the subtask is not followed any more.
    pub fn failed(&self, subtask_id: &str) {
        self.entries.lock().remove(subtask_id);
    }

    /// The Assign reply arrived.
    pub fn replied(&self, subtask_id: &str, replied: Replied, at: Instant) {
        let counter = match replied {
            Replied::Assigned => &self.stats.replied_assigned,
            Replied::Queued => &self.stats.replied_queued,
            Replied::Other => &self.stats.replied_other,
        };
        counter.incr();
        let mut entries = self.entries.lock();
        let Some(entry) = entries.get_mut(subtask_id) else {
            return;
        };
        let counts = self.counts(entry.phase);
        counts.accepted.incr();
        if replied == Replied::Other {
            counts.undeliverable.incr();
        }
        entry.reply = Reply::Got(replied, at);
        if entry.delivered.is_some() && replied != Replied::Other {
            self.stats.delivered_before_reply.incr();
            if entry.phase == Phase::Measured {
                match replied {
                    Replied::Assigned => self.stats.deliver.record_zero(),
                    _ => self.stats.queue_wait.record_zero(),
                }
            }
        }
        // Other: nothing will be delivered (BLOCKED, FAILED, or finished in an earlier run).
        if entry.completed || replied == Replied::Other {
            entries.remove(subtask_id);
        }
    }

    /// An ASSIGNED stream message arrived. False when the subtask is not this run's or was
    /// delivered already (a replay after a reconnect).
    pub fn delivered(&self, subtask_id: &str, at: Instant) -> bool {
        let mut entries = self.entries.lock();
        let Some(entry) = entries.get_mut(subtask_id) else {
            return false;
        };
        if entry.delivered.is_some() {
            return false;
        }
        entry.delivered = Some(at);
        self.stats.delivered.incr();
        let counts = self.counts(entry.phase);
        counts.delivered.incr();
        counts.last_delivered.see(at);
        if let (Reply::Got(replied, reply_at), Phase::Measured) = (entry.reply, entry.phase) {
            let waited = at.saturating_duration_since(reply_at);
            match replied {
                Replied::Assigned => self.stats.deliver.record(waited),
                _ => self.stats.queue_wait.record(waited),
            }
        }
        true
    }

    /// The server acknowledged the completion: the cycle is over.
    pub fn completed(&self, subtask_id: &str, at: Instant) {
        let (phase, sent) = {
            let mut entries = self.entries.lock();
            let Some(entry) = entries.get_mut(subtask_id) else {
                return;
            };
            if entry.completed {
                return;
            }
            let found = (entry.phase, entry.sent);
            if matches!(entry.reply, Reply::Pending) {
                entry.completed = true;
            } else {
                entries.remove(subtask_id);
            }
            found
        };
        self.stats.completed.incr();
        let counts = self.counts(phase);
        counts.completed.incr();
        counts.last_completed.see(at);
        if phase == Phase::Measured {
            self.stats.cycle.record(at.saturating_duration_since(sent));
        }
    }

    /// Subtasks sent and not completed (or failed) yet.
    pub fn outstanding(&self) -> usize {
        self.entries.lock().len()
    }
}
