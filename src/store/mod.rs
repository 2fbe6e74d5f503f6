//! The one storage interface every backend implements, atomically, with one clock and fencing epochs.
//! The rules are in docs/rules.md.

pub mod breaker;
pub mod clock;
pub mod memory;
pub mod postgres;
pub mod production;
pub mod redis;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::domain::learned::{CandidateInfo, LearnedFactors};
use crate::domain::performance::PerformanceSummary;
use crate::domain::specialist::{Availability, Registration, Specialist};
use crate::domain::subtask::{
    AssignmentView, CompletionReport, ReleaseRequest, Subtask, SubtaskSpec, WatchEvent,
};

pub use crate::domain::error::{Precondition, StoreError, StoreResult};
pub use crate::domain::reads::{
    AvailabilityCounts, ExpirySummary, InFlight, Page, PageRequest, QueuePage, QueuePosition,
    QueuedEntry, Registered, TypeStats,
};

/// One item of a specialist's feed.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    Event(Box<WatchEvent>),
    /// The subscriber fell behind and missed events: re-read `in_flight`.
    Lagged,
    /// The specialist's incarnation is now this one: streams of any other end.
    Incarnation(String),
}

pub type Feed = BoxStream<'static, FeedItem>;

/// Every operation is atomic; see docs/rules.md for the rules each one applies.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Short name for logs and metrics ("embedded").
    fn backend(&self) -> &'static str;

    async fn register(&self, registration: Registration) -> StoreResult<Registered>;
    /// FAILED_PRECONDITION (`IncarnationEnded`) unless `incarnation` is the current one.
    async fn heartbeat(
        &self,
        specialist_id: &str,
        incarnation: &str,
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
