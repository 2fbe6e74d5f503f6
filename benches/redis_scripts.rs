//! The Redis store's functions (FCALL of the Lua library) against the local Redis
//! (127.0.0.1:6379, or SWITCHBOARD_BENCH_REDIS_URL), as the fleet and the queue grow: 10 / 100 / 1,000 / 10,000
//! specialists of one type and 0 / 10,000 / 100,000 subtasks queued that nobody can serve (they must
//! not slow down work somebody can). Each figure is one round trip from this process, so it
//! includes the client and loopback cost. Every run uses namespaces of its own.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures::future::join_all;
use switchboard::domain::policy::RoutingPolicy;
use switchboard::domain::specialist::{Availability, Incarnation, Registration};
use switchboard::domain::subtask::{CompletionReport, SubtaskSpec};
use switchboard::store::redis::{RedisStore, RedisStoreConfig};
use switchboard::store::Store;
use tokio::runtime::Runtime;

const FLEETS: [usize; 4] = [10, 100, 1_000, 10_000];
const QUEUES: [usize; 3] = [0, 10_000, 100_000];

/// `cargo test --all-targets` runs every bench once as a smoke test (without `--bench`): then the
/// sizes are small, so the smoke stays quick.
fn sizes() -> (Vec<usize>, Vec<usize>) {
    if std::env::args().any(|arg| arg == "--bench") {
        (FLEETS.to_vec(), QUEUES.to_vec())
    } else {
        (vec![10], vec![0, 100])
    }
}

fn spec(subtask_id: String, required: &str) -> SubtaskSpec {
    SubtaskSpec {
        subtask_id,
        specialist_type: "backend".into(),
        required_capabilities: vec![required.to_string()],
        priority: 0,
        parent_id: None,
        depends_on: Vec::new(),
        payload: vec![0; 64],
        require_all_capabilities: false,
    }
}

fn store(specialists: usize) -> RedisStore {
    let url = std::env::var("SWITCHBOARD_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let mut config = RedisStoreConfig::new(url);
    config.namespace = format!("bench-{specialists}-{nanos}");
    config.pool_size = 64;
    let policy = RoutingPolicy {
        lease_ttl_ms: 24 * 3600 * 1000,
        fallback_type: None,
        ..RoutingPolicy::default()
    };
    RedisStore::connect(&config, &policy).expect("redis store")
}

/// The index in an id `register_fleet` gave.
fn holder_index(specialist_id: &str) -> usize {
    specialist_id[1..].parse().expect("a fleet id")
}

async fn register_fleet(store: &RedisStore, specialists: usize) {
    for chunk in (0..specialists).collect::<Vec<_>>().chunks(64) {
        join_all(chunk.iter().map(|index| {
            store.register(Registration {
                specialist_id: Some(format!("s{index:05}")),
                specialist_type: "backend".into(),
                capabilities: vec!["rust".into(), "sql".into()],
                max_concurrency: Some(10),
                labels: BTreeMap::new(),
                availability: Availability::Online,
                // Each agent's incarnation is its index in hex.
                incarnation: Incarnation::Start {
                    incarnation: format!("{index:x}"),
                    take_over: true,
                },
            })
        }))
        .await
        .into_iter()
        .for_each(|result| {
            result.expect("registers");
        });
    }
}

/// Queues subtasks nobody can serve until `target` are waiting.
async fn grow_queue(store: &RedisStore, from: usize, target: usize) {
    for chunk in (from..target).collect::<Vec<_>>().chunks(16) {
        join_all(
            chunk
                .iter()
                .map(|index| store.assign(spec(format!("waiting-{index}"), "cobol"))),
        )
        .await
        .into_iter()
        .for_each(|result| {
            result.expect("queues");
        });
    }
}

async fn cycle(store: &RedisStore, subtask_id: String) {
    let view = store
        .assign(spec(subtask_id.clone(), "rust"))
        .await
        .expect("assigns");
    let holder = view.holder.expect("a free specialist takes it");
    let incarnation = format!("{:x}", holder_index(&holder.specialist_id));
    store
        .report_completion(CompletionReport {
            subtask_id,
            specialist_id: holder.specialist_id,
            epoch: holder.epoch,
            success: true,
            completion_time_ms: 10,
            quality_score: 0.9,
            detail: String::new(),
            incarnation: Some(incarnation),
        })
        .await
        .expect("reports");
}

fn bench_scripts(criterion: &mut Criterion) {
    let runtime = Runtime::new().expect("runtime");
    let (fleets, queues) = sizes();
    let stores: Vec<(usize, RedisStore)> = fleets
        .iter()
        .map(|&specialists| {
            let store = runtime.block_on(async {
                let store = store(specialists);
                register_fleet(&store, specialists).await;
                store
            });
            (specialists, store)
        })
        .collect();
    let mut queued_now = 0;
    let mut counter = 0u64;
    for queued in queues {
        for (_, store) in &stores {
            runtime.block_on(grow_queue(store, queued_now, queued));
        }
        queued_now = queued;
        let mut group = criterion.benchmark_group(format!("redis scripts, {queued} queued"));
        group.sample_size(30);
        for (specialists, store) in &stores {
            group.bench_function(
                BenchmarkId::new("assign+complete cycle", specialists),
                |bencher| {
                    bencher.iter(|| {
                        counter += 1;
                        runtime.block_on(cycle(store, format!("cycle-{counter}")));
                    })
                },
            );
            group.bench_function(BenchmarkId::new("heartbeat", specialists), |bencher| {
                bencher.iter(|| {
                    runtime
                        .block_on(store.heartbeat("s00003", "3", None))
                        .expect("heartbeat")
                })
            });
            if queued > 0 {
                let middle = format!("waiting-{}", queued / 2);
                group.bench_function(BenchmarkId::new("queue_position", specialists), |bencher| {
                    bencher.iter(|| {
                        runtime
                            .block_on(store.queue_position(&middle))
                            .expect("queued")
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench_scripts);
criterion_main!(benches);
