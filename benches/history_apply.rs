//! The outbox relay's Postgres applier (`store::postgres::apply_batch`) against the local server
//! (postgres://postgres@127.0.0.1:5432, or SWITCHBOARD_TEST_POSTGRES), in a fresh database per run.
//!
//! Each batch is 500 new events: 100 Assign -> Complete cycles of five events each (a specialist's
//! registration, the subtask's creation, its assignment, its completion and the completion report),
//! as the production store emits them. The figure is events per second: `one_relay` applies batches
//! one after another on one connection, `three_relays` applies three batches at once on three
//! connections (the production relay count).

#[path = "../tests/pg/mod.rs"]
mod pg;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use switchboard::domain::history::HistoryEvent;
use switchboard::domain::specialist::Availability;
use switchboard::domain::subtask::SubtaskState::{Assigned, Completed, Queued};
use switchboard::store::postgres::apply_batch;
use tokio::runtime::Runtime;

const CYCLES_PER_BATCH: usize = 100;
const EVENTS_PER_BATCH: usize = CYCLES_PER_BATCH * 5;

/// Batch `batch` of the run: cycles `batch * 100 ..`, every id unique to the run.
fn batch(batch: usize) -> Vec<HistoryEvent> {
    let mut events = Vec::with_capacity(EVENTS_PER_BATCH);
    for cycle in batch * CYCLES_PER_BATCH..(batch + 1) * CYCLES_PER_BATCH {
        let specialist = format!("sp-{cycle}");
        let subtask = format!("st-{cycle}");
        let at_ms = 1_700_000_000_000 + cycle as i64;
        let id = |seq: u32| format!("backend/{at_ms}-{seq}");
        events.push(pg::event(
            &id(0),
            at_ms,
            pg::registered(&specialist, &["rust", "sql"], Availability::Online),
        ));
        events.push(pg::event(
            &id(1),
            at_ms,
            pg::created(&subtask, Queued, at_ms),
        ));
        events.push(pg::event(
            &id(2),
            at_ms,
            pg::changed(&subtask, Assigned, 1, Some(&specialist), 1),
        ));
        events.push(pg::event(
            &id(3),
            at_ms,
            pg::changed(&subtask, Completed, 1, Some(&specialist), 1),
        ));
        events.push(pg::event(
            &id(4),
            at_ms,
            pg::reported(&subtask, &specialist, 1, true),
        ));
    }
    events
}

fn history_apply(criterion: &mut Criterion) {
    let runtime = Runtime::new().expect("tokio runtime");
    let db = runtime.block_on(pg::TestDb::create());
    let mut clients = runtime.block_on(async {
        let mut clients = vec![db.migrated().await];
        for _ in 1..3 {
            clients.push(db.client().await);
        }
        clients
    });
    let mut next_batch = 0;

    let mut group = criterion.benchmark_group("history_apply");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));

    group.throughput(Throughput::Elements(EVENTS_PER_BATCH as u64));
    group.bench_function("one_relay", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let events = batch(next_batch);
                next_batch += 1;
                let started = Instant::now();
                let summary = runtime
                    .block_on(apply_batch(&mut clients[0], &events))
                    .expect("apply");
                elapsed += started.elapsed();
                assert_eq!(summary.applied, EVENTS_PER_BATCH);
            }
            elapsed
        })
    });

    group.throughput(Throughput::Elements(3 * EVENTS_PER_BATCH as u64));
    group.bench_function("three_relays", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let batches: Vec<Vec<HistoryEvent>> =
                    (0..3).map(|n| batch(next_batch + n)).collect();
                next_batch += 3;
                let started = Instant::now();
                runtime
                    .block_on(futures::future::try_join_all(
                        clients
                            .iter_mut()
                            .zip(&batches)
                            .map(|(client, events)| apply_batch(client, events)),
                    ))
                    .expect("apply");
                elapsed += started.elapsed();
            }
            elapsed
        })
    });
    group.finish();
    drop(clients);
    drop(db);
}

criterion_group!(benches, history_apply);
criterion_main!(benches);
