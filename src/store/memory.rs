//! The embedded store: the rules' state machine (machine/) behind one lock, so each step is atomic
//! by construction, and the fan-out of the events a step leaves to the watchers of each
//! specialist, still under the lock so they arrive in step order.

use std::collections::HashMap;
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
use crate::machine::{Machine, MachineEvent};
use crate::store::clock::{Clock, SystemClock};
use crate::store::{
    ExpirySummary, Feed, FeedItem, InFlight, Page, PageRequest, QueuePage, QueuePosition,
    Registered, Store, StoreResult, TypeStats,
};

/// Events a subscriber may fall behind by before it is told to re-read its in-flight work.
const FEED_CAPACITY: usize = 1024;

struct Inner {
    machine: Machine,
    /// Specialist id -> its watchers.
    feeds: HashMap<String, broadcast::Sender<FeedItem>>,
}

impl Inner {
    /// Hands the step's events to their watchers; a specialist nobody watches any more is
    /// unwatched.
    fn fan_out(&mut self) {
        for event in self.machine.take_events() {
            match event {
                MachineEvent::Watch {
                    specialist_id,
                    event,
                } => {
                    let Some(sender) = self.feeds.get(&specialist_id) else {
                        self.machine.unwatch(&specialist_id);
                        continue;
                    };
                    if sender.send(FeedItem::Event(event)).is_err() {
                        self.feeds.remove(&specialist_id);
                        self.machine.unwatch(&specialist_id);
                    }
                }
                MachineEvent::Ended { specialist_id } => {
                    // Dropping the sender ends every watch stream of this specialist.
                    self.feeds.remove(&specialist_id);
                }
                MachineEvent::Incarnation {
                    specialist_id,
                    incarnation,
                } => {
                    if let Some(sender) = self.feeds.get(&specialist_id) {
                        let _ = sender.send(FeedItem::Incarnation(incarnation));
                    }
                }
            }
        }
    }
}

pub struct MemoryStore {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
}

impl MemoryStore {
    pub fn new(policy: RoutingPolicy) -> Self {
        Self::with_clock(policy, Arc::new(SystemClock))
    }

    pub fn with_clock(policy: RoutingPolicy, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                machine: Machine::new(policy),
                feeds: HashMap::new(),
            }),
            clock,
        }
    }

    /// One step of the machine at the store's time, then its events handed out.
    fn step<T>(&self, apply: impl FnOnce(&mut Machine, i64) -> T) -> T {
        let now_ms = self.clock.now_ms();
        let mut inner = self.inner.lock();
        let result = apply(&mut inner.machine, now_ms);
        inner.fan_out();
        result
    }

    /// A read at the store's time (reads leave no events).
    fn read<T>(&self, apply: impl FnOnce(&Machine, i64) -> T) -> T {
        let now_ms = self.clock.now_ms();
        apply(&self.inner.lock().machine, now_ms)
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn register(&self, registration: Registration) -> StoreResult<Registered> {
        self.step(|machine, now| machine.register(registration, now))
    }

    async fn heartbeat(
        &self,
        specialist_id: &str,
        incarnation: &str,
        availability: Option<Availability>,
    ) -> StoreResult<Specialist> {
        self.step(|machine, now| machine.heartbeat(specialist_id, incarnation, availability, now))
    }

    async fn deregister(&self, specialist_id: &str) -> StoreResult<Vec<String>> {
        self.step(|machine, now| machine.deregister(specialist_id, now))
    }

    async fn get_specialist(&self, specialist_id: &str) -> StoreResult<Specialist> {
        self.read(|machine, _| machine.get_specialist(specialist_id))
    }

    async fn list_specialists(
        &self,
        specialist_type: Option<&str>,
        page: PageRequest,
    ) -> StoreResult<Page<Specialist>> {
        Ok(self.read(|machine, _| machine.list_specialists(specialist_type, page)))
    }

    async fn assign(&self, spec: SubtaskSpec) -> StoreResult<AssignmentView> {
        self.step(|machine, now| machine.assign(spec, now))
    }

    async fn assign_with(
        &self,
        spec: SubtaskSpec,
        learned: Option<LearnedFactors>,
    ) -> StoreResult<AssignmentView> {
        self.step(|machine, now| machine.assign_with(spec, learned, now))
    }

    async fn candidates(&self, spec: &SubtaskSpec) -> StoreResult<Vec<CandidateInfo>> {
        Ok(self.read(|machine, now| machine.candidates(spec, now)))
    }

    async fn get_assignment(&self, subtask_id: &str) -> StoreResult<(AssignmentView, Subtask)> {
        self.read(|machine, _| machine.get_assignment(subtask_id))
    }

    async fn release(&self, request: ReleaseRequest) -> StoreResult<AssignmentView> {
        self.step(|machine, now| machine.release(request, now))
    }

    async fn cancel(&self, subtask_id: &str, reason: &str) -> StoreResult<AssignmentView> {
        self.step(|machine, now| machine.cancel(subtask_id, reason, now))
    }

    async fn report_completion(&self, report: CompletionReport) -> StoreResult<AssignmentView> {
        self.step(|machine, now| machine.report_completion(report, now))
    }

    async fn queue_position(&self, subtask_id: &str) -> StoreResult<QueuePosition> {
        self.read(|machine, _| machine.queue_position(subtask_id))
    }

    async fn list_queue(&self, specialist_type: &str, page: PageRequest) -> StoreResult<QueuePage> {
        self.read(|machine, _| machine.list_queue(specialist_type, page))
    }

    async fn queue_stats(&self, specialist_type: Option<&str>) -> StoreResult<Vec<TypeStats>> {
        Ok(self.read(|machine, now| machine.queue_stats(specialist_type, now)))
    }

    async fn performance(&self, specialist_id: &str) -> StoreResult<PerformanceSummary> {
        self.read(|machine, _| machine.performance_summary(specialist_id))
    }

    async fn expire_leases(&self) -> StoreResult<ExpirySummary> {
        Ok(self.step(|machine, now| machine.expire_leases(now)))
    }

    async fn subscribe(&self, specialist_id: &str) -> StoreResult<Feed> {
        let receiver = {
            let mut inner = self.inner.lock();
            inner.machine.watch(specialist_id)?;
            inner
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
        self.read(|machine, _| machine.in_flight(specialist_id))
    }
}
