//! Many orchestrators and agents at once: 64 concurrent Assign callers, 20 specialists (5 slots each)
//! that work through their watch streams, 3000 subtasks. Nothing is ever held by two specialists at
//! once, nobody holds more than max_concurrency, and every subtask ends COMPLETED.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use support::*;
use tonic::Code;

const CALLERS: usize = 64;
const SPECIALISTS: usize = 20;
const MAX_CONCURRENCY: u32 = 5;
const SUBTASKS: usize = 3000;
const CAPABILITIES: [&str; 4] = ["rust", "go", "sql", "k8s"];
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// What the simulated agents have seen, checked on every event.
#[derive(Default)]
struct Ledger {
    /// subtask -> (specialist, epoch) for work received and not yet reported.
    holders: HashMap<String, (String, u64)>,
    /// specialist -> subtasks received and not yet reported.
    held: HashMap<String, usize>,
    /// Every epoch handed out (must be unique).
    epochs: HashSet<u64>,
    /// Subtasks revoked from a holder (a lapsed lease; not expected, but legal).
    revoked: usize,
    /// Reports refused as stale; each must match a revocation.
    fenced: usize,
    violations: Vec<String>,
    peak: usize,
}

impl Ledger {
    fn received(&mut self, specialist: &str, subtask: &str, epoch: u64) {
        if !self.epochs.insert(epoch) {
            self.violations.push(format!(
                "epoch {epoch} handed out twice (now {subtask} to {specialist})"
            ));
        }
        if let Some((other, other_epoch)) = self.holders.get(subtask) {
            self.violations.push(format!(
                "{subtask} assigned to {specialist} (epoch {epoch}) while {other} holds it (epoch {other_epoch})"
            ));
        }
        self.holders
            .insert(subtask.to_string(), (specialist.to_string(), epoch));
        let held = self.held.entry(specialist.to_string()).or_default();
        *held += 1;
        self.peak = self.peak.max(*held);
        if *held > MAX_CONCURRENCY as usize {
            self.violations.push(format!(
                "{specialist} holds {held} subtasks, above max_concurrency {MAX_CONCURRENCY}"
            ));
        }
    }

    /// Forgets a holding; false when this specialist/epoch no longer holds it (revoked).
    fn let_go(&mut self, specialist: &str, subtask: &str, epoch: u64) -> bool {
        match self.holders.get(subtask) {
            Some((holder, held_epoch)) if holder == specialist && *held_epoch == epoch => {
                self.holders.remove(subtask);
                if let Some(held) = self.held.get_mut(specialist) {
                    *held -= 1;
                }
                true
            }
            _ => false,
        }
    }
}

fn specialist_id(n: usize) -> String {
    format!("conc-agent-{n:02}")
}

fn subtask_id(n: usize) -> String {
    format!("conc-task-{n:04}")
}

/// One simulated agent: reads its watch stream, works on each ASSIGNED subtask for a moment and
/// reports success; a REVOKED subtask is dropped. Stops when `done` reaches SUBTASKS.
async fn agent(
    clients: Clients,
    id: String,
    mut stream: tonic::Streaming<pb::WatchAssignmentsResponse>,
    ledger: Arc<Mutex<Ledger>>,
    completed: Arc<AtomicUsize>,
) {
    loop {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(status) => {
                ledger
                    .lock()
                    .unwrap()
                    .violations
                    .push(format!("{id}: watch stream failed: {status:?}"));
                return;
            }
        };
        let assignment = event_assignment(&message).clone();
        match event_kind(&message) {
            WatchEventKind::Assigned => {
                if assignment.specialist_id != id {
                    ledger.lock().unwrap().violations.push(format!(
                        "{id} received an assignment for {}: {assignment:?}",
                        assignment.specialist_id
                    ));
                    continue;
                }
                ledger
                    .lock()
                    .unwrap()
                    .received(&id, &assignment.subtask_id, assignment.epoch);
                let mut clients = clients.clone();
                let (id, ledger, completed) = (id.clone(), ledger.clone(), completed.clone());
                tokio::spawn(async move {
                    // Think time: a few milliseconds of "work".
                    let think = 1 + (assignment.epoch % 4);
                    tokio::time::sleep(Duration::from_millis(think)).await;
                    // Let go before reporting: once the report lands the server may hand this
                    // specialist new work, which must not count against the old holding.
                    if !ledger
                        .lock()
                        .unwrap()
                        .let_go(&id, &assignment.subtask_id, assignment.epoch)
                    {
                        return; // revoked meanwhile
                    }
                    match clients
                        .try_report(&assignment.subtask_id, &id, assignment.epoch, true)
                        .await
                    {
                        Ok(done) if done.state == AssignmentState::Completed as i32 => {
                            completed.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(other) => ledger.lock().unwrap().violations.push(format!(
                            "report of {} returned {other:?}",
                            assignment.subtask_id
                        )),
                        Err(status) if status.code() == Code::FailedPrecondition => {
                            // Only legitimate if the server took it away (a lapsed lease): then
                            // a REVOKED event is on its way. Checked at the end.
                            ledger.lock().unwrap().fenced += 1;
                        }
                        Err(status) => ledger.lock().unwrap().violations.push(format!(
                            "report of {} failed: {status:?}",
                            assignment.subtask_id
                        )),
                    }
                });
            }
            WatchEventKind::Revoked => {
                let mut ledger = ledger.lock().unwrap();
                ledger.revoked += 1;
                ledger.let_go(&id, &assignment.subtask_id, assignment.epoch);
            }
            WatchEventKind::Unspecified => {
                ledger
                    .lock()
                    .unwrap()
                    .violations
                    .push(format!("{id}: event of unspecified kind: {message:?}"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_callers_and_agents_never_double_assign_and_finish_everything() {
    let server = TestServer::start().await;
    let started = Instant::now();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let completed = Arc::new(AtomicUsize::new(0));

    // A few connections, shared by many tasks (as real clients would).
    let mut connections = Vec::new();
    for _ in 0..4 {
        connections.push(server.connect().await);
    }

    let mut background = Vec::new();
    let mut c = server.clients.clone();
    for n in 0..SPECIALISTS {
        let id = specialist_id(n);
        let caps = [CAPABILITIES[n % 4], CAPABILITIES[(n + 1) % 4]];
        let registered = c
            .register_full(&id, "backend", &caps, MAX_CONCURRENCY, Availability::Online)
            .await;
        assert_eq!(registered.max_concurrency, MAX_CONCURRENCY);
        let mut clients = connections[n % connections.len()].clone();
        // The stream is open (subscribed) before any subtask is submitted.
        let stream = clients.watch(&id).await;
        background.push(tokio::spawn(agent(
            clients.clone(),
            id.clone(),
            stream,
            ledger.clone(),
            completed.clone(),
        )));
        // Heartbeats keep the lease (15 s by default) alive through a long run.
        let mut heartbeat_clients = clients;
        background.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(2));
            loop {
                interval.tick().await;
                let _ = heartbeat_clients
                    .register
                    .heartbeat(pb::HeartbeatRequest {
                        specialist_id: id.clone(),
                        availability: 0,
                        incarnation: heartbeat_clients.incarnations.get(&id),
                    })
                    .await;
            }
        }));
    }

    // The server's own view, sampled throughout: nobody above max_concurrency.
    let samples = Arc::new(AtomicUsize::new(0));
    {
        let mut clients = connections[0].clone();
        let (ledger, samples) = (ledger.clone(), samples.clone());
        background.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(10));
            loop {
                interval.tick().await;
                let Ok(page) = clients
                    .register
                    .list_specialists(pb::ListSpecialistsRequest {
                        specialist_type: "backend".into(),
                        page_size: 100,
                        page_token: String::new(),
                    })
                    .await
                else {
                    continue;
                };
                samples.fetch_add(1, Ordering::SeqCst);
                for specialist in page.into_inner().specialists {
                    if specialist.active_assignments > specialist.max_concurrency {
                        ledger.lock().unwrap().violations.push(format!(
                            "server reports {} holding {} of {}",
                            specialist.specialist_id,
                            specialist.active_assignments,
                            specialist.max_concurrency
                        ));
                    }
                }
            }
        }));
    }

    // 64 callers submit 3000 subtasks between them, all at once.
    let mut callers = Vec::new();
    for caller in 0..CALLERS {
        let mut clients = connections[caller % connections.len()].clone();
        callers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for n in (caller..SUBTASKS).step_by(CALLERS) {
                let mut request = task(&subtask_id(n), "backend", &[CAPABILITIES[n % 4]]);
                request.priority = (n % 3) as i32;
                request.payload = format!("payload of {n}").into_bytes();
                let assignment = clients.assign(request).await;
                outcomes.push((n, assignment));
            }
            outcomes
        }));
    }
    let mut submitted = 0;
    for caller in callers {
        let outcomes = tokio::time::timeout(TIME_LIMIT, caller)
            .await
            .expect("callers finish within the time limit")
            .expect("caller task");
        for (n, assignment) in outcomes {
            submitted += 1;
            assert_eq!(assignment.subtask_id, subtask_id(n));
            let state = state_of(&assignment);
            assert!(
                matches!(state, AssignmentState::Assigned | AssignmentState::Queued),
                "{}: {assignment:?}",
                assignment.subtask_id
            );
            assert_eq!(assignment.routed_type, "backend");
            if state == AssignmentState::Queued {
                assert!(assignment.queue_position >= 1, "{assignment:?}");
            }
        }
    }
    assert_eq!(submitted, SUBTASKS);

    // Wait for the agents to get through everything.
    let deadline = started + TIME_LIMIT;
    loop {
        {
            let ledger = ledger.lock().unwrap();
            assert!(
                ledger.violations.is_empty(),
                "violations: {:#?}",
                ledger.violations
            );
        }
        if completed.load(Ordering::SeqCst) >= SUBTASKS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {SUBTASKS} completed within {TIME_LIMIT:?}",
            completed.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let ledger_summary = {
        let ledger = ledger.lock().unwrap();
        assert!(
            ledger.violations.is_empty(),
            "violations: {:#?}",
            ledger.violations
        );
        assert!(
            ledger.holders.is_empty(),
            "still held: {:?}",
            ledger.holders
        );
        assert!(ledger.peak <= MAX_CONCURRENCY as usize);
        assert!(ledger.epochs.len() >= SUBTASKS);
        assert!(
            ledger.fenced <= ledger.revoked,
            "{} reports were refused as stale but only {} revocations were announced",
            ledger.fenced,
            ledger.revoked
        );
        (ledger.peak, ledger.revoked, ledger.epochs.len())
    };

    // The server agrees: every subtask COMPLETED, the queue empty, nobody holding anything.
    let mut c = server.clients.clone();
    let not_completed: Vec<pb::Assignment> = futures::stream::iter(0..SUBTASKS)
        .map(|n| {
            let mut c = connections[n % connections.len()].clone();
            async move { c.get(&subtask_id(n)).await }
        })
        .buffer_unordered(32)
        .filter(|assignment| {
            futures::future::ready(assignment.state != AssignmentState::Completed as i32)
        })
        .collect()
        .await;
    assert!(
        not_completed.is_empty(),
        "not COMPLETED at the end: {not_completed:#?}"
    );
    let stats = c.queue_stats("backend").await;
    assert_eq!(stats.depth, 0, "queue depth at the end");
    assert_eq!(stats.active_assignments, 0);
    assert_eq!(
        stats.free_capacity,
        u64::from(MAX_CONCURRENCY) * SPECIALISTS as u64
    );
    let mut total_completed = 0;
    for n in 0..SPECIALISTS {
        let specialist = c.specialist(&specialist_id(n)).await;
        assert_eq!(specialist.active_assignments, 0);
        let performance = c
            .perf
            .get_performance(pb::GetPerformanceRequest {
                specialist_id: specialist_id(n),
            })
            .await
            .unwrap()
            .into_inner();
        total_completed += performance.completed;
    }
    assert_eq!(
        total_completed, SUBTASKS as u64,
        "one recorded outcome per subtask"
    );
    eprintln!(
        "{SUBTASKS} subtasks in {:?}; peak held per specialist {}, revocations {}, epochs {}",
        started.elapsed(),
        ledger_summary.0,
        ledger_summary.1,
        ledger_summary.2
    );
    assert!(
        samples.load(Ordering::SeqCst) > 0,
        "the server-side sampler ran"
    );
    for handle in background {
        handle.abort();
    }
}
