//! What learned scoring adds to one Assign: features, the forward pass over every candidate (on the
//! calling thread, or for batches over `INLINE_CANDIDATES` on the inference thread) and the
//! factors, at 10, 100 and 1,000 candidates; and what the round trip to the inference thread costs,
//! which small batches no longer pay. The model is trained first on outcomes of the simulator's
//! world (a real model, not placeholder weights).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use switchboard::domain::learned::CandidateInfo;
use switchboard::domain::specialist::Availability;
use switchboard::domain::subtask::CompletionReport;
use switchboard::learned_scorer::checkpoints::MemoryCheckpoints;
use switchboard::learned_scorer::features::{encode, SparseRow};
use switchboard::learned_scorer::trainer::TrainerSettings;
use switchboard::learned_scorer::{EngineSettings, LearnedEngine};
use switchboard::simulate::world::{Scenario, World};

const FLEET: usize = 1_000;

fn world() -> World {
    World::new(Scenario {
        seed: 5,
        subtasks: 3_000,
        specialists: FLEET,
        capabilities: 8,
        capabilities_per_specialist: 3,
        skill_spread: 0.9,
        load: 0.7,
        max_concurrency: 2,
        mean_duration_ms: 1_000.0,
        drift_at: 0,
        drift_share: 0.0,
    })
}

fn candidates(world: &World) -> Vec<CandidateInfo> {
    world
        .specialists
        .iter()
        .map(|specialist| CandidateInfo {
            specialist_id: specialist.specialist_id.clone(),
            specialist_type: "general".into(),
            capabilities: specialist.capability_names(),
            active: 0,
            max_concurrency: 2,
            availability: Availability::Online,
            recent_successes: 3,
            recent_outcomes: 5,
            rule_performance: 0.7,
        })
        .collect()
}

/// An engine whose model was trained on the world's outcomes (subtask i done by specialist i).
fn trained_engine(world: &World, fleet: &[CandidateInfo]) -> LearnedEngine {
    let engine = LearnedEngine::start(
        EngineSettings {
            trainer: TrainerSettings::default(),
            train_every_reports: 1_000,
            train_every: None,
            background_training: false,
            ..EngineSettings::default()
        },
        Arc::new(MemoryCheckpoints::default()),
    )
    .expect("engine starts");
    for subtask in &world.subtasks {
        let specialist = subtask.index % FLEET;
        let subtask_id = format!("s{}", subtask.index);
        let candidate = std::slice::from_ref(&fleet[specialist]);
        engine
            .factors_blocking(&subtask_id, world.context(subtask), candidate)
            .expect("factors");
        let outcome = world.outcome(specialist, subtask);
        engine.observe(&CompletionReport {
            subtask_id,
            specialist_id: fleet[specialist].specialist_id.clone(),
            epoch: 1,
            success: outcome.success,
            completion_time_ms: outcome.duration_ms as u64,
            quality_score: outcome.quality,
            detail: String::new(),
            incarnation: None,
        });
    }
    assert_eq!(
        engine.status().scorer,
        "learned",
        "{}",
        engine.status().detail
    );
    engine
}

fn bench_scorer(criterion: &mut Criterion) {
    // As the server binary does before any thread starts: candle on one thread.
    switchboard::config::configure_model_threads();
    let world = world();
    let fleet = candidates(&world);
    let engine = trained_engine(&world, &fleet);
    let model = engine.model().expect("a model serves");
    let subtask = &world.subtasks[0];
    let mut group = criterion.benchmark_group("learned factors per Assign");
    for count in [10, 100, 1_000] {
        let some = &fleet[..count];
        group.bench_with_input(BenchmarkId::new("engine", count), &count, |bencher, _| {
            bencher.iter(|| {
                engine
                    .factors_blocking("bench", world.context(subtask), black_box(some))
                    .expect("factors")
            })
        });
        let rows: Vec<SparseRow> = some
            .iter()
            .map(|candidate| encode(&world.context(subtask), candidate))
            .collect();
        group.bench_with_input(
            BenchmarkId::new("forward only", count),
            &count,
            |bencher, _| bencher.iter(|| model.predict(black_box(&rows))),
        );
    }
    group.finish();
    bench_round_trip(criterion, &engine, &world, &fleet[..10]);
}

/// The inference thread's round trip for a batch of rows, which small batches no longer pay:
/// back to back, and after the thread has been idle long enough to sleep (as between most
/// Assigns), when the cost is mostly waking it and being woken by its reply.
fn bench_round_trip(
    criterion: &mut Criterion,
    engine: &LearnedEngine,
    world: &World,
    some: &[CandidateInfo],
) {
    let rows: Vec<SparseRow> = some
        .iter()
        .map(|candidate| encode(&world.context(&world.subtasks[0]), candidate))
        .collect();
    let score = || {
        futures::executor::block_on(engine.scorer().score(black_box(rows.clone()))).expect("scored")
    };
    let mut group = criterion.benchmark_group("inference thread round trip");
    group.sample_size(30);
    group.bench_function(BenchmarkId::new("back to back", rows.len()), |bencher| {
        bencher.iter(score)
    });
    group.bench_function(BenchmarkId::new("after idle", rows.len()), |bencher| {
        bencher.iter_custom(|iterations| {
            let mut busy = Duration::ZERO;
            for _ in 0..iterations {
                std::thread::sleep(Duration::from_micros(200));
                let started = Instant::now();
                black_box(score());
                busy += started.elapsed();
            }
            busy
        })
    });
    group.finish();
}

criterion_group!(benches, bench_scorer);
criterion_main!(benches);
