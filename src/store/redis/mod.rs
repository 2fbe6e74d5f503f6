//! The production store's live half: every decision is one function of the Lua library (`lua/`)
//! run atomically in Redis, so any number of replicas behave as one. This module passes
//! arguments in, turns the functions' flat replies into domain values and their refusal codes into
//! typed errors, and guards Redis with a circuit breaker.
//! Key layout and rules: `lua/README.md`; semantics: `docs/rules.md`.

mod call;
pub mod codec;
pub mod connections;
mod directory;
mod feed;
pub mod keys;
mod lapse;
pub mod library;
mod notices;
pub mod outbox;
mod placements;
pub mod policy;
pub(crate) mod replies;
pub mod restore;
mod retention;
mod routing;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::learned::{CandidateInfo, LearnedFactors};
use crate::domain::performance::{PerformanceRecord, PerformanceSummary};
use crate::domain::policy::{RoutingPolicy, ScoringWeights};
use crate::domain::specialist::{Availability, Registration, Specialist};
use crate::domain::subtask::{
    AssignmentView, CompletionReport, ReleaseRequest, Subtask, SubtaskSpec, WatchEvent,
    WatchEventKind,
};
use crate::store::breaker::{BreakerConfig, CircuitBreaker};
use crate::store::clock::Clock;
use crate::store::{
    AvailabilityCounts, ExpirySummary, Feed, InFlight, Page, PageRequest, Precondition, QueuePage,
    QueuePosition, QueuedEntry, Registered, Store, StoreError, StoreResult, TypeStats,
};

use crate::store::production::PendingStore;
use call::{nested, About, Args, Target};
use connections::{Connections, Endpoint};
use feed::FeedHub;
use keys::Keys;
use library::{Function, Library};
use policy::SlotPolicy;
use replies::{int, items, text};

/// Lapsed specialists handled per expire call.
const EXPIRY_BATCH: usize = 500;
/// Finished subtasks retired per expire call.
const RETIRE_BATCH: usize = 1000;

#[derive(Debug, Clone)]
pub struct RedisStoreConfig {
    /// `redis://host:port/db`; with `cluster`, comma-separated URLs of some of the cluster's nodes.
    pub url: String,
    /// A Redis Cluster: commands are routed by key to the node serving its slot.
    pub cluster: bool,
    /// Every key carries the namespace: `sb:{<namespace>:<type>}:...`, one hash tag per
    /// specialist type, and the directory `sb:{<namespace>/...}` (see keys.rs, lua/README.md).
    pub namespace: String,
    pub pool_size: usize,
    /// Longest a single call may take before it counts as a Redis failure.
    pub command_timeout: Duration,
    pub breaker: BreakerConfig,
    /// Append every change to the outbox streams (on when a Postgres relay reads them).
    pub outbox: bool,
    /// Outbox entries of one type not yet written to Postgres beyond which new subtasks of that
    /// type are refused.
    pub outbox_bound: u64,
}

impl RedisStoreConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster: false,
            namespace: "switchboard".into(),
            pool_size: 32,
            command_timeout: Duration::from_secs(2),
            breaker: BreakerConfig::default(),
            outbox: false,
            outbox_bound: 1_000_000,
        }
    }

    pub fn keys(&self) -> Keys {
        Keys::new(self.namespace.clone())
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::parse(&self.url, self.cluster)
    }
}

pub struct RedisStore {
    connections: Connections,
    library: Library,
    keys: Keys,
    /// The configured specialist types: the slots the store sweeps, lists and counts.
    types: Vec<String>,
    weights: ScoringWeights,
    slot_policy: SlotPolicy,
    /// Its fingerprint, sent with every call.
    fingerprint: String,
    /// One Redis, not a cluster: a call by id finds its slot inside Redis (one round trip).
    single: bool,
    clock: Option<Arc<dyn Clock>>,
    breaker: CircuitBreaker,
    command_timeout: Duration,
    feeds: FeedHub,
    /// Where Assign puts subtasks while Redis is unreachable (with Postgres configured).
    pending: Option<PendingStore>,
    /// On a cluster, the slots of subtasks and specialists this replica has seen.
    placements: placements::Placements,
    specialist_placements: placements::Placements,
    /// This process among the deployment's replicas (policy.rs).
    replica_id: String,
    /// A call failed for want of Redis since the last lease sweep (lapse.rs).
    outage_seen: std::sync::atomic::AtomicBool,
    lease_ttl_ms: i64,
}

impl RedisStore {
    pub fn connect(config: &RedisStoreConfig, policy: &RoutingPolicy) -> StoreResult<Self> {
        Self::connect_with_clock(config, policy, None)
    }

    /// `clock`: None reads Redis `TIME`; Some pins every call to this clock (tests comparing
    /// stores step by step).
    pub fn connect_with_clock(
        config: &RedisStoreConfig,
        policy: &RoutingPolicy,
        clock: Option<Arc<dyn Clock>>,
    ) -> StoreResult<Self> {
        let endpoint = config.endpoint();
        let connections = Connections::new(&endpoint, config.pool_size)
            .map_err(|error| StoreError::invalid("redis_url", error))?;
        let client = endpoint
            .first_node_client()
            .map_err(|error| StoreError::invalid("redis_url", error.to_string()))?;
        let keys = config.keys();
        let library = Library::new();
        let outbox_bound = if config.outbox {
            config.outbox_bound.max(1)
        } else {
            0
        };
        let slot_policy = SlotPolicy::new(
            policy,
            &library,
            outbox_bound,
            &keys.watch_channel(),
            keys.namespace(),
        );
        let feeds = FeedHub::start(client, keys.watch_channel(), policy.weights);
        Ok(Self {
            connections,
            fingerprint: slot_policy.fingerprint.clone(),
            slot_policy,
            library,
            keys,
            types: policy.specialist_types.clone(),
            weights: policy.weights,
            single: !config.cluster,
            clock,
            breaker: CircuitBreaker::new("redis", config.breaker),
            command_timeout: config.command_timeout,
            feeds,
            pending: None,
            placements: placements::Placements::default(),
            specialist_placements: placements::Placements::default(),
            replica_id: replica_id(),
            outage_seen: std::sync::atomic::AtomicBool::new(false),
            lease_ttl_ms: policy.lease_ttl_ms,
        })
    }

    async fn get_assignment_in_redis(
        &self,
        subtask_id: &str,
    ) -> StoreResult<(AssignmentView, Subtask)> {
        let about = About {
            subtask: subtask_id,
            ..About::default()
        };
        let reply = self
            .fcall_by_id(
                Function::GetAssignment,
                Target::Subtask(subtask_id),
                &Args::new().text(subtask_id),
                about,
            )
            .await?;
        let view = self.view(reply.get(0)?)?;
        let spec = codec::decode_spec(replies::bytes(reply.get(1)?)?)?;
        let subtask = Subtask {
            spec,
            created_at_ms: view.created_at_ms,
        };
        Ok((view, subtask))
    }

    /// Whether `subtask_id` waits in Postgres to be moved into Redis.
    async fn is_pending(&self, subtask_id: &str) -> bool {
        match &self.pending {
            Some(pending) => matches!(pending.get(subtask_id).await, Ok(Some(_))),
            None => false,
        }
    }

    /// Whether Assign accepts subtasks into Postgres while Redis is unreachable.
    pub fn accepts_while_down(&self) -> bool {
        self.pending.is_some()
    }

    /// Probes Postgres past its open breaker (see PendingStore::probe_if_open).
    pub async fn probe_pending(&self) {
        if let Some(pending) = &self.pending {
            pending.probe_if_open().await;
        }
    }

    /// Accept subtasks into Postgres while Redis is unreachable (see store/production/pending.rs).
    pub fn with_pending(mut self, pending: PendingStore) -> Self {
        self.pending = Some(pending);
        self
    }

    /// Moves subtasks accepted while Redis was down into Redis, oldest first, each after the
    /// pending subtasks it depends on (callers racing each other may have had a dependent accepted
    /// before its dependency). Returns how many moved; stops at the first Redis failure (they stay
    /// pending).
    pub async fn move_pending(&self) -> StoreResult<usize> {
        let Some(pending) = &self.pending else {
            return Ok(0);
        };
        let batch = pending.oldest(100).await?;
        let mut waiting: std::collections::HashSet<String> =
            batch.iter().map(|spec| spec.subtask_id.clone()).collect();
        let mut left: Vec<SubtaskSpec> = batch;
        let mut moved = 0;
        while !left.is_empty() {
            let (ready, deferred): (Vec<_>, Vec<_>) = left.into_iter().partition(|spec| {
                !spec
                    .depends_on
                    .iter()
                    .any(|dependency| waiting.contains(dependency))
            });
            // A dependency cycle among pending subtasks: move them anyway (they fail there).
            let (ready, deferred) = if ready.is_empty() {
                (deferred, Vec::new())
            } else {
                (ready, deferred)
            };
            for spec in ready {
                match self.assign_in_redis(&spec, None, true).await {
                    Ok(_) => {}
                    Err(error @ StoreError::AlreadyExists { .. }) => {
                        tracing::warn!(subtask_id = %spec.subtask_id, %error, "pending subtask conflicts with one redis has; redis keeps its own");
                    }
                    Err(StoreError::FailedPrecondition(reason)) => {
                        tracing::warn!(subtask_id = %spec.subtask_id, %reason, "pending subtask refused by redis");
                    }
                    Err(error) => return Err(error),
                }
                pending.remove(&spec.subtask_id).await?;
                waiting.remove(&spec.subtask_id);
                moved += 1;
            }
            left = deferred;
        }
        metrics::counter!(crate::metrics::PENDING_MOVED).increment(moved as u64);
        Ok(moved)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The configured specialist types, each one slot.
    pub fn types(&self) -> &[String] {
        &self.types
    }

    /// Whether the Redis circuit breaker is open right now.
    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// The fingerprint of this replica's rules, which every call carries (policy.rs).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The library this replica calls (its functions are `<name>_<function>`).
    pub fn library(&self) -> &Library {
        &self.library
    }

    fn view(&self, value: &redis::Value) -> StoreResult<AssignmentView> {
        replies::view(value, &self.weights)
    }
}

fn replica_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!("{}-{nanos:x}", std::process::id())
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn register(&self, registration: Registration) -> StoreResult<Registered> {
        self.register_bound(registration).await
    }

    async fn heartbeat(
        &self,
        specialist_id: &str,
        incarnation: &str,
        availability: Option<Availability>,
    ) -> StoreResult<Specialist> {
        let args = Args::new()
            .text(specialist_id)
            .text(availability.map_or("", Availability::as_str))
            .text(incarnation);
        let about = About {
            specialist: specialist_id,
            ..About::default()
        };
        let reply = self
            .fcall_by_id(
                Function::Heartbeat,
                Target::Specialist(specialist_id),
                &args,
                about,
            )
            .await?;
        replies::specialist(reply.get(0)?)
    }

    async fn deregister(&self, specialist_id: &str) -> StoreResult<Vec<String>> {
        let about = About {
            specialist: specialist_id,
            ..About::default()
        };
        let reply = self
            .fcall_by_id(
                Function::Deregister,
                Target::Specialist(specialist_id),
                &Args::new().text(specialist_id),
                about,
            )
            .await?;
        items(reply.get(0)?)?.iter().map(text).collect()
    }

    async fn get_specialist(&self, specialist_id: &str) -> StoreResult<Specialist> {
        let about = About {
            specialist: specialist_id,
            ..About::default()
        };
        let reply = self
            .fcall_by_id(
                Function::GetSpecialist,
                Target::Specialist(specialist_id),
                &Args::new().text(specialist_id),
                about,
            )
            .await?;
        replies::specialist(reply.get(0)?)
    }

    async fn list_specialists(
        &self,
        specialist_type: Option<&str>,
        page: PageRequest,
    ) -> StoreResult<Page<Specialist>> {
        // One page per type's slot, merged in id order (each type's index is in id order).
        let slots: Vec<&str> = match specialist_type {
            Some(specialist_type) => vec![specialist_type],
            None => self.types.iter().map(String::as_str).collect(),
        };
        let args = Args::new()
            .num(page.size)
            .text(page.token.as_deref().unwrap_or_default());
        let mut specialists = Vec::new();
        let mut more = false;
        for slot in slots {
            let reply = self
                .fcall(
                    Function::ListSpecialists,
                    Target::Slot(slot),
                    &args,
                    About::default(),
                )
                .await?;
            more |= !reply.text(0)?.is_empty();
            for item in items(reply.get(1)?)? {
                specialists.push(replies::specialist(item)?);
            }
        }
        specialists.sort_by(|a, b| a.specialist_id.cmp(&b.specialist_id));
        more |= specialists.len() > page.size;
        specialists.truncate(page.size);
        let next_page_token = match specialists.last() {
            Some(last) if more => Some(last.specialist_id.clone()),
            _ => None,
        };
        Ok(Page {
            items: specialists,
            next_page_token,
        })
    }

    async fn assign(&self, spec: SubtaskSpec) -> StoreResult<AssignmentView> {
        self.assign_with(spec, None).await
    }

    async fn assign_with(
        &self,
        spec: SubtaskSpec,
        learned: Option<LearnedFactors>,
    ) -> StoreResult<AssignmentView> {
        let learned = learned.map(|factors| routing::learned_text(&factors, &self.weights));
        match self.assign_in_redis(&spec, learned.as_deref(), false).await {
            // A dependency accepted into Postgres while Redis was away, not moved yet: the
            // dependent waits in Postgres too, and the mover moves it after its dependency.
            Err(StoreError::FailedPrecondition(Precondition::UnknownDependency {
                dependency_id,
            })) if self.is_pending(&dependency_id).await => match &self.pending {
                Some(pending) => pending.accept(&spec).await,
                None => Err(Precondition::UnknownDependency { dependency_id }.into()),
            },
            Err(StoreError::Unavailable(redis_down)) => {
                let Some(pending) = &self.pending else {
                    return Err(StoreError::Unavailable(redis_down));
                };
                tracing::warn!(subtask_id = %spec.subtask_id, cause = %redis_down, "assign goes to postgres: redis did not answer");
                pending.accept(&spec).await.map_err(|error| match error {
                    StoreError::Unavailable(postgres_down) => {
                        StoreError::Unavailable(format!("{redis_down}; {postgres_down}"))
                    }
                    other => other,
                })
            }
            result => result,
        }
    }

    async fn candidates(&self, spec: &SubtaskSpec) -> StoreResult<Vec<CandidateInfo>> {
        self.candidates_in_redis(spec).await
    }

    async fn get_assignment(&self, subtask_id: &str) -> StoreResult<(AssignmentView, Subtask)> {
        match self.get_assignment_in_redis(subtask_id).await {
            Err(error @ (StoreError::Unavailable(_) | StoreError::NotFound { .. })) => {
                let Some(pending) = &self.pending else {
                    return Err(error);
                };
                match pending.get(subtask_id).await {
                    Ok(Some(found)) => return Ok(found),
                    // The mover may have taken it from Postgres after Redis was asked: it moves
                    // into Redis first, so Redis has it now.
                    Ok(None) if matches!(error, StoreError::NotFound { .. }) => {
                        if let Ok(found) = self.get_assignment_in_redis(subtask_id).await {
                            return Ok(found);
                        }
                    }
                    _ => {}
                }
                // Finished and forgotten by Redis after the retention: Postgres has it.
                match pending.finished(subtask_id).await {
                    Ok(Some(found)) if matches!(error, StoreError::NotFound { .. }) => Ok(found),
                    _ => Err(error),
                }
            }
            other => other,
        }
    }

    async fn release(&self, request: ReleaseRequest) -> StoreResult<AssignmentView> {
        let args = Args::new()
            .text(&request.subtask_id)
            .text(&request.specialist_id)
            .num(request.epoch)
            .text(&request.reason)
            .text(request.incarnation.as_deref().unwrap_or_default());
        let about = About {
            subtask: &request.subtask_id,
            specialist: &request.specialist_id,
            epoch: request.epoch,
            ..About::default()
        };
        let reply = self
            .fcall_by_id(
                Function::Release,
                Target::Subtask(&request.subtask_id),
                &args,
                about,
            )
            .await?;
        self.view(reply.get(0)?)
    }

    async fn cancel(&self, subtask_id: &str, reason: &str) -> StoreResult<AssignmentView> {
        let about = About {
            subtask: subtask_id,
            ..About::default()
        };
        let reply = self
            .fcall_by_id(
                Function::Cancel,
                Target::Subtask(subtask_id),
                &Args::new().text(subtask_id).text(reason),
                about,
            )
            .await?;
        self.view(reply.get(0)?)
    }

    async fn report_completion(&self, report: CompletionReport) -> StoreResult<AssignmentView> {
        let args = Args::new()
            .text(&report.subtask_id)
            .text(&report.specialist_id)
            .num(report.epoch)
            .flag(report.success)
            .num(report.completion_time_ms)
            .num(report.quality_score)
            .text(&report.detail)
            .text(report.incarnation.as_deref().unwrap_or_default());
        let about = About {
            subtask: &report.subtask_id,
            specialist: &report.specialist_id,
            epoch: report.epoch,
            ..About::default()
        };
        let reply = self
            .fcall_by_id(
                Function::Complete,
                Target::Subtask(&report.subtask_id),
                &args,
                about,
            )
            .await?;
        self.view(reply.get(0)?)
    }

    async fn queue_position(&self, subtask_id: &str) -> StoreResult<QueuePosition> {
        let about = About {
            subtask: subtask_id,
            ..About::default()
        };
        let reply = self
            .fcall_by_id(
                Function::QueuePosition,
                Target::Subtask(subtask_id),
                &Args::new().text(subtask_id),
                about,
            )
            .await?;
        Ok(QueuePosition {
            subtask_id: subtask_id.to_string(),
            routed_type: reply.text(0)?,
            position: reply.int(1)? as u64,
            depth: reply.int(2)? as u64,
        })
    }

    async fn list_queue(&self, specialist_type: &str, page: PageRequest) -> StoreResult<QueuePage> {
        let args = Args::new()
            .num(page.size)
            .text(page.token.as_deref().unwrap_or_default());
        let reply = self
            .fcall(
                Function::ListQueue,
                Target::Slot(specialist_type),
                &args,
                About::default(),
            )
            .await?;
        let mut entries = Vec::new();
        for entry in items(reply.get(2)?)? {
            let fields = items(entry)?;
            if fields.len() != 6 {
                return Err(replies::malformed("queue entry"));
            }
            entries.push(QueuedEntry {
                subtask_id: text(&fields[0])?,
                position: int(&fields[1])? as u64,
                priority: int(&fields[2])? as i32,
                attempt: int(&fields[3])? as u32,
                required_capabilities: replies::list(&fields[4])?,
                enqueued_at_ms: int(&fields[5])?,
            });
        }
        let token = reply.text(1)?;
        Ok(QueuePage {
            entries,
            depth: reply.int(0)? as u64,
            next_page_token: (!token.is_empty()).then_some(token),
        })
    }

    async fn queue_stats(&self, specialist_type: Option<&str>) -> StoreResult<Vec<TypeStats>> {
        let mut all = Vec::new();
        for slot in &self.types {
            if specialist_type.is_some_and(|wanted| wanted != slot) {
                continue;
            }
            let reply = self
                .fcall(
                    Function::QueueStats,
                    Target::Slot(slot),
                    &Args::new(),
                    About::default(),
                )
                .await?;
            let count = |index: usize| -> StoreResult<u32> { Ok(reply.int(index)? as u32) };
            all.push(TypeStats {
                specialist_type: slot.clone(),
                depth: reply.int(0)? as u64,
                oldest_wait_ms: reply.int(1)?,
                specialists: AvailabilityCounts {
                    online: count(2)?,
                    idle: count(3)?,
                    busy: count(4)?,
                    away: count(5)?,
                    offline: count(6)?,
                },
                active_assignments: reply.int(7)? as u64,
                blocked: reply.int(8)? as u64,
                free_capacity: reply.int(9)? as u64,
            });
        }
        Ok(all)
    }

    async fn performance(&self, specialist_id: &str) -> StoreResult<PerformanceSummary> {
        let about = About {
            specialist: specialist_id,
            ..About::default()
        };
        let reply = self
            .fcall_by_id(
                Function::Performance,
                Target::Specialist(specialist_id),
                &Args::new().text(specialist_id),
                about,
            )
            .await?;
        let record = PerformanceRecord {
            completed: reply.int(0)? as u64,
            succeeded: reply.int(1)? as u64,
            quality_sum: replies::float(reply.get(2)?)?,
            completion_time_ms_sum: replies::float(reply.get(3)?)?,
            recent: reply
                .text(4)?
                .chars()
                .map(|outcome| outcome == '1')
                .collect::<VecDeque<bool>>(),
        };
        Ok(record.summary())
    }

    /// Every type's slot in turn: lapsed leases, the finished subtasks to retire, then the
    /// dependency notices a replica may have left there.
    async fn expire_leases(&self) -> StoreResult<ExpirySummary> {
        let mut summary = ExpirySummary::default();
        let lapse_until = self.lapse_deadline().await?;
        for slot in &self.types {
            loop {
                let reply = self
                    .fcall(
                        Function::Expire,
                        Target::Slot(slot),
                        &Args::new()
                            .num(EXPIRY_BATCH)
                            .num(RETIRE_BATCH)
                            .num(lapse_until),
                        About::default(),
                    )
                    .await?;
                for id in items(reply.get(0)?)? {
                    summary.expired_specialists.push(text(id)?);
                }
                summary.requeued_subtasks += reply.int(1)? as usize;
                summary.failed_subtasks += reply.int(2)? as usize;
                let retirable = items(reply.get(4)?)?;
                if !retirable.is_empty() {
                    self.retire_finished(slot, retirable).await?;
                }
                let more_lapsed = reply.int(3)? == 1;
                if !more_lapsed && retirable.len() < RETIRE_BATCH * 3 {
                    break;
                }
            }
            // Redis failing here ends the sweep: one failure, not one per type, counts towards
            // the breaker.
            self.try_deliver_notices(slot).await?;
        }
        summary.expired_specialists.sort();
        Ok(summary)
    }

    async fn subscribe(&self, specialist_id: &str) -> StoreResult<Feed> {
        if !self.feeds.ready(self.command_timeout).await {
            return Err(StoreError::Unavailable(
                "redis unavailable: the watch channel is not connected".into(),
            ));
        }
        let feed = self.feeds.subscribe(specialist_id);
        self.get_specialist(specialist_id).await?;
        Ok(feed)
    }

    async fn in_flight(&self, specialist_id: &str) -> StoreResult<InFlight> {
        let about = About {
            specialist: specialist_id,
            ..About::default()
        };
        let reply = self
            .fcall_by_id(
                Function::InFlight,
                Target::Specialist(specialist_id),
                &Args::new().text(specialist_id),
                about,
            )
            .await?;
        let mut events = Vec::new();
        for event in items(reply.get(1)?)? {
            let parts = nested(event)?;
            if parts.len() != 2 {
                return Err(replies::malformed("in-flight event"));
            }
            let assignment = self.view(&parts[0])?;
            let spec = codec::decode_spec(replies::bytes(&parts[1])?)?;
            events.push(WatchEvent {
                kind: WatchEventKind::Assigned,
                subtask: Subtask {
                    spec,
                    created_at_ms: assignment.created_at_ms,
                },
                assignment,
            });
        }
        let incarnation = reply.text(2)?;
        Ok(InFlight {
            events,
            epoch: reply.int(0)? as u64,
            incarnation: (!incarnation.is_empty()).then_some(incarnation),
        })
    }
}
