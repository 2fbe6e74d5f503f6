//! One policy through the real service and engine: the assigner (service/) over the embedded store
//! on a virtual clock, the subtask stream as arrivals, outcomes reported as completions,
//! assignments read from the specialists' feeds (so work handed out from the queue is seen like
//! work handed out at once). A policy other than the rules is a factor source for the assigner:
//! the learned scorer, or factors made from the world (random, least loaded, the oracle).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};

use crate::domain::learned::{CandidateInfo, LearnedFactors};
use crate::domain::policy::RoutingPolicy;
use crate::domain::specialist::{Availability, Incarnation, Registration};
use crate::domain::subtask::{CompletionReport, SubtaskSpec, WatchEventKind};
use crate::learned_scorer::checkpoints::MemoryCheckpoints;
use crate::learned_scorer::features::SubtaskContext;
use crate::learned_scorer::{EngineSettings, LearnedEngine, ModelStatus};
use crate::service::{Assigner, FactorSource};
use crate::store::clock::Clock;
use crate::store::memory::MemoryStore;
use crate::store::{Feed, FeedItem, Store};

use super::world::{uniform, World};
use super::SimulateError;

/// How a policy picks; every one goes through the same store, queue and concurrency limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Policy {
    Random,
    LeastLoaded,
    Rules,
    Learned,
    Oracle,
}

impl Policy {
    pub const ALL: [Policy; 5] = [
        Policy::Random,
        Policy::LeastLoaded,
        Policy::Rules,
        Policy::Learned,
        Policy::Oracle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::Random => "random",
            Policy::LeastLoaded => "least_loaded",
            Policy::Rules => "rules",
            Policy::Learned => "learned",
            Policy::Oracle => "oracle",
        }
    }
}

/// Weight the oracle gives the hidden success probability: all of it.
const ORACLE_WEIGHT: f64 = 1.0;
const RANDOM_DRAW: u64 = 11;
const START_MS: i64 = 1_000_000;

struct VirtualClock(AtomicI64);

impl Clock for VirtualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What one policy did to every subtask.
#[derive(Debug, Clone)]
pub struct PolicyRun {
    pub policy: Policy,
    /// Hidden success probability of the specialist each subtask went to (by subtask index).
    pub chosen_probability: Vec<f64>,
    pub success: Vec<bool>,
    pub quality: Vec<f64>,
    pub wait_ms: Vec<i64>,
    /// Time-weighted mean of max/mean active over the specialists (while anyone works).
    pub load_imbalance: f64,
    pub model: Option<ModelStatus>,
}

/// Factors from the world: the random draw, equal factors (least loaded: the tie-break picks the
/// fewest active, then the longest idle), or the hidden success probability (the oracle).
struct WorldFactors {
    world: Arc<World>,
    policy: Policy,
    index_of: HashMap<String, usize>,
}

#[async_trait]
impl FactorSource for WorldFactors {
    async fn factors(
        &self,
        spec: &SubtaskSpec,
        _context: SubtaskContext,
        candidates: &[CandidateInfo],
    ) -> Option<LearnedFactors> {
        let index: usize = spec.subtask_id[1..].parse().ok()?;
        let subtask = &self.world.subtasks[index];
        let seed = self.world.scenario.seed;
        let value_of = |candidate: &CandidateInfo| {
            let specialist = self.index_of[&candidate.specialist_id];
            match self.policy {
                Policy::Oracle => self.world.success_probability(specialist, subtask),
                Policy::Random => uniform(seed, &[RANDOM_DRAW, index as u64, specialist as u64]),
                _ => 0.5,
            }
        };
        let weight = if self.policy == Policy::Oracle {
            ORACLE_WEIGHT
        } else {
            1.0
        };
        Some(LearnedFactors {
            performance_weight: weight,
            performance: candidates
                .iter()
                .map(|candidate| (candidate.specialist_id.clone(), value_of(candidate)))
                .collect(),
        })
    }
}

struct Runner {
    world: Arc<World>,
    clock: Arc<VirtualClock>,
    assigner: Assigner,
    feeds: Vec<Feed>,
    index_of: HashMap<String, usize>,
    engine: Option<LearnedEngine>,
    /// (finish time, subtask index, specialist index, epoch), earliest first.
    completions: BinaryHeap<Reverse<(i64, usize, usize, u64)>>,
    active: Vec<u32>,
    last_ms: i64,
    imbalance_weighted: f64,
    imbalance_time: f64,
    run: PolicyRun,
}

pub async fn run_policy(
    world: &Arc<World>,
    policy: Policy,
    engine_settings: &EngineSettings,
    mut progress: impl FnMut(usize),
) -> Result<PolicyRun, SimulateError> {
    let scenario = &world.scenario;
    let clock = Arc::new(VirtualClock(AtomicI64::new(START_MS)));
    let routing = RoutingPolicy {
        specialist_types: vec!["general".into()],
        fallback_type: None,
        default_max_concurrency: scenario.max_concurrency,
        // Virtual time never lets a lease lapse: the simulator is about routing, not liveness.
        lease_ttl_ms: i64::MAX / 4,
        ..RoutingPolicy::default()
    };
    let store = Arc::new(MemoryStore::with_clock(routing, clock.clone()));
    let mut feeds = Vec::with_capacity(world.specialists.len());
    let mut index_of = HashMap::new();
    for (index, specialist) in world.specialists.iter().enumerate() {
        store
            .register(Registration {
                specialist_id: Some(specialist.specialist_id.clone()),
                specialist_type: "general".into(),
                capabilities: specialist.capability_names(),
                max_concurrency: Some(scenario.max_concurrency),
                labels: BTreeMap::new(),
                availability: Availability::Online,
                incarnation: Incarnation::Start {
                    incarnation: format!("{index:x}"),
                    take_over: false,
                },
            })
            .await?;
        feeds.push(store.subscribe(&specialist.specialist_id).await?);
        index_of.insert(specialist.specialist_id.clone(), index);
    }
    let engine = match policy {
        Policy::Learned => Some(LearnedEngine::start(
            engine_settings.clone(),
            Arc::new(MemoryCheckpoints::default()),
        )?),
        _ => None,
    };
    let factors: Option<Arc<dyn FactorSource>> = match (policy, &engine) {
        (Policy::Rules, _) => None,
        (Policy::Learned, Some(engine)) => Some(Arc::new(engine.clone())),
        _ => Some(Arc::new(WorldFactors {
            world: world.clone(),
            policy,
            index_of: index_of.clone(),
        })),
    };
    let count = world.subtasks.len();
    let mut runner = Runner {
        world: world.clone(),
        clock,
        assigner: Assigner::new(store, factors),
        feeds,
        index_of,
        engine,
        completions: BinaryHeap::new(),
        active: vec![0; world.specialists.len()],
        last_ms: START_MS,
        imbalance_weighted: 0.0,
        imbalance_time: 0.0,
        run: PolicyRun {
            policy,
            chosen_probability: vec![f64::NAN; count],
            success: vec![false; count],
            quality: vec![0.0; count],
            wait_ms: vec![0; count],
            load_imbalance: 1.0,
            model: None,
        },
    };
    for subtask in &world.subtasks {
        let arrival_ms = START_MS + subtask.arrival_ms;
        while let Some(Reverse(next)) = runner.completions.peek().copied() {
            if next.0 > arrival_ms {
                break;
            }
            runner.completions.pop();
            runner.complete(next).await?;
        }
        runner.advance(arrival_ms);
        runner.arrive(subtask.index).await?;
        if (subtask.index + 1) % (count / 20).max(1) == 0 {
            progress(subtask.index + 1);
        }
    }
    while let Some(Reverse(next)) = runner.completions.pop() {
        runner.complete(next).await?;
    }
    runner.run.load_imbalance = if runner.imbalance_time > 0.0 {
        runner.imbalance_weighted / runner.imbalance_time
    } else {
        1.0
    };
    runner.run.model = runner.engine.as_ref().map(LearnedEngine::status);
    Ok(runner.run)
}

impl Runner {
    fn advance(&mut self, now_ms: i64) {
        let elapsed = (now_ms - self.last_ms) as f64;
        let total: u32 = self.active.iter().sum();
        if elapsed > 0.0 && total > 0 {
            let mean = f64::from(total) / self.active.len() as f64;
            let max = self.active.iter().copied().max().unwrap_or(0);
            self.imbalance_weighted += f64::from(max) / mean * elapsed;
            self.imbalance_time += elapsed;
        }
        self.last_ms = now_ms;
        self.clock.0.store(now_ms, Ordering::Relaxed);
    }

    async fn arrive(&mut self, index: usize) -> Result<(), SimulateError> {
        let subtask = &self.world.subtasks[index];
        let context = self.world.context(subtask);
        let spec = SubtaskSpec {
            subtask_id: format!("s{index}"),
            specialist_type: "general".into(),
            required_capabilities: context.required_capabilities.clone(),
            priority: subtask.priority,
            parent_id: None,
            depends_on: Vec::new(),
            payload: Vec::new(),
            require_all_capabilities: false,
        };
        let view = self.assigner.assign(spec, |_| context).await?;
        if let Some(holder) = view.holder {
            let specialist = self.index_of[&holder.specialist_id];
            self.read_feed(specialist);
        }
        Ok(())
    }

    /// Takes every ASSIGNED event waiting on a specialist's feed and schedules its completion.
    fn read_feed(&mut self, specialist: usize) {
        // Unconstrained: the runtime's cooperative budget must not make a waiting event look absent.
        while let Some(Some(item)) =
            tokio::task::unconstrained(self.feeds[specialist].next()).now_or_never()
        {
            let FeedItem::Event(event) = item else {
                continue;
            };
            if event.kind != WatchEventKind::Assigned {
                continue;
            }
            let Some(index) = event.assignment.subtask_id[1..].parse::<usize>().ok() else {
                continue;
            };
            let now_ms = self.last_ms;
            let subtask = &self.world.subtasks[index];
            let outcome = self.world.outcome(specialist, subtask);
            self.run.chosen_probability[index] =
                self.world.success_probability(specialist, subtask);
            self.run.success[index] = outcome.success;
            self.run.quality[index] = outcome.quality;
            self.run.wait_ms[index] = now_ms - (START_MS + subtask.arrival_ms);
            self.active[specialist] += 1;
            self.completions.push(Reverse((
                now_ms + outcome.duration_ms,
                index,
                specialist,
                event.epoch(),
            )));
        }
    }

    async fn complete(
        &mut self,
        (finish_ms, index, specialist, epoch): (i64, usize, usize, u64),
    ) -> Result<(), SimulateError> {
        self.advance(finish_ms);
        self.active[specialist] -= 1;
        let report = CompletionReport {
            subtask_id: format!("s{index}"),
            specialist_id: self.world.specialists[specialist].specialist_id.clone(),
            epoch,
            success: self.run.success[index],
            completion_time_ms: 0,
            quality_score: self.run.quality[index],
            detail: String::new(),
            incarnation: None,
        };
        self.assigner.report(report).await?;
        self.read_feed(specialist);
        Ok(())
    }
}
