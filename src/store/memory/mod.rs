//! The embedded in-memory store: every operation under one lock, so each is atomic by construction.

mod commands;
mod index;
#[cfg(test)]
mod invariants;
mod queries;
mod queue;
mod ranked;
mod routing;
mod state;

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

use crate::domain::learned::{CandidateInfo, LearnedFactors};
use crate::domain::performance::PerformanceSummary;
use crate::domain::policy::RoutingPolicy;
use crate::domain::specialist::{Availability, Registration, Specialist};
use crate::domain::subtask::{
    AssignmentView, CompletionReport, ReleaseRequest, Subtask, SubtaskSpec,
};
use crate::store::clock::{Clock, SystemClock};
use crate::store::{
    ExpirySummary, Feed, FeedItem, InFlight, Page, PageRequest, QueuePage, QueuePosition,
    Registered, Store, StoreError, StoreResult, TypeStats,
};

use state::{State, FEED_CAPACITY};

pub struct MemoryStore {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
}

impl MemoryStore {
    pub fn new(policy: RoutingPolicy) -> Self {
        Self::with_clock(policy, Arc::new(SystemClock))
    }

    pub fn with_clock(policy: RoutingPolicy, clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Mutex::new(State::new(policy)),
            clock,
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn register(&self, registration: Registration) -> StoreResult<Registered> {
        let now_ms = self.now_ms();
        self.state.lock().register(registration, now_ms)
    }

    async fn heartbeat(
        &self,
        specialist_id: &str,
        availability: Option<Availability>,
    ) -> StoreResult<Specialist> {
        let now_ms = self.now_ms();
        self.state
            .lock()
            .heartbeat(specialist_id, availability, now_ms)
    }

    async fn deregister(&self, specialist_id: &str) -> StoreResult<Vec<String>> {
        let now_ms = self.now_ms();
        self.state.lock().deregister(specialist_id, now_ms)
    }

    async fn get_specialist(&self, specialist_id: &str) -> StoreResult<Specialist> {
        self.state.lock().get_specialist(specialist_id)
    }

    async fn list_specialists(
        &self,
        specialist_type: Option<&str>,
        page: PageRequest,
    ) -> StoreResult<Page<Specialist>> {
        Ok(self.state.lock().list_specialists(specialist_type, page))
    }

    async fn assign(&self, spec: SubtaskSpec) -> StoreResult<AssignmentView> {
        let now_ms = self.now_ms();
        self.state.lock().assign(spec, now_ms)
    }

    async fn assign_with(
        &self,
        spec: SubtaskSpec,
        learned: Option<LearnedFactors>,
    ) -> StoreResult<AssignmentView> {
        let now_ms = self.now_ms();
        self.state.lock().assign_with(spec, learned, now_ms)
    }

    async fn candidates(&self, spec: &SubtaskSpec) -> StoreResult<Vec<CandidateInfo>> {
        let now_ms = self.now_ms();
        Ok(self.state.lock().candidates(spec, now_ms))
    }

    async fn get_assignment(&self, subtask_id: &str) -> StoreResult<(AssignmentView, Subtask)> {
        self.state.lock().get_assignment(subtask_id)
    }

    async fn release(&self, request: ReleaseRequest) -> StoreResult<AssignmentView> {
        let now_ms = self.now_ms();
        self.state.lock().release(request, now_ms)
    }

    async fn cancel(&self, subtask_id: &str, reason: &str) -> StoreResult<AssignmentView> {
        let now_ms = self.now_ms();
        self.state.lock().cancel(subtask_id, reason, now_ms)
    }

    async fn report_completion(&self, report: CompletionReport) -> StoreResult<AssignmentView> {
        let now_ms = self.now_ms();
        self.state.lock().report_completion(report, now_ms)
    }

    async fn queue_position(&self, subtask_id: &str) -> StoreResult<QueuePosition> {
        self.state.lock().queue_position(subtask_id)
    }

    async fn list_queue(&self, specialist_type: &str, page: PageRequest) -> StoreResult<QueuePage> {
        self.state.lock().list_queue(specialist_type, page)
    }

    async fn queue_stats(&self, specialist_type: Option<&str>) -> StoreResult<Vec<TypeStats>> {
        let now_ms = self.now_ms();
        Ok(self.state.lock().queue_stats(specialist_type, now_ms))
    }

    async fn performance(&self, specialist_id: &str) -> StoreResult<PerformanceSummary> {
        self.state.lock().performance_summary(specialist_id)
    }

    async fn expire_leases(&self) -> StoreResult<ExpirySummary> {
        let now_ms = self.now_ms();
        Ok(self.state.lock().expire_leases(now_ms))
    }

    async fn subscribe(&self, specialist_id: &str) -> StoreResult<Feed> {
        let receiver = {
            let mut state = self.state.lock();
            if !state.specialists.contains_key(specialist_id) {
                return Err(StoreError::specialist_not_found(specialist_id));
            }
            state
                .feeds
                .entry(specialist_id.to_string())
                .or_insert_with(|| broadcast::channel(FEED_CAPACITY).0)
                .subscribe()
        };
        let feed = BroadcastStream::new(receiver).map(|item| match item {
            Ok(item) => item,
            Err(BroadcastStreamRecvError::Lagged(_)) => FeedItem::Lagged,
        });
        Ok(feed.boxed())
    }

    async fn in_flight(&self, specialist_id: &str) -> StoreResult<InFlight> {
        self.state.lock().in_flight(specialist_id)
    }
}
