//! A seeded fault scenario under the history checker: two replicas of one deployment (a private
//! Redis, the second replica reaching it through a proxy; Postgres behind a proxy), six agents
//! heartbeating through one replica and watching on the other, and a mixed load (Assign with
//! dependencies, success and failure reports, releases, cancels) while Redis is stopped twice,
//! Postgres cut once and the second replica's link to Redis cut, slowed and made half-open. Every acknowledged subtask
//! must finish, calls must succeed within 2 s of each store's return, and the history in Postgres
//! must hold no anomaly (pg::checker). SWITCHBOARD_FAULT_SEED picks another seed; `make
//! test-faults` runs twenty.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tonic::Code;

use crate::net::CuttableProxy;
use crate::pg::{checker, TestDb};
use crate::support;
use support::redis_server::PrivateRedis;
use support::*;

const AGENTS: usize = 6;
const SUBTASKS: usize = 240;
const CALLERS: usize = 8;
const POSTGRES_ADDR: &str = "127.0.0.1:5432";
const DONE_WITHIN: Duration = Duration::from_secs(120);

fn seed() -> u64 {
    std::env::var("SWITCHBOARD_FAULT_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(7)
}

/// A number in 0..100 fixed by the seed and `parts`.
fn roll(parts: &[&str]) -> u64 {
    let mut hash = seed() ^ 0x9E37_79B9_7F4A_7C15;
    for part in parts {
        for byte in part.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3);
        }
        hash = hash.rotate_left(17);
    }
    hash % 100
}

fn agent_id(n: usize) -> String {
    format!("fault-agent-{n}")
}

fn subtask_id(n: usize) -> String {
    format!("fault-task-{n:04}")
}

type Shared = Arc<Mutex<checker::Observed>>;

/// Retries a call while the deployment cannot serve it: UNAVAILABLE, DEADLINE_EXCEEDED, or the
/// connection broke under the call (a killed replica; every call here may be repeated).
async fn retrying<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    loop {
        match call().await {
            Err(status)
                if matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
                    || broken_connection(&status) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// The connection broke under the call (UNKNOWN "transport error", or CANCELLED when it closed
/// before the answer): the call may or may not have happened.
fn broken_connection(status: &tonic::Status) -> bool {
    std::error::Error::source(status)
        .is_some_and(|source| source.downcast_ref::<tonic::transport::Error>().is_some())
}

/// Heartbeats until the test ends, as an agent does, whatever the answer.
async fn heartbeat(mut clients: Clients, id: String) {
    loop {
        let _ = clients
            .register
            .heartbeat(pb::HeartbeatRequest {
                specialist_id: id.clone(),
                availability: Availability::Online as i32,
                incarnation: clients.incarnations.get(&id),
            })
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Watches `id` (reconnecting when the stream ends) and answers each assignment: mostly a success
/// report, sometimes a failure report or a release, as the seed decides.
async fn agent(watch_via: Clients, report_via: Clients, id: String, observed: Shared) {
    loop {
        let mut watcher = watch_via.clone();
        let stream = watcher
            .assign
            .watch_assignments(pb::WatchAssignmentsRequest {
                specialist_id: id.clone(),
                incarnation: watch_via.incarnations.get(&id),
            })
            .await;
        let Ok(stream) = stream else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut stream = stream.into_inner();
        while let Ok(Some(event)) = stream.message().await {
            if event_kind(&event) != WatchEventKind::Assigned {
                continue;
            }
            let assignment = event_assignment(&event).clone();
            observed.lock().unwrap().delivered.push((
                assignment.subtask_id.clone(),
                id.clone(),
                assignment.epoch,
            ));
            tokio::spawn(answer(
                report_via.clone(),
                id.clone(),
                assignment,
                observed.clone(),
            ));
        }
    }
}

async fn answer(clients: Clients, id: String, assignment: pb::Assignment, observed: Shared) {
    tokio::time::sleep(Duration::from_millis(5)).await;
    let epoch = assignment.epoch.to_string();
    let choice = roll(&[&assignment.subtask_id, &id, &epoch]);
    let subtask = assignment.subtask_id.clone();
    if choice < 8 {
        let _ = retrying(|| {
            let mut clients = clients.clone();
            let subtask = subtask.clone();
            let id = id.clone();
            async move { clients.try_release(&subtask, &id, assignment.epoch).await }
        })
        .await;
        return;
    }
    let success = choice >= 15;
    let reported = retrying(|| {
        let mut clients = clients.clone();
        let subtask = subtask.clone();
        let id = id.clone();
        async move {
            clients
                .try_report(&subtask, &id, assignment.epoch, success)
                .await
        }
    })
    .await;
    if reported.is_ok() {
        observed
            .lock()
            .unwrap()
            .reported
            .push((subtask, id, assignment.epoch));
    }
}

/// Submits subtasks `caller`, `caller + CALLERS`, ...; every fifth depends on this caller's
/// previous one, and some are cancelled right after. Returns the acknowledged ids.
async fn submit(clients: Clients, caller: usize, pace: Duration) -> Vec<String> {
    let mut acknowledged = Vec::new();
    for n in (caller..SUBTASKS).step_by(CALLERS) {
        let mut request = task(&subtask_id(n), "backend", &["rust"]);
        if n % 5 == 0 && n >= CALLERS {
            // This caller's previous subtask, acknowledged before (in Redis or in Postgres).
            request.depends_on = vec![subtask_id(n - CALLERS)];
        }
        let answered = retrying(|| {
            let mut clients = clients.clone();
            let request = request.clone();
            async move { clients.try_assign(request).await }
        })
        .await;
        if let Err(status) = &answered {
            eprintln!("not acknowledged: {}: {status:?}", subtask_id(n));
        }
        if answered.is_ok() {
            acknowledged.push(subtask_id(n));
            if roll(&[&subtask_id(n), "cancel"]) < 6 {
                let _ = retrying(|| {
                    let mut clients = clients.clone();
                    async move { clients.try_cancel(&subtask_id(n)).await }
                })
                .await;
            }
        }
        tokio::time::sleep(pace).await;
    }
    acknowledged
}

/// How long until a GetSpecialist succeeds through every one of the replicas at `addrs`.
pub(crate) async fn recovered(addrs: &[std::net::SocketAddr]) -> Duration {
    let started = std::time::Instant::now();
    for addr in addrs {
        let clients = Clients::lazy(*addr, Incarnations::default());
        poll_until("calls succeed again", Duration::from_secs(30), || {
            let mut clients = clients.clone();
            async move {
                clients
                    .register
                    .get_specialist(pb::GetSpecialistRequest {
                        specialist_id: agent_id(0),
                    })
                    .await
                    .ok()
            }
        })
        .await;
    }
    started.elapsed()
}

fn finished(assignment: &pb::Assignment) -> bool {
    matches!(
        state_of(assignment),
        AssignmentState::Completed | AssignmentState::Failed | AssignmentState::Cancelled
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_through_redis_stalls_and_postgres_and_network_cuts_leaves_a_sound_history() {
    let redis = PrivateRedis::start().await;
    let db = TestDb::create().await;
    let postgres_proxy = CuttableProxy::start(POSTGRES_ADDR.parse().unwrap()).await;
    let database_url = db
        .url()
        .replace(POSTGRES_ADDR, &postgres_proxy.addr.to_string());
    // The second replica reaches Redis through a proxy the test cuts (a network cut between one
    // replica and Redis, the other replica unaffected).
    let redis_addr = format!("127.0.0.1:{}", redis.port());
    let redis_proxy = CuttableProxy::start(redis_addr.parse().unwrap()).await;
    let redis_urls = [redis.url(), format!("redis://{}", redis_proxy.addr)];
    let namespace = unique_namespace("fault");
    let mut replicas = Vec::new();
    for redis_url in &redis_urls {
        replicas.push(
            TestServer::start_with(
                &[
                    "--redis-url",
                    redis_url,
                    "--redis-namespace",
                    &namespace,
                    "--database-url",
                    &database_url,
                    "--lease-ttl-ms",
                    "3000",
                ]
                .into_iter()
                .chain(crate::OUTAGE_FLAGS)
                .collect::<Vec<_>>(),
            )
            .await,
        );
    }
    let addrs: Vec<_> = replicas.iter().map(|replica| replica.addr).collect();
    // Submissions spread over most of the run, so every fault meets traffic.
    let load = start_load(&addrs, Duration::from_millis(250)).await;
    // The faults, while the load runs; after each, how long until calls succeed again through the
    // replicas it touched.
    let mut recoveries = Vec::new();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.pause();
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.resume();
    recoveries.push(recovered(&addrs).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    postgres_proxy.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    postgres_proxy.restore();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.pause();
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.resume();
    recoveries.push(recovered(&addrs).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis_proxy.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis_proxy.restore();
    recoveries.push(recovered(&addrs[1..]).await);
    // The same link slow (every chunk 300 ms late), then half-open (nothing passes, nothing
    // closes), each for 2 s.
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis_proxy.delay(Duration::from_millis(300));
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis_proxy.restore();
    recoveries.push(recovered(&addrs[1..]).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis_proxy.silence();
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis_proxy.restore();
    recoveries.push(recovered(&addrs[1..]).await);
    conclude(check_load(load, &db).await, &recoveries);
}

/// The mixed load running on a deployment.
pub(crate) struct Load {
    observed: Shared,
    clients: Clients,
    callers: Vec<tokio::task::JoinHandle<Vec<String>>>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the mixed load on the replicas at `addrs`: agent n registers and watches through
/// replica n, heartbeats and reports through the next; caller k submits through replica k (each
/// modulo the count), one every `pace`. Clients connect lazily, so a replica that is down for a while (or killed and
/// started again on its port) answers UNAVAILABLE, which the load retries.
pub(crate) async fn start_load(addrs: &[std::net::SocketAddr], pace: Duration) -> Load {
    let replica = |n: usize| addrs[n % addrs.len()];
    let incarnations = Incarnations::default();
    let observed: Shared = Arc::new(Mutex::new(checker::Observed::default()));
    let mut background = Vec::new();
    for n in 0..AGENTS {
        let mut clients = Clients::lazy(replica(n), incarnations.clone());
        retrying(|| {
            let mut clients = clients.clone();
            async move {
                clients
                    .register
                    .register(pb::RegisterRequest {
                        specialist_id: agent_id(n),
                        specialist_type: "backend".into(),
                        capabilities: strings(&["rust"]),
                        max_concurrency: 3,
                        incarnation: clients.incarnations.get(&agent_id(n)),
                        ..Default::default()
                    })
                    .await
                    .map(|reply| {
                        clients
                            .incarnations
                            .set(&agent_id(n), &reply.into_inner().incarnation)
                    })
            }
        })
        .await
        .expect("an agent registers");
        clients = Clients::lazy(replica(n), incarnations.clone());
        let other = Clients::lazy(replica(n + 1), incarnations.clone());
        background.push(tokio::spawn(heartbeat(other.clone(), agent_id(n))));
        background.push(tokio::spawn(agent(
            clients,
            other,
            agent_id(n),
            observed.clone(),
        )));
    }
    let callers = (0..CALLERS)
        .map(|caller| {
            let clients = Clients::lazy(replica(caller), incarnations.clone());
            tokio::spawn(submit(clients, caller, pace))
        })
        .collect();
    Load {
        observed,
        clients: Clients::lazy(addrs[0], incarnations),
        callers,
        background,
    }
}

/// Waits for the callers, then for every acknowledged subtask to finish and for Postgres to hold
/// its final state; runs the history checker and fails on any anomaly. A one-line summary.
pub(crate) async fn check_load(load: Load, db: &TestDb) -> String {
    let Load {
        observed,
        clients: reader,
        callers,
        background,
    } = load;
    let mut acknowledged = BTreeSet::new();
    for caller in callers {
        acknowledged.extend(caller.await.expect("a caller"));
    }
    assert_eq!(acknowledged.len(), SUBTASKS, "every Assign is acknowledged");

    // Every acknowledged subtask finishes.
    let ids: Vec<String> = acknowledged.iter().cloned().collect();
    let final_states: BTreeMap<String, pb::Assignment> = {
        let deadline = tokio::time::Instant::now() + DONE_WITHIN;
        loop {
            let clients = reader.clone();
            let all: Vec<(String, Option<pb::Assignment>)> = futures::stream::iter(ids.clone())
                .map(|id| {
                    let mut clients = clients.clone();
                    async move {
                        let got = clients.assign.get_assignment(pb::GetAssignmentRequest {
                            subtask_id: id.clone(),
                        });
                        (id, got.await.ok().and_then(|r| r.into_inner().assignment))
                    }
                })
                .buffer_unordered(16)
                .collect()
                .await;
            let unfinished: Vec<_> = all
                .iter()
                .filter(|(_, assignment)| !assignment.as_ref().is_some_and(finished))
                .collect();
            if unfinished.is_empty() {
                break all
                    .into_iter()
                    .map(|(id, assignment)| (id, assignment.unwrap()))
                    .collect();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} acknowledged subtasks unfinished after {DONE_WITHIN:?}, e.g. {:#?}",
                unfinished.len(),
                &unfinished[..unfinished.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };

    // Postgres catches up: every acknowledged subtask's final state is there.
    let postgres = db.client().await;
    poll_until("the history caught up", DONE_WITHIN, || async {
        let rows = postgres
            .query("SELECT subtask_id, state FROM subtasks", &[])
            .await
            .ok()?;
        let in_postgres: BTreeMap<String, String> = rows
            .iter()
            .map(|row| (row.get("subtask_id"), row.get("state")))
            .collect();
        final_states
            .iter()
            .all(|(id, assignment)| {
                in_postgres.get(id).map(String::as_str)
                    == Some(
                        state_of(assignment)
                            .as_str_name()
                            .trim_start_matches("ASSIGNMENT_STATE_"),
                    )
            })
            .then_some(())
    })
    .await;

    let mut active = BTreeMap::new();
    for n in 0..AGENTS {
        let mut clients = reader.clone();
        active.insert(
            agent_id(n),
            clients.specialist(&agent_id(n)).await.active_assignments,
        );
    }
    let observed = {
        let mut observed = observed.lock().unwrap();
        observed.acknowledged = acknowledged.clone();
        observed.active = active;
        std::mem::take(&mut *observed)
    };
    let anomalies = settled_anomalies(&postgres, &observed).await;
    if let Some(first) = anomalies.first() {
        print_history(&postgres, first.split(':').next().unwrap_or_default()).await;
    }
    let outcomes = final_states
        .values()
        .fold(BTreeMap::new(), |mut counts, a| {
            *counts.entry(state_of(a).as_str_name()).or_insert(0) += 1;
            counts
        });
    let summary = format!(
        "{} acknowledged, outcomes {outcomes:?}, {} delivered, {} reported, {} anomalies",
        acknowledged.len(),
        observed.delivered.len(),
        observed.reported.len(),
        anomalies.len()
    );
    assert!(
        anomalies.is_empty(),
        "{} anomalies, e.g. {:#?}",
        anomalies.len(),
        &anomalies[..anomalies.len().min(10)]
    );
    for task in background {
        task.abort();
    }
    summary
}

/// Prints the run's line (`make test-faults` reads it) and requires every recovery within 2 s.
pub(crate) fn conclude(summary: String, recoveries: &[Duration]) {
    let worst_recovery = recoveries.iter().max().copied().unwrap_or_default();
    eprintln!(
        "seed {}: {summary}, worst recovery {} ms",
        seed(),
        worst_recovery.as_millis()
    );
    assert!(
        worst_recovery <= Duration::from_secs(2),
        "calls failed for {worst_recovery:?} after a fault ended: {recoveries:?}"
    );
}

/// The history of one subtask, oldest first, for a failure message.
async fn print_history(postgres: &tokio_postgres::Client, subtask_id: &str) {
    let rows = postgres
        .query(
            "SELECT event_id, kind, state, specialist_id, epoch, attempt FROM assignment_history \
             WHERE subtask_id = $1 ORDER BY event_ms, event_seq",
            &[&subtask_id],
        )
        .await
        .unwrap_or_default();
    eprintln!("history of {subtask_id}:");
    for row in rows {
        let specialist: Option<String> = row.get(3);
        eprintln!(
            "  {} {} {} {} epoch {} attempt {}",
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2),
            specialist.unwrap_or_default(),
            row.get::<_, i64>(4),
            row.get::<_, i32>(5)
        );
    }
}

/// How long the history may take to be complete once every subtask's final state is in Postgres:
/// entries a killed replica's relay had taken are claimed by another after the relay's claim idle
/// time (5 s), then written.
const HISTORY_SETTLES: Duration = Duration::from_secs(30);

/// The checker's anomalies once the history has settled: it runs until it finds none, or until
/// `HISTORY_SETTLES` has passed (an anomaly still there then is one in the complete history).
pub(crate) async fn settled_anomalies(
    postgres: &tokio_postgres::Client,
    observed: &checker::Observed,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + HISTORY_SETTLES;
    loop {
        let anomalies = checker::check(postgres, observed).await;
        if anomalies.is_empty() || tokio::time::Instant::now() >= deadline {
            return anomalies;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
