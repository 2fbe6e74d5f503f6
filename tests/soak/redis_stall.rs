//! A Redis stall longer than the lease is not the agents' fault: two agents heartbeat through a
//! SIGSTOPped private Redis (their heartbeats fail), and when it is back nothing they hold is
//! revoked, their reports with the first epochs succeed, calls succeed again within 2 s although
//! the breaker's open time is 30 s, and health said NOT_SERVING while Redis did not answer. A third
//! agent that never heartbeats still lapses, a lease TTL after Redis is back: the sweeper did run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support;
use support::redis_server::PrivateRedis;
use support::*;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::HealthCheckRequest;

const LEASE_TTL: Duration = Duration::from_millis(3_000);
/// Longer than the lease: without the outage rule every lease would lapse.
const STALL: Duration = Duration::from_millis(5_000);
const HEARTBEAT_EVERY: Duration = Duration::from_millis(300);
/// Calls succeed again within this of Redis answering (the bound).
const RECOVERY: Duration = Duration::from_secs(2);
const LIVE: [&str; 2] = ["stall-a", "stall-b"];

async fn status(clients: &mut Clients, service: &str) -> Option<ServingStatus> {
    let reply = clients
        .health
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(reply.into_inner().status).ok()
}

/// Heartbeats `id` until `stop`, ignoring failures, as an agent does.
async fn heartbeat_forever(mut clients: Clients, id: &'static str, stop: Arc<Mutex<bool>>) {
    while !*stop.lock().unwrap() {
        let _ = clients
            .register
            .heartbeat(pb::HeartbeatRequest {
                specialist_id: id.to_string(),
                availability: Availability::Online as i32,
                incarnation: clients.incarnations.get(id),
            })
            .await;
        tokio::time::sleep(HEARTBEAT_EVERY).await;
    }
}

/// Every watch event of `id` until its stream ends: (kind, subtask, epoch).
async fn record_events(
    mut clients: Clients,
    id: &'static str,
    seen: Arc<Mutex<Vec<(WatchEventKind, String, u64)>>>,
) {
    let mut stream = clients.watch(id).await;
    while let Ok(Some(event)) = stream.message().await {
        let assignment = event_assignment(&event);
        seen.lock().unwrap().push((
            event_kind(&event),
            assignment.subtask_id.clone(),
            assignment.epoch,
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_longer_than_the_lease_revokes_nothing_and_recovers_within_two_seconds() {
    let redis = PrivateRedis::start().await;
    let url = redis.url();
    let namespace = unique_namespace("stall");
    let ttl = LEASE_TTL.as_millis().to_string();
    let server = TestServer::start_with(
        &[
            "--redis-url",
            &url,
            "--redis-namespace",
            &namespace,
            "--lease-ttl-ms",
            &ttl,
        ]
        .into_iter()
        .chain(crate::OUTAGE_FLAGS)
        .collect::<Vec<_>>(),
    )
    .await;
    let mut c = server.clients.clone();
    let stop = Arc::new(Mutex::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut held = Vec::new();
    for id in LIVE {
        c.register_full(id, "backend", &["rust"], 4, Availability::Online)
            .await;
        tokio::spawn(record_events(server.connect().await, id, seen.clone()));
        tokio::spawn(heartbeat_forever(server.connect().await, id, stop.clone()));
    }
    for n in 0..4 {
        held.push(
            c.assign_simple(&format!("stall-task-{n}"), "backend", &["rust"])
                .await,
        );
    }
    // Never heartbeats: its lease lapses once the outage rule lets it.
    c.register_full("stall-dead", "backend", &["rust"], 1, Availability::Online)
        .await;
    // Each live agent holds two of four; the idle newcomer scores higher on load and wins.
    let abandoned = c
        .assign_simple("stall-abandoned", "backend", &["rust"])
        .await;
    assert_assigned_to(&abandoned, "stall-dead");
    for assignment in &held {
        assert!(
            LIVE.contains(&assignment.specialist_id.as_str()),
            "{assignment:?}"
        );
    }

    redis.pause();
    let paused_at = Instant::now();
    poll_until("health NOT_SERVING while redis is stopped", STALL, || {
        let mut c = c.clone();
        async move {
            let register = status(&mut c, "switchboard.v1.RegisterService").await;
            let overall = status(&mut c, "").await;
            (register == Some(ServingStatus::NotServing)
                && overall == Some(ServingStatus::NotServing))
            .then_some(())
        }
    })
    .await;
    let remaining = STALL.saturating_sub(paused_at.elapsed());
    tokio::time::sleep(remaining).await; // the stall itself: the fault, not a wait for readiness
    redis.resume();
    let resumed_at = Instant::now();

    poll_until("a call succeeds after redis is back", RECOVERY * 3, || {
        let mut c = c.clone();
        async move {
            c.register
                .get_specialist(pb::GetSpecialistRequest {
                    specialist_id: "stall-a".into(),
                })
                .await
                .ok()
        }
    })
    .await;
    let recovered_in = resumed_at.elapsed();
    assert!(
        recovered_in <= RECOVERY,
        "calls failed for {recovered_in:?} after redis was back (breaker open time 30 s)"
    );
    poll_until("health SERVING again", RECOVERY, || {
        let mut c = c.clone();
        async move {
            (status(&mut c, "switchboard.v1.RegisterService").await == Some(ServingStatus::Serving))
                .then_some(())
        }
    })
    .await;

    // The agent that never heartbeats lapses, but not before a lease TTL after Redis is back
    // (everyone gets a full lease to heartbeat again); that it lapses shows the sweeper ran.
    eventually_assignment(
        &c,
        "stall-abandoned",
        "taken from the lapsed agent",
        |now| now.specialist_id != "stall-dead",
    )
    .await;
    let lapsed_after = resumed_at.elapsed();
    assert!(
        lapsed_after >= LEASE_TTL,
        "a lease lapsed {lapsed_after:?} after redis was back, within the lease TTL {LEASE_TTL:?}"
    );

    // The agents that heartbeated kept everything, with the same epochs, and were never told to
    // stop; their reports succeed.
    for assignment in &held {
        let now = c.get(&assignment.subtask_id).await;
        assert_eq!(now.specialist_id, assignment.specialist_id, "{now:?}");
        assert_eq!(now.epoch, assignment.epoch, "{now:?}");
        assert_eq!(state_of(&now), AssignmentState::Assigned, "{now:?}");
    }
    let revoked: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(kind, _, _)| *kind == WatchEventKind::Revoked)
        .cloned()
        .collect();
    assert!(revoked.is_empty(), "revoked after the stall: {revoked:?}");
    for assignment in &held {
        assert_state(
            &c.report(assignment, true).await,
            AssignmentState::Completed,
        );
    }
    *stop.lock().unwrap() = true;
}
