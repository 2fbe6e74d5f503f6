//! Three replicas of one deployment (the shared Redis, one fresh namespace, one fresh Postgres
//! database) behave as one server: 200 concurrent callers spread 10,000 subtasks over the replicas
//! while specialists watch on one replica and report through another. The specialists are of three
//! types and the subtasks of four (one with nobody of its own, so they go to the fallback type),
//! each type its own slot. No subtask is ever held by two specialists, no epoch of a type is handed
//! out twice, nobody holds more than its max_concurrency (seen
//! from the streams and from GetSpecialist), every subtask ends COMPLETED whichever replica is
//! asked, and the write-behind brings all of them to Postgres as COMPLETED.

use crate::pg;
use crate::support;

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pg::TestDb;
use support::*;
use tonic::Code;

const REPLICAS: usize = 3;
const CONNECTIONS_PER_REPLICA: usize = 2;
const CALLERS: usize = 200;
const SUBTASKS: usize = 10_000;
const SPECIALISTS: usize = 24;
const CAPABILITIES: [&str; 4] = ["rust", "go", "sql", "k8s"];
/// Specialist n is of type SPECIALIST_TYPES[n % 3]; subtask n is submitted as SUBTASK_TYPES[n % 4]
/// (nobody is of type docs: those go to the fallback type, general). Each type is its own slot.
const SPECIALIST_TYPES: [&str; 3] = ["backend", "frontend", "general"];
const SUBTASK_TYPES: [&str; 4] = ["backend", "frontend", "general", "docs"];
/// A failure bound, well above the expected run time, so a stall fails instead of hanging.
const TIME_LIMIT: Duration = Duration::from_secs(180);

fn specialist_id(n: usize) -> String {
    format!("replica-agent-{n:02}")
}

fn subtask_id(n: usize) -> String {
    format!("replica-task-{n:05}")
}

/// 2 to 5: specialists of different sizes.
fn max_concurrency(n: usize) -> u32 {
    2 + (n % 4) as u32
}

/// A replica index chosen at random.
fn any_replica() -> usize {
    (RandomState::new().hash_one(0u8) % REPLICAS as u64) as usize
}

/// Who holds what, as the specialists saw it on their streams; checked at every event.
#[derive(Default)]
struct Ledger {
    /// subtask -> (specialist, epoch), while a specialist works on it.
    holder_of: HashMap<String, (String, u64)>,
    /// specialist -> the subtasks it works on right now.
    working_on: HashMap<String, HashSet<String>>,
    limit_of: HashMap<String, u32>,
    type_of: HashMap<String, String>,
    /// (type, epoch): epochs are counted per type.
    epochs_seen: HashSet<(String, u64)>,
    most_at_once: usize,
    revocations: usize,
    stale_reports: usize,
    violations: Vec<String>,
    /// For the history checker: every (subtask, specialist, epoch) delivered, and reported OK.
    delivered: Vec<(String, String, u64)>,
    reported: Vec<(String, String, u64)>,
}

impl Ledger {
    fn assigned(&mut self, specialist: &str, subtask: &str, epoch: u64) {
        self.delivered
            .push((subtask.to_string(), specialist.to_string(), epoch));
        let specialist_type = self.type_of.get(specialist).cloned().unwrap_or_default();
        if !self.epochs_seen.insert((specialist_type.clone(), epoch)) {
            self.violations.push(format!(
                "epoch {epoch} of {specialist_type} seen twice ({subtask} to {specialist})"
            ));
        }
        if let Some((other, other_epoch)) = self.holder_of.get(subtask) {
            self.violations.push(format!(
                "double assignment: {subtask} to {specialist} (epoch {epoch}) while {other} holds it (epoch {other_epoch})"
            ));
        }
        self.holder_of
            .insert(subtask.to_string(), (specialist.to_string(), epoch));
        let working = self.working_on.entry(specialist.to_string()).or_default();
        working.insert(subtask.to_string());
        let at_once = working.len();
        self.most_at_once = self.most_at_once.max(at_once);
        let limit = self.limit_of.get(specialist).copied().unwrap_or(0);
        if at_once > limit as usize {
            self.violations.push(format!(
                "capacity overrun: {specialist} works on {at_once} subtasks, max_concurrency {limit}"
            ));
        }
    }

    /// Stops tracking the holding; false if `specialist` at `epoch` no longer holds `subtask`.
    fn finished(&mut self, specialist: &str, subtask: &str, epoch: u64) -> bool {
        let holds = self
            .holder_of
            .get(subtask)
            .is_some_and(|(holder, held_epoch)| holder == specialist && *held_epoch == epoch);
        if holds {
            self.holder_of.remove(subtask);
            if let Some(working) = self.working_on.get_mut(specialist) {
                working.remove(subtask);
            }
        }
        holds
    }

    fn violation(&mut self, text: String) {
        self.violations.push(text);
    }
}

type SharedLedger = Arc<Mutex<Ledger>>;

/// A specialist: takes ASSIGNED events from its stream (on one replica), works a moment and
/// reports success through `report_via` (another replica).
async fn specialist(
    id: String,
    mut stream: tonic::Streaming<pb::WatchAssignmentsResponse>,
    report_via: Clients,
    ledger: SharedLedger,
    completed: Arc<AtomicUsize>,
) {
    loop {
        let event = match stream.message().await {
            Ok(Some(event)) => event,
            Ok(None) => return,
            Err(status) => {
                let text = format!("{id}: watch stream failed: {status:?}");
                ledger.lock().unwrap().violation(text);
                return;
            }
        };
        let assignment = event_assignment(&event).clone();
        match event_kind(&event) {
            WatchEventKind::Assigned if assignment.specialist_id != id => {
                let text = format!("{id} was sent {assignment:?}");
                ledger.lock().unwrap().violation(text);
            }
            WatchEventKind::Assigned => {
                ledger
                    .lock()
                    .unwrap()
                    .assigned(&id, &assignment.subtask_id, assignment.epoch);
                tokio::spawn(work_and_report(
                    id.clone(),
                    assignment,
                    report_via.clone(),
                    ledger.clone(),
                    completed.clone(),
                ));
            }
            WatchEventKind::Revoked => {
                let mut ledger = ledger.lock().unwrap();
                ledger.revocations += 1;
                ledger.finished(&id, &assignment.subtask_id, assignment.epoch);
            }
            WatchEventKind::Unspecified => {
                let text = format!("{id}: event of no kind: {event:?}");
                ledger.lock().unwrap().violation(text);
            }
        }
    }
}

async fn work_and_report(
    id: String,
    assignment: pb::Assignment,
    mut clients: Clients,
    ledger: SharedLedger,
    completed: Arc<AtomicUsize>,
) {
    tokio::time::sleep(Duration::from_millis(1 + assignment.epoch % 3)).await;
    // Out of the ledger before the report: once it lands this specialist may be given more.
    if !ledger
        .lock()
        .unwrap()
        .finished(&id, &assignment.subtask_id, assignment.epoch)
    {
        return; // revoked in the meantime
    }
    let reported = clients
        .try_report(&assignment.subtask_id, &id, assignment.epoch, true)
        .await;
    match reported {
        Ok(done) if state_of(&done) == AssignmentState::Completed => {
            ledger.lock().unwrap().reported.push((
                assignment.subtask_id.clone(),
                id.clone(),
                assignment.epoch,
            ));
            completed.fetch_add(1, Ordering::SeqCst);
        }
        Ok(other) => {
            let text = format!("report of {} answered {other:?}", assignment.subtask_id);
            ledger.lock().unwrap().violation(text);
        }
        // Legitimate only after a revocation (a lapsed lease), counted and compared at the end.
        Err(status) if status.code() == Code::FailedPrecondition => {
            ledger.lock().unwrap().stale_reports += 1;
        }
        Err(status) => {
            let text = format!("report of {} failed: {status:?}", assignment.subtask_id);
            ledger.lock().unwrap().violation(text);
        }
    }
}

/// GetSpecialist through random replicas until `stop`: nobody holds more than max_concurrency.
async fn sample_capacity(
    replicas: Vec<Vec<Clients>>,
    ledger: SharedLedger,
    samples: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        interval.tick().await;
        let mut clients = replicas[any_replica()][0].clone();
        let specialist = clients.specialist(&specialist_id(n % SPECIALISTS)).await;
        n += 1;
        samples.fetch_add(1, Ordering::SeqCst);
        if specialist.active_assignments > specialist.max_concurrency {
            let text = format!(
                "server reports {} holding {} of {}",
                specialist.specialist_id, specialist.active_assignments, specialist.max_concurrency
            );
            ledger.lock().unwrap().violation(text);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_one_deployment_without_double_assignment() {
    let db = TestDb::create().await;
    let database_url = db.url();
    let redis_url = test_redis_url();
    let namespace = unique_namespace("replicas");
    let _cleanup = NamespaceCleanup::new(&redis_url, &namespace);
    let mut servers = Vec::new();
    for _ in 0..REPLICAS {
        servers.push(
            TestServer::start_with(&[
                "--redis-url",
                &redis_url,
                "--redis-namespace",
                &namespace,
                "--database-url",
                &database_url,
                // Leases outlive the run: no heartbeats needed, no lapse expected.
                "--lease-ttl-ms",
                "600000",
                // Three debug-build replicas, 200 callers and their learned scorers share two
                // cores here: a reply may wait seconds for a worker. This test is about who holds
                // what, not latency; a call that timed out would go to Postgres instead.
                "--store-timeout-ms",
                "15000",
            ])
            .await,
        );
    }
    // An agent's calls carry its incarnation whichever replica they go through.
    let incarnations = Incarnations::default();
    let mut replicas: Vec<Vec<Clients>> = Vec::new();
    for server in &servers {
        let mut connections = Vec::new();
        for _ in 0..CONNECTIONS_PER_REPLICA {
            connections.push(Clients::connect_sharing(server.addr, incarnations.clone()).await);
        }
        replicas.push(connections);
    }
    let started = Instant::now();
    let ledger: SharedLedger = Arc::default();
    let completed = Arc::new(AtomicUsize::new(0));

    // Specialists register through one replica, watch on another, report through a third.
    let mut background = Vec::new();
    for n in 0..SPECIALISTS {
        let id = specialist_id(n);
        let capabilities = [CAPABILITIES[n % 4], CAPABILITIES[(n + 1) % 4]];
        let mut registrar = replicas[(n + 2) % REPLICAS][0].clone();
        let registered = registrar
            .register_full(
                &id,
                SPECIALIST_TYPES[n % 3],
                &capabilities,
                max_concurrency(n),
                Availability::Online,
            )
            .await;
        assert_eq!(registered.max_concurrency, max_concurrency(n));
        ledger
            .lock()
            .unwrap()
            .limit_of
            .insert(id.clone(), max_concurrency(n));
        ledger
            .lock()
            .unwrap()
            .type_of
            .insert(id.clone(), SPECIALIST_TYPES[n % 3].to_string());
        let mut watcher = replicas[n % REPLICAS][n % CONNECTIONS_PER_REPLICA].clone();
        let stream = watcher.watch(&id).await;
        let report_via = replicas[(n + 1) % REPLICAS][n % CONNECTIONS_PER_REPLICA].clone();
        background.push(tokio::spawn(specialist(
            id,
            stream,
            report_via,
            ledger.clone(),
            completed.clone(),
        )));
    }
    let samples = Arc::new(AtomicUsize::new(0));
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_capacity(
        replicas.clone(),
        ledger.clone(),
        samples.clone(),
        stop_sampling.clone(),
    ));

    // 200 callers, each on one replica, submit 10,000 subtasks between them, all at once.
    let mut callers = Vec::new();
    for caller in 0..CALLERS {
        let mut clients = replicas[caller % REPLICAS][caller % CONNECTIONS_PER_REPLICA].clone();
        callers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for n in (caller..SUBTASKS).step_by(CALLERS) {
                let mut request =
                    task(&subtask_id(n), SUBTASK_TYPES[n % 4], &[CAPABILITIES[n % 4]]);
                request.priority = (n % 3) as i32;
                answers.push((n, clients.assign(request).await));
            }
            answers
        }));
    }
    let mut submitted = 0;
    for caller in callers {
        let answers = tokio::time::timeout(TIME_LIMIT, caller)
            .await
            .expect("the callers finish within the time limit")
            .expect("a caller task");
        for (n, assignment) in answers {
            submitted += 1;
            assert_eq!(assignment.subtask_id, subtask_id(n));
            let routed = if n % 4 == 3 {
                "general"
            } else {
                SUBTASK_TYPES[n % 4]
            };
            assert_eq!(assignment.routed_type, routed, "{assignment:?}");
            assert!(
                matches!(
                    state_of(&assignment),
                    AssignmentState::Assigned | AssignmentState::Queued
                ),
                "{assignment:?}"
            );
        }
    }
    assert_eq!(submitted, SUBTASKS);
    let submitted_after = started.elapsed();

    let deadline = started + TIME_LIMIT;
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    while completed.load(Ordering::SeqCst) < SUBTASKS {
        interval.tick().await;
        let violations = ledger.lock().unwrap().violations.clone();
        assert!(violations.is_empty(), "violations: {violations:#?}");
        assert!(
            Instant::now() < deadline,
            "{} of {SUBTASKS} completed within {TIME_LIMIT:?}",
            completed.load(Ordering::SeqCst)
        );
    }
    let completed_after = started.elapsed();
    stop_sampling.store(true, Ordering::SeqCst);
    sampler.await.expect("the sampler");

    let (most_at_once, revocations, epochs) = {
        let ledger = ledger.lock().unwrap();
        assert!(
            ledger.violations.is_empty(),
            "violations: {:#?}",
            ledger.violations
        );
        assert!(
            ledger.holder_of.is_empty(),
            "still held: {:?}",
            ledger.holder_of
        );
        assert_eq!(ledger.epochs_seen.len(), SUBTASKS, "one epoch per subtask");
        assert_eq!(ledger.revocations, 0, "no lease lapses on a 10 minute TTL");
        assert_eq!(ledger.stale_reports, 0);
        (
            ledger.most_at_once,
            ledger.revocations,
            ledger.epochs_seen.len(),
        )
    };
    assert!(
        samples.load(Ordering::SeqCst) > 0,
        "GetSpecialist was sampled"
    );

    // Every replica tells the same story: all COMPLETED, nothing held, nothing queued. Meanwhile
    // the write-behind catches up: Postgres gets every subtask, COMPLETED.
    let read_back = async {
        let not_completed: Vec<pb::Assignment> = futures::stream::iter(0..SUBTASKS)
            .map(|n| {
                let mut clients = replicas[any_replica()][n % CONNECTIONS_PER_REPLICA].clone();
                async move { clients.get(&subtask_id(n)).await }
            })
            .buffer_unordered(48)
            .filter(|assignment| {
                futures::future::ready(state_of(assignment) != AssignmentState::Completed)
            })
            .collect()
            .await;
        (not_completed, started.elapsed())
    };
    let postgres = db.client().await;
    let expected = SUBTASKS as i64;
    let in_postgres = async {
        poll_until(
            "every subtask COMPLETED in Postgres",
            Duration::from_secs(150),
            || async {
                let rows = pg::count(
                    &postgres,
                    "SELECT count(*) FROM subtasks WHERE state = 'COMPLETED'",
                )
                .await;
                (rows == expected).then_some(())
            },
        )
        .await;
        started.elapsed()
    };
    let ((not_completed, read_back_after), postgres_after) = tokio::join!(read_back, in_postgres);
    assert!(
        not_completed.is_empty(),
        "{} not COMPLETED, e.g. {:#?}",
        not_completed.len(),
        &not_completed[..not_completed.len().min(5)]
    );
    let all_rows = pg::count(&postgres, "SELECT count(*) FROM subtasks").await;
    assert_eq!(all_rows, expected, "no other subtask rows");
    let finished_by_known = pg::count(
        &postgres,
        "SELECT count(*) FROM subtasks WHERE specialist_id LIKE 'replica-agent-%' AND finished_at IS NOT NULL AND epoch > 0",
    )
    .await;
    assert_eq!(finished_by_known, expected);
    let mut outcomes = 0;
    let mut active = std::collections::BTreeMap::new();
    for n in 0..SPECIALISTS {
        let mut clients = replicas[n % REPLICAS][0].clone();
        let held = clients
            .specialist(&specialist_id(n))
            .await
            .active_assignments;
        assert_eq!(held, 0);
        active.insert(specialist_id(n), held);
        outcomes += clients
            .perf
            .get_performance(pb::GetPerformanceRequest {
                specialist_id: specialist_id(n),
            })
            .await
            .expect("get performance")
            .into_inner()
            .completed;
    }
    assert_eq!(
        outcomes, SUBTASKS as u64,
        "one recorded outcome per subtask"
    );
    for connections in &replicas {
        for specialist_type in SUBTASK_TYPES {
            let stats = connections[0].clone().queue_stats(specialist_type).await;
            assert_eq!((stats.depth, stats.active_assignments), (0, 0), "{stats:?}");
        }
    }

    // The whole history in Postgres against what the streams and the callers saw.
    poll_until(
        "every report in Postgres",
        Duration::from_secs(60),
        || async {
            let rows = pg::count(&postgres, "SELECT count(*) FROM performance_reports").await;
            (rows == expected).then_some(())
        },
    )
    .await;
    let observed = {
        let ledger = ledger.lock().unwrap();
        pg::checker::Observed {
            acknowledged: (0..SUBTASKS).map(subtask_id).collect(),
            delivered: ledger.delivered.clone(),
            reported: ledger.reported.clone(),
            active,
        }
    };
    let anomalies = pg::checker::check(&postgres, &observed).await;
    assert!(
        anomalies.is_empty(),
        "{} anomalies in the history, e.g. {:#?}",
        anomalies.len(),
        &anomalies[..anomalies.len().min(10)]
    );

    eprintln!(
        "{SUBTASKS} subtasks over {REPLICAS} replicas: submitted in {submitted_after:?}, completed in \
         {completed_after:?}, read back by {read_back_after:?}, in Postgres by {postgres_after:?}; most held at once \
         {most_at_once}, revocations {revocations}, epochs {epochs}, capacity samples {}",
        samples.load(Ordering::SeqCst)
    );
    for task in background {
        task.abort();
    }
    // Stopped before the keys go, so that no relay recreates its consumer group afterwards.
    for server in &mut servers {
        server.shutdown().await;
    }
}
