//! Agent faults on the production store (a private Redis, Postgres), under the history checker:
//! - an agent that dies without a word (its heartbeats stop, as under kill -9): what it held is
//!   requeued within lease TTL + sweep interval + 1 s and finished by another agent;
//! - a zombie (it stops past its lease, as under SIGSTOP, then comes back): every report it sends
//!   for what it held is FAILED_PRECONDITION, and once it heartbeats again it serves new epochs;
//! - an agent that crashes on a poison subtask and restarts under its id (a new incarnation each
//!   time): the subtask FAILS after --max-attempts, and the agent keeps serving the others.
//!
//! The agents are tasks of this test talking gRPC to a real server; a process's death is its
//! heartbeat task aborted with no Deregister, a restart a Register with take_over.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tonic::Code;

use crate::pg::{checker, TestDb};
use crate::support;
use support::redis_server::PrivateRedis;
use support::*;

const LEASE_MS: u64 = 1_500;
const SWEEP_MS: u64 = 200;
const MAX_ATTEMPTS: u32 = 3;

/// Heartbeats `id` under the incarnation its clients hold until aborted (a process's life).
fn alive(clients: &Clients, id: &str) -> JoinHandle<()> {
    let mut clients = clients.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        loop {
            let _ = clients
                .register
                .heartbeat(pb::HeartbeatRequest {
                    specialist_id: id.clone(),
                    availability: 0,
                    incarnation: clients.incarnations.get(&id),
                })
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

/// Registers `id` as a starting process does: a new incarnation, replacing any other.
async fn start_process(clients: &mut Clients, id: &str, capability: &str) -> JoinHandle<()> {
    let reply = clients
        .register
        .register(pb::RegisterRequest {
            specialist_id: id.into(),
            specialist_type: "backend".into(),
            capabilities: strings(&[capability]),
            max_concurrency: 4,
            take_over: true,
            ..Default::default()
        })
        .await
        .expect("register")
        .into_inner();
    clients.incarnations.set(id, &reply.incarnation);
    alive(clients, id)
}

/// An Assign request the checker expects to see finished.
fn acknowledged(observed: &mut checker::Observed, id: &str, capability: &str) -> pb::AssignRequest {
    observed.acknowledged.insert(id.to_string());
    task(id, "backend", &[capability])
}

async fn report_ok(
    clients: &mut Clients,
    held: &pb::Assignment,
    observed: &mut checker::Observed,
) -> pb::Assignment {
    let done = clients.report(held, true).await;
    observed.reported.push((
        held.subtask_id.clone(),
        held.specialist_id.clone(),
        held.epoch,
    ));
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_zombie_and_crash_looping_agents_lose_no_work_and_leave_a_sound_history() {
    let redis = PrivateRedis::start().await;
    let db = TestDb::create().await;
    let lease = LEASE_MS.to_string();
    let sweep = SWEEP_MS.to_string();
    let attempts = MAX_ATTEMPTS.to_string();
    let namespace = unique_namespace("agent-faults");
    let server = TestServer::start_with(&[
        "--redis-url",
        &redis.url(),
        "--redis-namespace",
        &namespace,
        "--database-url",
        &db.url(),
        "--lease-ttl-ms",
        &lease,
        "--heartbeat-interval-ms",
        "300",
        "--sweep-interval-ms",
        &sweep,
        "--max-attempts",
        &attempts,
    ])
    .await;
    let mut c = server.clients.clone();
    let mut observed = checker::Observed::default();

    // Killed: the agent holds two subtasks and dies; nobody else can serve them until a second
    // agent with the capability starts.
    let killed = start_process(&mut c, "af-killed", "k").await;
    let k1 = c.assign(acknowledged(&mut observed, "af-k1", "k")).await;
    let k2 = c.assign(acknowledged(&mut observed, "af-k2", "k")).await;
    assert_assigned_to(&k1, "af-killed");
    assert_assigned_to(&k2, "af-killed");
    killed.abort();
    let died = Instant::now();
    for held in [&k1, &k2] {
        let requeued = eventually_assignment(&c, &held.subtask_id, "requeued", |now| {
            state_of(now) == AssignmentState::Queued
        })
        .await;
        assert_eq!(requeued.attempt, 2);
    }
    let requeue_time = died.elapsed();
    assert!(
        requeue_time <= Duration::from_millis(LEASE_MS + SWEEP_MS + 1_000),
        "requeued {requeue_time:?} after the agent died"
    );
    let helper = start_process(&mut c, "af-helper", "k").await;
    for held in [&k1, &k2] {
        let taken = eventually_assignment(&c, &held.subtask_id, "taken over", |now| {
            state_of(now) == AssignmentState::Assigned
        })
        .await;
        assert_assigned_to(&taken, "af-helper");
        assert!(taken.epoch > held.epoch);
        report_ok(&mut c, &taken, &mut observed).await;
    }

    // Zombie: stops past its lease holding z1, comes back and reports it: refused; then it
    // heartbeats again and finishes z1 under its new epoch.
    let zombie = start_process(&mut c, "af-zombie", "z").await;
    let z1 = c.assign(acknowledged(&mut observed, "af-z1", "z")).await;
    assert_assigned_to(&z1, "af-zombie");
    zombie.abort();
    eventually_assignment(&c, "af-z1", "requeued", |now| {
        state_of(now) == AssignmentState::Queued
    })
    .await;
    let refused = c
        .try_report("af-z1", "af-zombie", z1.epoch, true)
        .await
        .expect_err("a zombie's report is refused");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let resumed = alive(&c, "af-zombie");
    let again = eventually_assignment(&c, "af-z1", "handed back out", |now| {
        state_of(now) == AssignmentState::Assigned
    })
    .await;
    assert_assigned_to(&again, "af-zombie");
    assert!(again.epoch > z1.epoch);
    assert_eq!(again.attempt, 2);
    report_ok(&mut c, &again, &mut observed).await;

    // Poison: each try crashes the agent, which restarts under its id.
    let mut poisoned = start_process(&mut c, "af-poisoned", "p").await;
    let first = c
        .assign(acknowledged(&mut observed, "af-poison", "p"))
        .await;
    assert_assigned_to(&first, "af-poisoned");
    for attempt in 2..=MAX_ATTEMPTS {
        poisoned.abort();
        poisoned = start_process(&mut c, "af-poisoned", "p").await;
        let retried = c.get("af-poison").await;
        assert_assigned_to(&retried, "af-poisoned");
        assert_eq!(retried.attempt, attempt);
    }
    poisoned.abort();
    poisoned = start_process(&mut c, "af-poisoned", "p").await;
    let failed = c.get("af-poison").await;
    assert_state(&failed, AssignmentState::Failed);
    for n in 0..3 {
        let id = format!("af-p{n}");
        let held = c.assign(acknowledged(&mut observed, &id, "p")).await;
        assert_assigned_to(&held, "af-poisoned");
        let done = report_ok(&mut c, &held, &mut observed).await;
        assert_state(&done, AssignmentState::Completed);
    }

    // The history in Postgres, once caught up, is sound.
    let postgres = db.client().await;
    let expected = observed.acknowledged.len() as i64;
    poll_until("the history caught up", EVENTUALLY, || {
        let postgres = &postgres;
        async move {
            let finished: i64 = postgres
                .query_one(
                    "SELECT count(*) FROM subtasks WHERE state IN ('COMPLETED', 'FAILED')",
                    &[],
                )
                .await
                .ok()?
                .get(0);
            (finished == expected).then_some(())
        }
    })
    .await;
    for id in ["af-killed", "af-helper", "af-zombie", "af-poisoned"] {
        observed
            .active
            .insert(id.to_string(), c.specialist(id).await.active_assignments);
    }
    let anomalies = checker::check(&postgres, &observed).await;
    eprintln!(
        "agent faults: {} subtasks, requeued {} ms after the agent died, {} anomalies",
        observed.acknowledged.len(),
        requeue_time.as_millis(),
        anomalies.len()
    );
    assert!(anomalies.is_empty(), "{anomalies:#?}");
    for process in [helper, resumed, poisoned] {
        process.abort();
    }
}
