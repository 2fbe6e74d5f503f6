//! The one storage interface every backend implements, atomically, with one clock and fencing epochs.
//! The rules are in README.md beside this file.

pub mod breaker;
pub mod clock;
pub mod error;
pub mod memory;
pub mod postgres;
pub mod redis;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::domain::learned::{CandidateInfo, LearnedFactors};
use crate::domain::performance::PerformanceSummary;
use crate::domain::specialist::{Availability, Registration, Specialist};
use crate::domain::subtask::{
    AssignmentView, CompletionReport, ReleaseRequest, Subtask, SubtaskSpec, WatchEvent,
};

pub use error::{Precondition, StoreError};

pub type StoreResult<T> = Result<T, StoreError>;

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
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
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

/// One item of a specialist's feed.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    Event(Box<WatchEvent>),
    /// The subscriber fell behind and missed events: re-read `in_flight`.
    Lagged,
}

pub type Feed = BoxStream<'static, FeedItem>;

/// A specialist's in-flight work as of one instant, with the epoch counter of its type at that
/// instant: every assignment with an epoch up to `epoch` happened before the snapshot, so a live
/// ASSIGNED event carrying such an epoch is already reflected in `events` (held, or finished).
#[derive(Debug, Clone, PartialEq)]
pub struct InFlight {
    /// The current assignments, oldest epoch first, as ASSIGNED events.
    pub events: Vec<WatchEvent>,
    /// The type's epoch counter when `events` was read.
    pub epoch: u64,
}

/// Every operation is atomic; see README.md for the rules each one applies.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Short name for logs and metrics ("embedded").
    fn backend(&self) -> &'static str;

    async fn register(&self, registration: Registration) -> StoreResult<Registered>;
    async fn heartbeat(
        &self,
        specialist_id: &str,
        availability: Option<Availability>,
    ) -> StoreResult<Specialist>;
    /// Returns the ids of the subtasks it held, now requeued (or reassigned).
    async fn deregister(&self, specialist_id: &str) -> StoreResult<Vec<String>>;
    async fn get_specialist(&self, specialist_id: &str) -> StoreResult<Specialist>;
    async fn list_specialists(
        &self,
        specialist_type: Option<&str>,
        page: PageRequest,
    ) -> StoreResult<Page<Specialist>>;

    async fn assign(&self, spec: SubtaskSpec) -> StoreResult<AssignmentView>;
    async fn get_assignment(&self, subtask_id: &str) -> StoreResult<(AssignmentView, Subtask)>;
    async fn release(&self, request: ReleaseRequest) -> StoreResult<AssignmentView>;
    async fn cancel(&self, subtask_id: &str, reason: &str) -> StoreResult<AssignmentView>;
    async fn report_completion(&self, report: CompletionReport) -> StoreResult<AssignmentView>;

    async fn queue_position(&self, subtask_id: &str) -> StoreResult<QueuePosition>;
    async fn list_queue(&self, specialist_type: &str, page: PageRequest) -> StoreResult<QueuePage>;
    /// One entry per configured type, or just `specialist_type`.
    async fn queue_stats(&self, specialist_type: Option<&str>) -> StoreResult<Vec<TypeStats>>;

    async fn performance(&self, specialist_id: &str) -> StoreResult<PerformanceSummary>;

    /// Marks lapsed specialists OFFLINE and requeues (or fails) their subtasks; safe to run any time.
    async fn expire_leases(&self) -> StoreResult<ExpirySummary>;

    /// Events for one specialist from now on. Subscribe before reading `in_flight`.
    async fn subscribe(&self, specialist_id: &str) -> StoreResult<Feed>;
    /// The specialist's current assignments, oldest epoch first, as ASSIGNED events, with the
    /// epoch counter of its type at the same instant (see `InFlight`).
    async fn in_flight(&self, specialist_id: &str) -> StoreResult<InFlight>;

    /// The specialists a new subtask could be handed to right now (eligible, in the type it would be
    /// routed to), with what a learned scorer needs to know of them. Empty when the subtask exists
    /// already or waits on dependencies. A store without learned scoring returns none, and Assign
    /// then scores by the rules alone.
    async fn candidates(&self, spec: &SubtaskSpec) -> StoreResult<Vec<CandidateInfo>> {
        let _ = spec;
        Ok(Vec::new())
    }

    /// `assign`, scoring with learned performance factors (see `LearnedFactors`) instead of the
    /// rule-based window where it has them; the pick stays one atomic step. A store without learned
    /// scoring ignores them.
    async fn assign_with(
        &self,
        spec: SubtaskSpec,
        learned: Option<LearnedFactors>,
    ) -> StoreResult<AssignmentView> {
        let _ = learned;
        self.assign(spec).await
    }
}
