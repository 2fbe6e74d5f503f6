//! The production store's live half: every decision is one Lua script (`lua/`) run atomically in
//! Redis, so any number of replicas behave as one. This module passes arguments in, maps the
//! scripts' JSON replies and error codes to the domain, and guards Redis with a circuit breaker.
//! Key layout and rules: `lua/README.md`; semantics: `../README.md`.

pub mod connections;
mod directory;
mod feed;
pub mod keys;
mod notices;
pub mod outbox;
pub mod pending;
mod placements;
pub mod rebuild;
pub mod relay;
mod routing;
pub mod scripts;
pub mod wire;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::warn;

use crate::domain::learned::{CandidateInfo, LearnedFactors};
use crate::domain::performance::{PerformanceRecord, PerformanceSummary};
use crate::domain::policy::RoutingPolicy;
use crate::domain::policy::ScoringWeights;
use crate::domain::specialist::{Availability, Registration, Specialist};
use crate::domain::subtask::{
    AssignmentView, CompletionReport, ReleaseRequest, Subtask, SubtaskSpec, WatchEvent,
    WatchEventKind,
};
use crate::store::breaker::{BreakerConfig, CircuitBreaker};
use crate::store::clock::Clock;
use crate::store::{
    AvailabilityCounts, ExpirySummary, Feed, InFlight, Page, PageRequest, QueuePage, QueuePosition,
    QueuedEntry, Registered, Store, StoreError, StoreResult, TypeStats,
};

use connections::{Connections, Endpoint};
use feed::FeedHub;
use keys::Keys;
use pending::PendingStore;
use scripts::{Script, Scripts};
use wire::{
    availability_str, lenient_list, policy_json, spec_from_json, EventWire, SpecialistWire,
    ViewWire,
};

/// Lapsed specialists handled per expire script call.
const EXPIRY_BATCH: usize = 500;

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
    /// Longest a single script call may take before it counts as a Redis failure.
    pub command_timeout: Duration,
    pub breaker: BreakerConfig,
    /// Append every change to the outbox stream (on when a Postgres relay reads it).
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
    scripts: Scripts,
    keys: Keys,
    /// The configured specialist types: the slots the store sweeps, lists and counts.
    types: Vec<String>,
    policy_json: String,
    weights: ScoringWeights,
    clock: Option<Arc<dyn Clock>>,
    breaker: CircuitBreaker,
    command_timeout: Duration,
    feeds: FeedHub,
    /// Where Assign puts subtasks while Redis is unreachable (with Postgres configured).
    pending: Option<PendingStore>,
    /// The slots of subtasks this replica has seen (saves directory reads).
    placements: placements::Placements,
}

impl RedisStore {
    pub fn connect(config: &RedisStoreConfig, policy: &RoutingPolicy) -> StoreResult<Self> {
        Self::connect_with_clock(config, policy, None)
    }

    /// `clock`: None reads Redis `TIME`; Some pins every script to this clock (tests comparing
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
        let feeds = FeedHub::start(client, keys.watch_channel());
        Ok(Self {
            connections,
            scripts: Scripts::new(),
            policy_json: policy_json(
                policy,
                config.outbox,
                config.outbox_bound,
                &keys.watch_channel(),
            ),
            keys,
            types: policy.specialist_types.clone(),
            weights: policy.weights,
            clock,
            breaker: CircuitBreaker::new("redis", config.breaker),
            command_timeout: config.command_timeout,
            feeds,
            pending: None,
            placements: placements::Placements::default(),
        })
    }

    /// Accept subtasks into Postgres while Redis is unreachable (see pending.rs).
    pub fn with_pending(mut self, pending: PendingStore) -> Self {
        self.pending = Some(pending);
        self
    }

    /// Moves subtasks accepted while Redis was down into Redis, oldest first. Returns how many
    /// moved; stops at the first Redis failure (they stay pending).
    pub async fn move_pending(&self) -> StoreResult<usize> {
        let Some(pending) = &self.pending else {
            return Ok(0);
        };
        let mut moved = 0;
        for spec in pending.oldest(100).await? {
            match self.assign_in_redis(&spec, None).await {
                Ok(_) => {}
                Err(StoreError::AlreadyExists(message)) => {
                    warn!(subtask_id = %spec.subtask_id, %message, "pending subtask conflicts with one redis has; redis keeps its own");
                }
                Err(StoreError::FailedPrecondition(message)) => {
                    warn!(subtask_id = %spec.subtask_id, %message, "pending subtask refused by redis");
                }
                Err(error) => return Err(error),
            }
            pending.remove(&spec.subtask_id).await?;
            moved += 1;
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

    /// Runs one script in a type's slot and decodes its reply, or maps its error code. When the
    /// script left notices for dependents in other slots, they are delivered first (notices.rs).
    async fn call<T: DeserializeOwned>(
        &self,
        script: &Script,
        slot: &str,
        args: Value,
    ) -> StoreResult<T> {
        let value = self.call_value(script, slot, args).await?;
        if value.get("notify").and_then(Value::as_bool) == Some(true) {
            self.deliver_notices(slot).await;
        }
        serde_json::from_value(value)
            .map_err(|error| StoreError::Internal(format!("script reply: {error}")))
    }

    /// Runs one script in a type's slot: its JSON reply, or its error code mapped.
    async fn call_value(&self, script: &Script, slot: &str, args: Value) -> StoreResult<Value> {
        let now = self
            .clock
            .as_ref()
            .map_or_else(String::new, |clock| clock.now_ms().to_string());
        let args = args.to_string();
        let meta = self.keys.type_meta(slot);
        let invoke = |command: &str, script_ref: &str| {
            let mut invocation = redis::cmd(command);
            invocation
                .arg(script_ref)
                .arg(1)
                .arg(&meta)
                .arg(&self.policy_json)
                .arg(&now)
                .arg(&args)
                .arg(slot);
            invocation
        };
        let reply: String = self
            .roundtrip(
                &invoke("EVALSHA", &script.hash),
                Some(&invoke("EVAL", &script.source)),
            )
            .await?;
        let value: Value = serde_json::from_str(&reply)
            .map_err(|error| StoreError::Internal(format!("script reply: {error}")))?;
        if let Some(code) = value.get("err").and_then(Value::as_i64) {
            let message = value.get("msg").and_then(Value::as_str).unwrap_or_default();
            return Err(script_error(code, message));
        }
        Ok(value)
    }

    /// One plain command (the directory, a single-key read), guarded like the scripts.
    async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> StoreResult<T> {
        self.roundtrip(command, None).await
    }

    /// Sends a command on a pooled connection under the circuit breaker and the command timeout;
    /// on NOSCRIPT sends `on_noscript` instead (EVAL: loads and runs the script in one step).
    async fn roundtrip<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
        on_noscript: Option<&redis::Cmd>,
    ) -> StoreResult<T> {
        self.breaker.check().map_err(StoreError::Unavailable)?;
        let invocation = async {
            let mut lease = match self.connections.get().await {
                Ok(lease) => lease,
                Err(message) => {
                    // Redis is unreachable: the other slots' connections are dead too.
                    self.connections.reset().await;
                    return Err(message);
                }
            };
            let first: redis::RedisResult<T> = command.query_async(&mut lease.connection).await;
            let result = match (first, on_noscript) {
                (Err(error), Some(fallback)) if error.code() == Some("NOSCRIPT") => {
                    fallback.query_async(&mut lease.connection).await
                }
                (other, _) => other,
            };
            // A script's own failure comes back as ERR; anything else (connection, LOADING,
            // READONLY, BUSY, MASTERDOWN, ...) means Redis cannot serve right now.
            match result {
                Ok(reply) => Ok(reply),
                Err(error) if error.code() == Some("ERR") => Err(format!("script: {error}")),
                Err(error) => {
                    // The connection failed, or Redis cannot serve (LOADING, READONLY after a
                    // failover, ...): start again from fresh, checked connections.
                    self.connections.reset().await;
                    Err(error.to_string())
                }
            }
        };
        match tokio::time::timeout(self.command_timeout, invocation).await {
            Ok(Ok(reply)) => {
                self.breaker.record_success();
                Ok(reply)
            }
            Ok(Err(message)) if message.starts_with("script: ") => {
                self.breaker.record_success();
                warn!(%message, "redis script failed");
                Err(StoreError::Internal(message))
            }
            Ok(Err(message)) => {
                self.breaker.record_failure();
                Err(StoreError::Unavailable(format!(
                    "redis unavailable: {message}"
                )))
            }
            Err(_) => {
                self.breaker.record_failure();
                self.connections.reset().await;
                Err(StoreError::Unavailable(format!(
                    "redis unavailable: no reply within {} ms",
                    self.command_timeout.as_millis()
                )))
            }
        }
    }
}

/// The one mapping of script error codes (see lua/includes/lib.lua) to store errors.
fn script_error(code: i64, message: &str) -> StoreError {
    let id_of = |kind: &str| {
        message
            .strip_prefix(kind)
            .and_then(|rest| rest.strip_suffix(" not found"))
            .unwrap_or(message)
            .to_string()
    };
    match code {
        1 => StoreError::specialist_not_found(&id_of("specialist ")),
        2 => StoreError::subtask_not_found(&id_of("subtask ")),
        3 => StoreError::FailedPrecondition(message.to_string()),
        4 => StoreError::AlreadyExists(message.to_string()),
        5 => StoreError::ResourceExhausted(message.to_string()),
        6 => match message.split_once(": ") {
            Some((field, text)) => StoreError::invalid(field, text),
            None => StoreError::invalid("request", message),
        },
        _ => StoreError::Internal(format!("script error {code}: {message}")),
    }
}

#[derive(Deserialize)]
struct SpecialistReply {
    specialist: SpecialistWire,
}

#[derive(Deserialize)]
struct ViewReply {
    view: ViewWire,
}

#[derive(Deserialize)]
struct HeldReply {
    #[serde(deserialize_with = "lenient_list")]
    held: Vec<String>,
}

#[derive(Deserialize)]
struct ListReply {
    #[serde(deserialize_with = "lenient_list")]
    items: Vec<SpecialistWire>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct AssignmentReply {
    view: ViewWire,
    spec: String,
    created_at_ms: i64,
}

#[derive(Deserialize)]
struct PositionReply {
    routed_type: String,
    position: u64,
    depth: u64,
}

#[derive(Deserialize)]
struct QueueEntryWire {
    subtask_id: String,
    position: u64,
    priority: i32,
    attempt: u32,
    #[serde(deserialize_with = "lenient_list")]
    required_capabilities: Vec<String>,
    enqueued_at_ms: i64,
}

#[derive(Deserialize)]
struct QueueReply {
    #[serde(deserialize_with = "lenient_list")]
    entries: Vec<QueueEntryWire>,
    depth: u64,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct TypeStatsWire {
    specialist_type: String,
    depth: u64,
    oldest_wait_ms: i64,
    specialists: AvailabilityCounts,
    active_assignments: u64,
    blocked: u64,
    free_capacity: u64,
}

#[derive(Deserialize)]
struct StatsReply {
    #[serde(deserialize_with = "lenient_list")]
    types: Vec<TypeStatsWire>,
}

#[derive(Deserialize)]
struct PerformanceReply {
    completed: u64,
    succeeded: u64,
    quality_sum: String,
    time_sum: String,
    recent: String,
}

#[derive(Deserialize)]
struct ExpiryReply {
    #[serde(deserialize_with = "lenient_list")]
    expired: Vec<String>,
    requeued: usize,
    failed: usize,
    more: bool,
}

#[derive(Deserialize)]
struct InFlightReply {
    #[serde(deserialize_with = "lenient_list")]
    events: Vec<EventWire>,
    epoch: u64,
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
        availability: Option<Availability>,
    ) -> StoreResult<Specialist> {
        let slot = self.specialist_slot(specialist_id).await?;
        let reply: SpecialistReply = self
            .call(
                &self.scripts.heartbeat,
                &slot,
                json!({
                    "specialist_id": specialist_id,
                    "availability": availability.map(availability_str),
                }),
            )
            .await?;
        reply.specialist.into_domain()
    }

    async fn deregister(&self, specialist_id: &str) -> StoreResult<Vec<String>> {
        let slot = self.specialist_slot(specialist_id).await?;
        let reply: HeldReply = self
            .call(
                &self.scripts.deregister,
                &slot,
                json!({ "specialist_id": specialist_id }),
            )
            .await?;
        Ok(reply.held)
    }

    async fn get_specialist(&self, specialist_id: &str) -> StoreResult<Specialist> {
        let slot = self.specialist_slot(specialist_id).await?;
        let reply: SpecialistReply = self
            .call(
                &self.scripts.get_specialist,
                &slot,
                json!({ "specialist_id": specialist_id }),
            )
            .await?;
        reply.specialist.into_domain()
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
        let mut items = Vec::new();
        let mut more = false;
        for slot in slots {
            let reply: ListReply = self
                .call(
                    &self.scripts.list_specialists,
                    slot,
                    json!({ "size": page.size, "token": page.token }),
                )
                .await?;
            more |= reply.next_page_token.is_some();
            for item in reply.items {
                items.push(item.into_domain()?);
            }
        }
        items.sort_by(|a: &Specialist, b: &Specialist| a.specialist_id.cmp(&b.specialist_id));
        let size = page.size;
        more |= items.len() > size;
        items.truncate(size);
        let next_page_token = match items.last() {
            Some(last) if more => Some(last.specialist_id.clone()),
            _ => None,
        };
        Ok(Page {
            items,
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
        let learned = learned.map(|factors| wire::learned_json(&factors, &self.weights));
        match self.assign_in_redis(&spec, learned.as_deref()).await {
            Err(StoreError::Unavailable(redis_down)) => {
                let Some(pending) = &self.pending else {
                    return Err(StoreError::Unavailable(redis_down));
                };
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
        let result: StoreResult<AssignmentReply> = self
            .call_for_subtask(
                &self.scripts.get_assignment,
                subtask_id,
                json!({ "subtask_id": subtask_id }),
            )
            .await;
        match result {
            Ok(reply) => Ok((
                reply.view.into_domain()?,
                Subtask {
                    spec: spec_from_json(&reply.spec)?,
                    created_at_ms: reply.created_at_ms,
                },
            )),
            Err(error @ (StoreError::Unavailable(_) | StoreError::NotFound { .. })) => {
                let Some(pending) = &self.pending else {
                    return Err(error);
                };
                match pending.get(subtask_id).await {
                    Ok(Some(found)) => Ok(found),
                    _ => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    async fn release(&self, request: ReleaseRequest) -> StoreResult<AssignmentView> {
        let reply: ViewReply = self
            .call_for_subtask(
                &self.scripts.release,
                &request.subtask_id,
                json!({
                    "subtask_id": request.subtask_id,
                    "specialist_id": request.specialist_id,
                    "epoch": request.epoch,
                    "reason": request.reason,
                }),
            )
            .await?;
        reply.view.into_domain()
    }

    async fn cancel(&self, subtask_id: &str, reason: &str) -> StoreResult<AssignmentView> {
        let reply: ViewReply = self
            .call_for_subtask(
                &self.scripts.cancel,
                subtask_id,
                json!({ "subtask_id": subtask_id, "reason": reason }),
            )
            .await?;
        reply.view.into_domain()
    }

    async fn report_completion(&self, report: CompletionReport) -> StoreResult<AssignmentView> {
        let reply: ViewReply = self
            .call_for_subtask(
                &self.scripts.complete,
                &report.subtask_id,
                json!({
                    "subtask_id": report.subtask_id,
                    "specialist_id": report.specialist_id,
                    "epoch": report.epoch,
                    "success": report.success,
                    "completion_time_ms": report.completion_time_ms,
                    "quality_score": report.quality_score,
                    "detail": report.detail,
                }),
            )
            .await?;
        reply.view.into_domain()
    }

    async fn queue_position(&self, subtask_id: &str) -> StoreResult<QueuePosition> {
        let reply: PositionReply = self
            .call_for_subtask(
                &self.scripts.queue_position,
                subtask_id,
                json!({ "subtask_id": subtask_id }),
            )
            .await?;
        Ok(QueuePosition {
            subtask_id: subtask_id.to_string(),
            routed_type: reply.routed_type,
            position: reply.position,
            depth: reply.depth,
        })
    }

    async fn list_queue(&self, specialist_type: &str, page: PageRequest) -> StoreResult<QueuePage> {
        let reply: QueueReply = self
            .call(
                &self.scripts.list_queue,
                specialist_type,
                json!({ "size": page.size, "token": page.token }),
            )
            .await?;
        Ok(QueuePage {
            entries: reply
                .entries
                .into_iter()
                .map(|entry| QueuedEntry {
                    subtask_id: entry.subtask_id,
                    position: entry.position,
                    priority: entry.priority,
                    attempt: entry.attempt,
                    required_capabilities: entry.required_capabilities,
                    enqueued_at_ms: entry.enqueued_at_ms,
                })
                .collect(),
            depth: reply.depth,
            next_page_token: reply.next_page_token,
        })
    }

    async fn queue_stats(&self, specialist_type: Option<&str>) -> StoreResult<Vec<TypeStats>> {
        let mut all = Vec::new();
        for slot in &self.types {
            if specialist_type.is_some_and(|wanted| wanted != slot) {
                continue;
            }
            let reply: StatsReply = self
                .call(&self.scripts.queue_stats, slot, json!({}))
                .await?;
            all.extend(reply.types.into_iter().map(|stats| TypeStats {
                specialist_type: stats.specialist_type,
                depth: stats.depth,
                oldest_wait_ms: stats.oldest_wait_ms,
                specialists: stats.specialists,
                active_assignments: stats.active_assignments,
                blocked: stats.blocked,
                free_capacity: stats.free_capacity,
            }));
        }
        Ok(all)
    }

    async fn performance(&self, specialist_id: &str) -> StoreResult<PerformanceSummary> {
        let slot = self.specialist_slot(specialist_id).await?;
        let reply: PerformanceReply = self
            .call(
                &self.scripts.performance,
                &slot,
                json!({ "specialist_id": specialist_id }),
            )
            .await?;
        let record = PerformanceRecord {
            completed: reply.completed,
            succeeded: reply.succeeded,
            quality_sum: wire::float(&reply.quality_sum)?,
            completion_time_ms_sum: wire::float(&reply.time_sum)?,
            recent: reply
                .recent
                .chars()
                .map(|outcome| outcome == '1')
                .collect::<VecDeque<bool>>(),
        };
        Ok(record.summary())
    }

    /// Every type's slot in turn; then the dependency notices a replica may have left there.
    async fn expire_leases(&self) -> StoreResult<ExpirySummary> {
        let mut summary = ExpirySummary::default();
        for slot in &self.types {
            loop {
                let reply: ExpiryReply = self
                    .call(&self.scripts.expire, slot, json!({ "limit": EXPIRY_BATCH }))
                    .await?;
                summary.expired_specialists.extend(reply.expired);
                summary.requeued_subtasks += reply.requeued;
                summary.failed_subtasks += reply.failed;
                if !reply.more {
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
        let slot = self.specialist_slot(specialist_id).await?;
        let reply: InFlightReply = self
            .call(
                &self.scripts.in_flight,
                &slot,
                json!({ "specialist_id": specialist_id }),
            )
            .await?;
        let events = reply
            .events
            .into_iter()
            .map(|event| event.into_domain(WatchEventKind::Assigned))
            .collect::<StoreResult<Vec<WatchEvent>>>()?;
        Ok(InFlight {
            events,
            epoch: reply.epoch,
        })
    }
}
