//! The embedded store as the fleet and the queue grow: one Assign -> ReportCompletion cycle with
//! 10 / 100 / 1,000 / 10,000 specialists of one type and 0 / 10,000 / 100,000 subtasks queued that
//! nobody can serve (they must not slow down work somebody can); an Assign that queues (its real
//! position counted) and a GetQueuePosition at the tail, with 0 and 100,000 queued.

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures::executor::block_on;
use switchboard::domain::policy::RoutingPolicy;
use switchboard::domain::specialist::{Availability, Incarnation, Registration};
use switchboard::domain::subtask::{CompletionReport, SubtaskSpec};
use switchboard::store::memory::MemoryStore;
use switchboard::store::Store;

fn spec(subtask_id: String, required: Vec<String>) -> SubtaskSpec {
    SubtaskSpec {
        subtask_id,
        specialist_type: "backend".into(),
        required_capabilities: required,
        priority: 0,
        parent_id: None,
        depends_on: Vec::new(),
        payload: vec![0; 64],
        require_all_capabilities: false,
    }
}

/// `cargo bench` passes `--bench`; without it (`cargo test --all-targets`) criterion runs each
/// benchmark once as a test, and a debug build fills the store at a hundredth of the sizes.
fn sized(count: usize) -> usize {
    if std::env::args().any(|arg| arg == "--bench") {
        count
    } else {
        count.div_ceil(100)
    }
}

fn loaded_store(specialists: usize, queued: usize) -> MemoryStore {
    let (specialists, queued) = (sized(specialists), sized(queued));
    let policy = RoutingPolicy {
        lease_ttl_ms: 24 * 3600 * 1000,
        fallback_type: None,
        ..RoutingPolicy::default()
    };
    let store = MemoryStore::new(policy);
    block_on(async {
        for index in 0..specialists {
            let registration = Registration {
                specialist_id: Some(format!("s{index:05}")),
                specialist_type: "backend".into(),
                capabilities: vec!["rust".into(), "sql".into()],
                max_concurrency: Some(10),
                labels: BTreeMap::new(),
                availability: Availability::Online,
                incarnation: Incarnation::Start {
                    incarnation: "a1".into(),
                    take_over: true,
                },
            };
            store.register(registration).await.expect("registers");
        }
        for index in 0..queued {
            let waiting = spec(format!("waiting-{index}"), vec!["cobol".into()]);
            store.assign(waiting).await.expect("queues");
        }
    });
    store
}

fn bench_cycle(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("embedded assign+report cycle");
    group.sample_size(20);
    for queued in [0usize, 10_000, 100_000] {
        for specialists in [10usize, 100, 1_000, 10_000] {
            if queued == 100_000 && specialists != 100 && specialists != 10_000 {
                continue;
            }
            let store = loaded_store(specialists, queued);
            let mut counter = 0u64;
            let label = format!("{specialists} specialists, {queued} queued");
            group.bench_function(BenchmarkId::from_parameter(label), |bencher| {
                bencher.iter(|| {
                    counter += 1;
                    let subtask_id = format!("cycle-{counter}");
                    block_on(async {
                        let view = store
                            .assign(spec(subtask_id.clone(), vec!["rust".into()]))
                            .await
                            .expect("assigns");
                        let holder = view.holder.expect("a free specialist takes it");
                        store
                            .report_completion(CompletionReport {
                                subtask_id,
                                specialist_id: holder.specialist_id,
                                epoch: holder.epoch,
                                success: true,
                                completion_time_ms: 10,
                                quality_score: 1.0,
                                detail: String::new(),
                                incarnation: None,
                            })
                            .await
                            .expect("reports");
                    })
                })
            });
        }
    }
    group.finish();
}

/// An Assign nobody can serve: it queues at the tail and reports its real position; it is then
/// cancelled, so the depth stays put. And GetQueuePosition of the last queued subtask.
fn bench_queueing(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("embedded queueing");
    group.sample_size(20);
    for queued in [0usize, 100_000] {
        let store = loaded_store(100, queued);
        let mut counter = 0u64;
        group.bench_function(
            BenchmarkId::from_parameter(format!("assign that queues, {queued} queued")),
            |bencher| {
                bencher.iter(|| {
                    counter += 1;
                    let subtask_id = format!("late-{counter}");
                    block_on(async {
                        let view = store
                            .assign(spec(subtask_id.clone(), vec!["cobol".into()]))
                            .await
                            .expect("queues");
                        assert_eq!(view.queue_position, Some(sized(queued) as u64 + 1));
                        store.cancel(&subtask_id, "").await.expect("cancels");
                    })
                })
            },
        );
        if queued > 0 {
            let last = format!("waiting-{}", sized(queued) - 1);
            group.bench_function(
                BenchmarkId::from_parameter(format!("queue position, {queued} queued")),
                |bencher| {
                    bencher.iter(|| {
                        block_on(async {
                            let position = store.queue_position(&last).await.expect("queued");
                            assert_eq!(position.position, sized(queued) as u64);
                        })
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_cycle, bench_queueing);
criterion_main!(benches);
