//! What the store's reads and steps return: plain data, the same from every store.

use super::specialist::{Availability, Specialist};
use super::subtask::WatchEvent;

/// A page request: at most `size` items after the opaque `token` of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: usize,
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub specialist: Specialist,
    /// False when an existing registration was updated.
    pub created: bool,
    /// The incarnation now live.
    pub incarnation: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueuePosition {
    pub subtask_id: String,
    pub routed_type: String,
    pub position: u64,
    pub depth: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueuedEntry {
    pub subtask_id: String,
    pub position: u64,
    pub priority: i32,
    pub attempt: u32,
    pub required_capabilities: Vec<String>,
    pub enqueued_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueuePage {
    pub entries: Vec<QueuedEntry>,
    pub depth: u64,
    pub next_page_token: Option<String>,
}

/// Specialists of one type by availability; a lapsed lease counts as offline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AvailabilityCounts {
    pub online: u32,
    pub idle: u32,
    pub busy: u32,
    pub away: u32,
    pub offline: u32,
}

impl AvailabilityCounts {
    pub fn add(&mut self, availability: Availability) {
        match availability {
            Availability::Online => self.online += 1,
            Availability::Idle => self.idle += 1,
            Availability::Busy => self.busy += 1,
            Availability::Away => self.away += 1,
            Availability::Offline => self.offline += 1,
        }
    }

    pub fn get(&self, availability: Availability) -> u32 {
        match availability {
            Availability::Online => self.online,
            Availability::Idle => self.idle,
            Availability::Busy => self.busy,
            Availability::Away => self.away,
            Availability::Offline => self.offline,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TypeStats {
    pub specialist_type: String,
    pub depth: u64,
    pub oldest_wait_ms: i64,
    pub specialists: AvailabilityCounts,
    pub active_assignments: u64,
    pub blocked: u64,
    pub free_capacity: u64,
}

/// What one lease sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpirySummary {
    pub expired_specialists: Vec<String>,
    pub requeued_subtasks: usize,
    pub failed_subtasks: usize,
}

/// A specialist's in-flight work as of one instant, with the epoch counter of its type at that
/// instant: every assignment with an epoch up to `epoch` happened before the snapshot, so a live
/// ASSIGNED event carrying such an epoch is already reflected in `events` (held, or finished).
#[derive(Debug, Clone, PartialEq)]
pub struct InFlight {
    /// The current assignments, oldest epoch first, as ASSIGNED events.
    pub events: Vec<WatchEvent>,
    /// The type's epoch counter when `events` was read.
    pub epoch: u64,
    /// The specialist's incarnation when `events` was read (None: a registration from before
    /// incarnations, restored without one).
    pub incarnation: Option<String>,
}
