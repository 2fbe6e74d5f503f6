//! Redis with `appendonly yes` + `appendfsync always` (a private redis-server, never the shared
//! one), SIGKILLed and restarted while callers keep submitting: every subtask whose Assign was
//! answered OK is there afterwards, and every call was answered OK or with a clear UNAVAILABLE (no
//! NOSCRIPT, no INTERNAL) although the restarted Redis knows no scripts. A test binary of its own:
//! its fsync-bound load would slow the timing-sensitive fault tests if they ran beside it.

use crate::support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::redis_server::PrivateRedis;
use support::*;
use tonic::Code;

const CALLERS: usize = 4;
/// Acknowledged subtasks wanted before the kill, and again after the restart.
const PER_PHASE: usize = 150;
const CALL_DEADLINE: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_subtasks_survive_a_killed_redis_with_an_fsynced_aof() {
    let mut redis = PrivateRedis::start_persistent().await;
    let url = redis.url();
    let namespace = unique_namespace("aof");
    let server = TestServer::start_with(&[
        "--redis-url",
        &url,
        "--redis-namespace",
        &namespace,
        "--store-timeout-ms",
        "1000",
        "--breaker-open-ms",
        "100",
    ])
    .await;
    let mut c = server.clients.clone();
    c.register_full(
        "aof-agent",
        "backend",
        &["rust"],
        1_000,
        Availability::Online,
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for caller in 0..CALLERS {
        let mut clients = server.clients.clone();
        let (stop, acknowledged, refused) = (stop.clone(), acknowledged.clone(), refused.clone());
        callers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let id = format!("aof-{caller}-{n}");
                n += 1;
                let mut request = tonic::Request::new(task(&id, "backend", &["rust"]));
                request.set_timeout(CALL_DEADLINE);
                match clients.assign.assign(request).await {
                    Ok(_) => acknowledged.lock().push(id),
                    Err(status) => {
                        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                        assert!(
                            status.message().starts_with("redis unavailable: ")
                                || status.message().starts_with("redis circuit breaker open"),
                            "UNAVAILABLE without a clear message: {status:?}"
                        );
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    let acknowledged_count = || acknowledged.lock().len();
    poll_until("load before the kill", EVENTUALLY, || async {
        (acknowledged_count() >= PER_PHASE).then_some(())
    })
    .await;
    redis.kill();
    poll_until("a call refused while redis is down", EVENTUALLY, || async {
        (refused.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    let before_restart = acknowledged_count();
    redis.restart().await;
    poll_until("load after the restart", EVENTUALLY, || async {
        (acknowledged_count() >= before_restart + PER_PHASE).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for caller in callers {
        caller
            .await
            .expect("a caller saw an answer other than OK or a clear UNAVAILABLE");
    }

    let acknowledged = acknowledged.lock().clone();
    let refused = refused.load(Ordering::SeqCst);
    let mut lost = Vec::new();
    for id in &acknowledged {
        match c
            .assign
            .get_assignment(pb::GetAssignmentRequest {
                subtask_id: id.clone(),
            })
            .await
        {
            Ok(found) => {
                let assignment = found.into_inner().assignment.expect("an assignment");
                let state = state_of(&assignment);
                assert!(
                    matches!(state, AssignmentState::Assigned | AssignmentState::Queued),
                    "{id} is {state:?}"
                );
            }
            Err(status) if status.code() == Code::NotFound => lost.push(id.clone()),
            Err(status) => panic!("get {id}: {status:?}"),
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged subtasks lost: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
    // Every acknowledged subtask is held or queued once; a refused one may exist too (Redis ran
    // it, then died before the reply), but nothing else does.
    let agent = c.specialist("aof-agent").await;
    let queued = c.queue_stats("backend").await.depth;
    let present = agent.active_assignments as usize + queued as usize;
    assert!(
        (acknowledged.len()..=acknowledged.len() + refused).contains(&present),
        "{present} subtasks held or queued; {} acknowledged, {refused} refused",
        acknowledged.len()
    );
}
