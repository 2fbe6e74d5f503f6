//! Agent faults on the production store (a private Redis, Postgres), with real agent processes
//! (the Python example agent, clients/python/examples/agent.py) and the history checker:
//! - an agent SIGKILLed while it holds work: the work is requeued within lease TTL + sweep
//!   interval + 1 s and finished by another agent;
//! - a zombie (SIGSTOP past its lease, then SIGCONT): a report it sends for what it held is
//!   refused (FAILED_PRECONDITION; the checker finds no write under a stale epoch), and it
//!   finishes the subtask under its new epoch;
//! - an agent that crashes on a poison subtask (SIGKILL when it gets it) and is restarted under
//!   its id by a supervisor (--take-over, a new incarnation each time): the subtask FAILS after
//!   --max-attempts, and the agent keeps serving the others.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pg::{checker, TestDb};
use crate::support;
use support::redis_server::PrivateRedis;
use support::*;

const LEASE_MS: u64 = 1_500;
const SWEEP_MS: u64 = 200;
const MAX_ATTEMPTS: u32 = 3;

/// One example agent process; SIGKILLed when dropped.
struct AgentProcess(Child);

impl AgentProcess {
    /// `agent.py` as `id` with `capability`, each subtask taking `work_ms`.
    fn start(
        server: SocketAddr,
        id: &str,
        capability: &str,
        work_ms: u64,
        take_over: bool,
    ) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = root.join(".tools/pyvenv/bin/python");
        assert!(
            python.is_file(),
            "{} is missing: run `make clients-tools` (make test-soak does)",
            python.display()
        );
        let mut command = Command::new(python);
        command
            .arg("-u")
            .arg(root.join("clients/python/examples/agent.py"))
            .args(["--address", &server.to_string(), "--type", "backend"])
            .args(["--capabilities", capability, "--id", id])
            .args(["--work-ms", &work_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if take_over {
            command.arg("--take-over");
        }
        Self(command.spawn().expect("starting the example agent"))
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.0.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An Assign request the checker expects to see finished.
fn acknowledged(observed: &mut checker::Observed, id: &str, capability: &str) -> pb::AssignRequest {
    observed.acknowledged.insert(id.to_string());
    task(id, "backend", &[capability])
}

/// Polls until `id` is registered (the agent process is up).
async fn registered(c: &Clients, id: &str) {
    poll_until(&format!("{id} registers"), EVENTUALLY, || {
        let mut c = c.clone();
        let id = id.to_string();
        async move {
            c.register
                .get_specialist(pb::GetSpecialistRequest { specialist_id: id })
                .await
                .ok()
                .filter(|reply| {
                    reply
                        .get_ref()
                        .specialist
                        .as_ref()
                        .is_some_and(|specialist| {
                            specialist.availability != Availability::Offline as i32
                        })
                })
        }
    })
    .await;
}

/// ReportCompletion calls the server answered FAILED_PRECONDITION, from its /metrics.
async fn refused_reports(server: &TestServer) -> f64 {
    let (_, metrics) = http_get(server.metrics_addr.expect("metrics"), "/metrics").await;
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("switchboard_grpc_requests_total")
                && line.contains("ReportCompletion")
                && line.contains("FailedPrecondition")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
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

    // Killed: the agent holds two subtasks (its work never ends) and is SIGKILLed; nobody else
    // can serve them until a second agent with the capability starts.
    let killed = AgentProcess::start(server.addr, "af-killed", "k", 600_000, false);
    registered(&c, "af-killed").await;
    let k1 = c.assign(acknowledged(&mut observed, "af-k1", "k")).await;
    let k2 = c.assign(acknowledged(&mut observed, "af-k2", "k")).await;
    assert_assigned_to(&k1, "af-killed");
    assert_assigned_to(&k2, "af-killed");
    killed.kill();
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
    let _helper = AgentProcess::start(server.addr, "af-helper", "k", 50, false);
    for held in [&k1, &k2] {
        let done = eventually_assignment(&c, &held.subtask_id, "finished by the helper", |now| {
            state_of(now) == AssignmentState::Completed
        })
        .await;
        assert_eq!(done.specialist_id, "af-helper");
        assert!(done.epoch > held.epoch);
    }

    // Zombie: stopped past its lease while it works on z1 (2.5 s of work), then resumed: its
    // report for the first holding is refused, and it finishes z1 under the new epoch.
    let zombie = AgentProcess::start(server.addr, "af-zombie", "z", 2_500, false);
    registered(&c, "af-zombie").await;
    // Reports the server refused from here on: the zombie's for its first holding, if it sends
    // one before it hears of the revocation (the helper drops revoked work).
    let refused_before = refused_reports(&server).await;
    let z1 = c.assign(acknowledged(&mut observed, "af-z1", "z")).await;
    assert_assigned_to(&z1, "af-zombie");
    zombie.signal("STOP");
    eventually_assignment(&c, "af-z1", "requeued", |now| {
        state_of(now) == AssignmentState::Queued
    })
    .await;
    zombie.signal("CONT");
    let done = eventually_assignment(&c, "af-z1", "finished under a new epoch", |now| {
        state_of(now) == AssignmentState::Completed
    })
    .await;
    assert_eq!(done.specialist_id, "af-zombie");
    assert!(done.epoch > z1.epoch);
    assert_eq!(done.attempt, 2);
    let refused = refused_reports(&server).await - refused_before;

    // Poison: each time the agent gets it, it crashes and its supervisor starts it again.
    let mut poisoned = AgentProcess::start(server.addr, "af-poisoned", "p", 600_000, false);
    registered(&c, "af-poisoned").await;
    let first = c
        .assign(acknowledged(&mut observed, "af-poison", "p"))
        .await;
    assert_assigned_to(&first, "af-poisoned");
    for attempt in 2..=MAX_ATTEMPTS {
        poisoned.kill();
        poisoned = AgentProcess::start(server.addr, "af-poisoned", "p", 600_000, true);
        eventually_assignment(&c, "af-poison", "handed to the restarted agent", |now| {
            now.attempt == attempt && state_of(now) == AssignmentState::Assigned
        })
        .await;
    }
    poisoned.kill();
    let _restarted = AgentProcess::start(server.addr, "af-poisoned", "p", 50, true);
    let failed = eventually_assignment(&c, "af-poison", "failed", |now| {
        state_of(now) == AssignmentState::Failed
    })
    .await;
    assert!(failed.detail.contains("no attempts left"), "{failed:?}");
    for n in 0..3 {
        let id = format!("af-p{n}");
        c.assign(acknowledged(&mut observed, &id, "p")).await;
        let done = eventually_assignment(&c, &id, "finished", |now| {
            state_of(now) == AssignmentState::Completed
        })
        .await;
        assert_eq!(done.specialist_id, "af-poisoned");
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
    let anomalies = crate::fault_scenario::settled_anomalies(&postgres, &observed).await;
    eprintln!(
        "agent faults: {} subtasks, requeued {} ms after the agent was killed, {refused} stale \
         reports refused, {} anomalies",
        observed.acknowledged.len(),
        requeue_time.as_millis(),
        anomalies.len()
    );
    assert!(anomalies.is_empty(), "{anomalies:#?}");
}
