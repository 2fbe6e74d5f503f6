//! Model-based property test: random sequences of register / heartbeat / deregister / assign /
//! report / release / cancel / lease expiry (and, past the retention, forgetting finished work) go
//! to the embedded store (the reference) and to the Redis store (shared Redis, a namespace per
//! case) with one pinned clock, under random valid score weights. The same sequences run
//! again on a private three-node Redis Cluster, where Redis itself refuses any script that touches
//! a key outside its type's slot. After every step the
//! results must be equal, and so must what can be read: every subtask's assignment, both queues,
//! the queue statistics and every specialist's in-flight work. Epochs, scores (bit for bit),
//! queue positions and error messages included.

use crate::support;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use proptest::prelude::*;

use switchboard::domain::learned::LearnedFactors;
use switchboard::domain::policy::{RoutingPolicy, ScoringWeights};
use switchboard::domain::specialist::{Availability, Incarnation, Registration};
use switchboard::domain::subtask::{CompletionReport, ReleaseRequest, SubtaskSpec};
use switchboard::store::clock::Clock;
use switchboard::store::memory::MemoryStore;
use switchboard::store::redis::{RedisStore, RedisStoreConfig};
use switchboard::store::{PageRequest, Store};

const TYPES: [&str; 2] = ["general", "backend"];
const CAPABILITIES: [&str; 3] = ["a", "b", "c"];
const SPECIALISTS: usize = 4;
const SUBTASKS: usize = 14;
/// Short enough that the sequences see finished work forgotten.
const RETENTION_MS: i64 = 3_000;
const AVAILABILITIES: [Availability; 5] = [
    Availability::Online,
    Availability::Idle,
    Availability::Busy,
    Availability::Away,
    Availability::Offline,
];

/// Subtasks a sequence saw forgotten after the retention, over the whole run (it must see some).
static RETIRED: AtomicI64 = AtomicI64::new(0);

struct PinnedClock(AtomicI64);

impl Clock for PinnedClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Register {
        specialist: Option<usize>,
        type_index: usize,
        caps: u8,
        max: u32,
        availability: usize,
        /// 0: start a new incarnation, 1: take over, 2: keep the live one (an unknown one if none).
        mode: usize,
    },
    Heartbeat {
        specialist: usize,
        availability: Option<usize>,
    },
    Deregister {
        specialist: usize,
    },
    Assign {
        subtask: usize,
        type_index: usize,
        caps: u8,
        priority: i32,
        depends: u8,
        require_all: bool,
        /// Learned factors: weight in tenths and a seed for the per-candidate factors.
        learned: Option<(u8, u32)>,
    },
    Report {
        subtask: usize,
        success: bool,
        stale: bool,
    },
    Release {
        subtask: usize,
        stale: bool,
    },
    Cancel {
        subtask: usize,
    },
    Tick {
        millis: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (proptest::option::weighted(0.9, 0..SPECIALISTS), 0..2usize, 0..8u8, 0..13u32, 0..5usize, 0..3usize)
            .prop_map(|(specialist, type_index, caps, max, availability, mode)| Op::Register {
                specialist, type_index, caps, max, availability, mode
            }),
        2 => (0..SPECIALISTS, proptest::option::of(0..5usize))
            .prop_map(|(specialist, availability)| Op::Heartbeat { specialist, availability }),
        1 => (0..SPECIALISTS).prop_map(|specialist| Op::Deregister { specialist }),
        6 => (
            (0..SUBTASKS, 0..2usize, 0..8u8, -1..=1i32),
            (proptest::option::weighted(0.3, 0..16u8), any::<bool>(), proptest::option::of((0..=10u8, any::<u32>()))),
        )
            .prop_map(|((subtask, type_index, caps, priority), (depends, require_all, learned))| Op::Assign {
                subtask, type_index, caps, priority, depends: depends.unwrap_or(0), require_all, learned
            }),
        4 => (0..SUBTASKS, any::<bool>(), proptest::bool::weighted(0.1))
            .prop_map(|(subtask, success, stale)| Op::Report { subtask, success, stale }),
        2 => (0..SUBTASKS, proptest::bool::weighted(0.1))
            .prop_map(|(subtask, stale)| Op::Release { subtask, stale }),
        1 => (0..SUBTASKS).prop_map(|subtask| Op::Cancel { subtask }),
        2 => (0..1_500i64).prop_map(|millis| Op::Tick { millis }),
    ]
}

fn capabilities(mask: u8) -> Vec<String> {
    CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, name)| name.to_string())
        .collect()
}

fn specialist_id(index: usize) -> String {
    format!("s{index}")
}

fn subtask_id(index: usize) -> String {
    format!("t{index:02}")
}

fn policy(weights: ScoringWeights) -> RoutingPolicy {
    RoutingPolicy {
        specialist_types: TYPES.map(String::from).to_vec(),
        fallback_type: Some("general".into()),
        weights,
        default_max_concurrency: 2,
        lease_ttl_ms: 1_000,
        retention_ms: RETENTION_MS,
        ..RoutingPolicy::default()
    }
}

/// Valid weights (each >= 0, adding up to 1) from four small parts.
fn weights() -> impl Strategy<Value = ScoringWeights> {
    (0..=10u8, 0..=10u8, 0..=10u8, 0..=10u8).prop_map(|(c, l, a, p)| {
        let parts = [c, l, a, p].map(|part| f64::from(part) + 0.5);
        let total: f64 = parts.iter().sum();
        ScoringWeights {
            capability: parts[0] / total,
            load: parts[1] / total,
            availability: parts[2] / total,
            performance: parts[3] / total,
        }
    })
}

struct Pair {
    reference: MemoryStore,
    redis: RedisStore,
    clock: Arc<PinnedClock>,
    /// Subtasks that existed at some step (so a later NOT_FOUND means the retention forgot it).
    seen: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Specialist id -> the incarnation its last Register started, as an agent keeps it.
    incarnations: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// The namespace on the shared Redis goes with the pair (a cluster is private to the run).
    _namespace: Option<support::NamespaceCleanup>,
}

fn same<T: PartialEq + Debug>(step: usize, what: &str, reference: T, redis: T) {
    assert_eq!(
        reference, redis,
        "step {step}: {what} differs (left: embedded, right: redis)"
    );
}

impl Pair {
    fn new(redis_url: &str, cluster: bool, weights: ScoringWeights) -> Self {
        let clock = Arc::new(PinnedClock(AtomicI64::new(1_800_000_000_000)));
        let mut config = RedisStoreConfig::new(redis_url);
        config.cluster = cluster;
        config.namespace = support::unique_namespace("model");
        config.pool_size = 2;
        let redis = RedisStore::connect_with_clock(
            &config,
            &policy(weights),
            Some(clock.clone() as Arc<dyn Clock>),
        )
        .expect("redis store");
        Self {
            reference: MemoryStore::with_clock(policy(weights), clock.clone()),
            redis,
            clock,
            seen: Default::default(),
            incarnations: Default::default(),
            _namespace: (!cluster)
                .then(|| support::NamespaceCleanup::new(redis_url, &config.namespace)),
        }
    }

    async fn apply(&self, step: usize, op: &Op) {
        macro_rules! both {
            ($what:expr, |$store:ident| $call:expr) => {{
                let reference = {
                    let $store: &dyn Store = &self.reference;
                    $call.await
                };
                let redis = {
                    let $store: &dyn Store = &self.redis;
                    $call.await
                };
                same(step, $what, reference, redis);
            }};
        }
        match op.clone() {
            Op::Register {
                specialist,
                type_index,
                caps,
                max,
                availability,
                mode,
            } => {
                let id = specialist.map(specialist_id);
                let live = id
                    .as_ref()
                    .and_then(|id| self.incarnations.lock().unwrap().get(id).cloned());
                let incarnation = match (mode, live) {
                    (2, Some(live)) => Incarnation::Keep(live),
                    (2, None) => Incarnation::Keep("0".into()),
                    (mode, _) => Incarnation::Start {
                        incarnation: format!("{step:x}"),
                        take_over: mode == 1,
                    },
                };
                let registration = Registration {
                    specialist_id: id,
                    specialist_type: TYPES[type_index].to_string(),
                    capabilities: capabilities(caps),
                    max_concurrency: (max > 0).then_some(max),
                    labels: BTreeMap::from([("zone".to_string(), format!("z{max}"))]),
                    availability: AVAILABILITIES[availability],
                    incarnation,
                };
                let reference = self.reference.register(registration.clone()).await;
                let redis = self.redis.register(registration).await;
                if let Ok(registered) = &reference {
                    self.incarnations.lock().unwrap().insert(
                        registered.specialist.specialist_id.clone(),
                        registered.incarnation.clone(),
                    );
                }
                same(step, "register", reference, redis);
            }
            Op::Heartbeat {
                specialist,
                availability,
            } => {
                let availability = availability.map(|index| AVAILABILITIES[index]);
                let id = specialist_id(specialist);
                let incarnation = self
                    .incarnations
                    .lock()
                    .unwrap()
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| "0".into());
                both!("heartbeat", |store| store.heartbeat(
                    &id,
                    &incarnation,
                    availability
                ));
            }
            Op::Deregister { specialist } => {
                both!("deregister", |store| store
                    .deregister(&specialist_id(specialist)));
            }
            Op::Assign {
                subtask,
                type_index,
                caps,
                priority,
                depends,
                require_all,
                learned,
            } => {
                let depends_on: Vec<String> = (0..4)
                    .filter(|bit| depends & (1 << bit) != 0 && *bit != subtask)
                    .map(subtask_id)
                    .collect();
                let spec = SubtaskSpec {
                    subtask_id: subtask_id(subtask),
                    specialist_type: TYPES[type_index].to_string(),
                    required_capabilities: capabilities(caps),
                    priority,
                    parent_id: None,
                    depends_on,
                    payload: vec![subtask as u8, 0xff, 0],
                    require_all_capabilities: require_all,
                };
                both!("candidates", |store| store.candidates(&spec));
                let factors = match learned {
                    None => None,
                    Some((weight, seed)) => {
                        let candidates = self.reference.candidates(&spec).await.unwrap();
                        let performance = candidates
                            .iter()
                            .enumerate()
                            .filter(|(index, _)| (seed >> (index % 16)) & 3 != 0)
                            .map(|(index, candidate)| {
                                let factor =
                                    f64::from((seed.rotate_left(index as u32 * 5)) % 101) / 100.0;
                                (candidate.specialist_id.clone(), factor)
                            })
                            .collect();
                        Some(LearnedFactors {
                            performance_weight: f64::from(weight) / 10.0,
                            performance,
                        })
                    }
                };
                both!("assign", |store| store
                    .assign_with(spec.clone(), factors.clone()));
            }
            Op::Report {
                subtask,
                success,
                stale,
            } => {
                let (specialist, epoch) = self.holder(subtask, stale).await;
                let report = CompletionReport {
                    subtask_id: subtask_id(subtask),
                    specialist_id: specialist,
                    epoch,
                    success,
                    completion_time_ms: 40 + subtask as u64,
                    quality_score: 0.1 * subtask as f64,
                    detail: String::new(),
                    incarnation: None,
                };
                both!("report", |store| store.report_completion(report.clone()));
            }
            Op::Release { subtask, stale } => {
                let (specialist, epoch) = self.holder(subtask, stale).await;
                let request = ReleaseRequest {
                    subtask_id: subtask_id(subtask),
                    specialist_id: specialist,
                    epoch,
                    reason: "busy".into(),
                    incarnation: None,
                };
                both!("release", |store| store.release(request.clone()));
            }
            Op::Cancel { subtask } => {
                both!("cancel", |store| store.cancel(&subtask_id(subtask), "stop"));
            }
            Op::Tick { millis } => {
                self.clock.0.fetch_add(millis, Ordering::SeqCst);
                both!("expire_leases", |store| store.expire_leases());
            }
        }
    }

    /// The current holder and epoch per the reference (or a stale epoch / someone else).
    async fn holder(&self, subtask: usize, stale: bool) -> (String, u64) {
        match self.reference.get_assignment(&subtask_id(subtask)).await {
            Ok((view, _)) => match view.holder {
                Some(holder) if !stale => (holder.specialist_id, holder.epoch),
                Some(holder) => (holder.specialist_id, holder.epoch + 1),
                None => (specialist_id(0), 1),
            },
            Err(_) => (specialist_id(0), 1),
        }
    }

    async fn compare_reads(&self, step: usize) {
        let reference: &dyn Store = &self.reference;
        let redis: &dyn Store = &self.redis;
        for index in 0..SUBTASKS {
            let id = subtask_id(index);
            let found = reference.get_assignment(&id).await;
            let retired = matches!(&found, Err(switchboard::store::StoreError::NotFound { .. }))
                && self.seen.lock().unwrap().contains(&id);
            if retired {
                RETIRED.fetch_add(1, Ordering::Relaxed);
                self.seen.lock().unwrap().remove(&id);
            }
            if found.is_ok() {
                self.seen.lock().unwrap().insert(id.clone());
            }
            same(
                step,
                &format!("get_assignment {id}"),
                found,
                redis.get_assignment(&id).await,
            );
            same(
                step,
                &format!("queue_position {id}"),
                reference.queue_position(&id).await,
                redis.queue_position(&id).await,
            );
        }
        for specialist_type in TYPES {
            let page = || PageRequest {
                size: 100,
                token: None,
            };
            let left = reference
                .list_queue(specialist_type, page())
                .await
                .map(|page| (page.entries, page.depth));
            let right = redis
                .list_queue(specialist_type, page())
                .await
                .map(|page| (page.entries, page.depth));
            same(step, &format!("list_queue {specialist_type}"), left, right);
        }
        same(
            step,
            "queue_stats",
            reference.queue_stats(None).await,
            redis.queue_stats(None).await,
        );
        for index in 0..SPECIALISTS {
            let id = specialist_id(index);
            same(
                step,
                &format!("get_specialist {id}"),
                reference.get_specialist(&id).await,
                redis.get_specialist(&id).await,
            );
            same(
                step,
                &format!("in_flight {id}"),
                reference.in_flight(&id).await,
                redis.in_flight(&id).await,
            );
            same(
                step,
                &format!("performance {id}"),
                reference.performance(&id).await,
                redis.performance(&id).await,
            );
        }
        let page = || PageRequest {
            size: 100,
            token: None,
        };
        same(
            step,
            "list_specialists",
            reference.list_specialists(None, page()).await,
            redis.list_specialists(None, page()).await,
        );
    }
}

fn cases() -> u32 {
    std::env::var("SWITCHBOARD_MODEL_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(48)
}

/// Runs `cases` random sequences against the Redis at `redis_url`; panics with the shrunk
/// sequence that fails.
fn sequences_agree(redis_url: &str, cluster: bool, cases: u32) {
    let config = ProptestConfig {
        cases,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let cases = (weights(), proptest::collection::vec(op(), 1..70));
    let result = runner.run(&cases, |(weights, ops)| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let pair = Pair::new(redis_url, cluster, weights);
            for (step, op) in ops.iter().enumerate() {
                pair.apply(step, op).await;
                pair.compare_reads(step).await;
            }
        });
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    assert!(
        RETIRED.load(Ordering::Relaxed) > 0,
        "the sequences never saw finished work forgotten"
    );
}

/// Every load band (0, 1-2, 3-4, 5-9, 10+ held): one specialist takes twelve subtasks one after
/// another, and both stores give each the same breakdown, bit for bit.
#[test]
fn both_stores_score_every_load_band_alike() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let weights = ScoringWeights {
            capability: 0.31,
            load: 0.29,
            availability: 0.17,
            performance: 0.23,
        };
        let pair = Pair::new(&support::test_redis_url(), false, weights);
        for store in [&pair.reference as &dyn Store, &pair.redis as &dyn Store] {
            store
                .register(Registration {
                    specialist_id: Some("s0".into()),
                    specialist_type: "backend".into(),
                    capabilities: capabilities(0b011),
                    max_concurrency: Some(12),
                    labels: BTreeMap::new(),
                    availability: Availability::Busy,
                    incarnation: Incarnation::Start {
                        incarnation: "a1".into(),
                        take_over: true,
                    },
                })
                .await
                .unwrap();
        }
        let mut loads = Vec::new();
        for index in 0..12 {
            let spec = SubtaskSpec {
                subtask_id: format!("band-{index}"),
                specialist_type: "backend".into(),
                required_capabilities: capabilities(0b111),
                priority: 0,
                parent_id: None,
                depends_on: Vec::new(),
                payload: Vec::new(),
                require_all_capabilities: false,
            };
            let reference = pair.reference.assign(spec.clone()).await.unwrap();
            let redis = pair.redis.assign(spec).await.unwrap();
            same(index, "assign", &reference, &redis);
            loads.push(reference.holder.unwrap().breakdown.load.value);
        }
        assert_eq!(
            loads,
            [1.0, 0.8, 0.8, 0.6, 0.6, 0.4, 0.4, 0.4, 0.4, 0.4, 0.1, 0.1],
            "every band was crossed"
        );
    });
}

#[test]
fn redis_store_agrees_with_the_embedded_store() {
    sequences_agree(&support::test_redis_url(), false, cases());
}

/// The same on a private three-node Redis Cluster: each script runs on the node serving its
/// type's slot, and Redis refuses any script that touches a key outside that slot.
#[test]
fn redis_store_agrees_on_a_redis_cluster() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cluster = runtime.block_on(support::redis_server::PrivateCluster::start());
    sequences_agree(&cluster.urls(), true, cases().div_ceil(2));
    drop(cluster);
}
