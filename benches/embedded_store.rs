//! One Assign -> ReportCompletion cycle on the embedded store, as the fleet and the queue grow:
//! 10 / 100 / 1,000 / 10,000 specialists of one type, with 0 / 10,000 subtasks queued that nobody can
//! serve (they must not slow down work somebody can). 100,000 queued is left out for now: building
//! that queue costs O(n^2) here because an Assign that queues counts its position (see README).

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures::executor::block_on;
use switchboard::domain::policy::RoutingPolicy;
use switchboard::domain::specialist::{Availability, Registration};
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

fn loaded_store(specialists: usize, queued: usize) -> MemoryStore {
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
    for queued in [0usize, 10_000] {
        for specialists in [10usize, 100, 1_000, 10_000] {
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

criterion_group!(benches, bench_cycle);
criterion_main!(benches);
