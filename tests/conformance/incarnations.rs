//! Agent incarnations: each Register starts one; Heartbeat and WatchAssignments must carry it,
//! Report and Release may; a new incarnation of a known id ends the old one and retries its
//! in-flight work as a new attempt; a live incarnation is not replaced without take_over.

use tonic::Code;

use crate::support::*;

fn register_request(id: &str, incarnation: &str, take_over: bool) -> pb::RegisterRequest {
    pb::RegisterRequest {
        specialist_id: id.into(),
        specialist_type: "backend".into(),
        capabilities: strings(&["rust"]),
        incarnation: incarnation.into(),
        take_over,
        ..Default::default()
    }
}

/// Registers `id` as a new process would: the incarnation it started.
async fn start(c: &mut Clients, id: &str, take_over: bool) -> Result<String, tonic::Status> {
    c.register
        .register(register_request(id, "", take_over))
        .await
        .map(|reply| reply.into_inner().incarnation)
}

async fn heartbeat(
    c: &mut Clients,
    id: &str,
    incarnation: &str,
) -> Result<pb::HeartbeatResponse, tonic::Status> {
    c.register
        .heartbeat(pb::HeartbeatRequest {
            specialist_id: id.into(),
            availability: 0,
            incarnation: incarnation.into(),
        })
        .await
        .map(|reply| reply.into_inner())
}

async fn watch(
    c: &mut Clients,
    id: &str,
    incarnation: &str,
) -> Result<tonic::Streaming<pb::WatchAssignmentsResponse>, tonic::Status> {
    c.assign
        .watch_assignments(pb::WatchAssignmentsRequest {
            specialist_id: id.into(),
            incarnation: incarnation.into(),
        })
        .await
        .map(|reply| reply.into_inner())
}

async fn report(
    c: &mut Clients,
    held: &pb::Assignment,
    incarnation: &str,
) -> Result<pb::Assignment, tonic::Status> {
    c.perf
        .report_completion(pb::ReportCompletionRequest {
            subtask_id: held.subtask_id.clone(),
            specialist_id: held.specialist_id.clone(),
            epoch: held.epoch,
            success: true,
            completion_time_ms: 5,
            quality_score: 0.8,
            detail: String::new(),
            incarnation: incarnation.into(),
        })
        .await
        .map(|reply| reply.into_inner().assignment.expect("assignment"))
}

#[tokio::test]
async fn heartbeat_and_watch_require_the_current_incarnation() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let incarnation = start(&mut c, "inc-1", false).await.expect("register");
    assert_eq!(incarnation.len(), 24, "{incarnation:?}");
    assert!(incarnation.bytes().all(|byte| byte.is_ascii_hexdigit()));

    assert_invalid(heartbeat(&mut c, "inc-1", "").await, "incarnation");
    assert_invalid(heartbeat(&mut c, "inc-1", "not-hex!").await, "incarnation");
    assert_invalid(watch(&mut c, "inc-1", "").await, "incarnation");
    let status = assert_code(
        heartbeat(&mut c, "inc-1", "abcdef").await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("has ended"), "{status:?}");
    assert_code(
        watch(&mut c, "inc-1", "abcdef").await,
        Code::FailedPrecondition,
    );
    heartbeat(&mut c, "inc-1", &incarnation)
        .await
        .expect("the current incarnation heartbeats");
    watch(&mut c, "inc-1", &incarnation)
        .await
        .expect("the current incarnation watches");

    // Register under its own incarnation updates in place; take_over with it is contradictory.
    let mut update = register_request("inc-1", &incarnation, false);
    update.capabilities = strings(&["rust", "sql"]);
    let updated = c
        .register
        .register(update)
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.incarnation, incarnation);
    assert_eq!(
        updated.specialist.unwrap().capabilities,
        strings(&["rust", "sql"])
    );
    assert_invalid(
        c.register
            .register(register_request("inc-1", &incarnation, true))
            .await,
        "take_over",
    );
    // An ended (or never issued) incarnation cannot update it.
    assert_code(
        c.register
            .register(register_request("inc-1", "abcdef", false))
            .await,
        Code::FailedPrecondition,
    );

    // An id the store no longer knows (deregistered here; lost with a store's data in production)
    // is registered anew under the incarnation its process keeps.
    c.deregister("inc-1").await;
    let again = c
        .register
        .register(register_request("inc-1", &incarnation, false))
        .await
        .expect("registered anew")
        .into_inner();
    assert_eq!(again.incarnation, incarnation);
    heartbeat(&mut c, "inc-1", &incarnation)
        .await
        .expect("the kept incarnation heartbeats");
}

#[tokio::test]
async fn a_live_incarnation_is_replaced_only_with_take_over() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let first = start(&mut c, "inc-2", false).await.expect("register");
    let status = assert_code(start(&mut c, "inc-2", false).await, Code::AlreadyExists);
    assert!(status.message().contains("take_over"), "{status:?}");
    heartbeat(&mut c, "inc-2", &first)
        .await
        .expect("the refused register changed nothing");

    let second = start(&mut c, "inc-2", true).await.expect("take over");
    assert_ne!(first, second);
    assert_code(
        heartbeat(&mut c, "inc-2", &first).await,
        Code::FailedPrecondition,
    );
    heartbeat(&mut c, "inc-2", &second)
        .await
        .expect("the new incarnation heartbeats");
}

/// A restarted process (a new incarnation) ends the old one: its stream fails, its work is retried
/// as a new attempt with a new epoch, and its reports are refused.
#[tokio::test]
async fn a_new_incarnation_retries_the_old_ones_work() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let old = start(&mut c, "inc-3", false).await.expect("register");
    let mut old_stream = watch(&mut c, "inc-3", &old).await.expect("watch");
    let held = c.assign_simple("inc-task-1", "backend", &["rust"]).await;
    assert_assigned_to(&held, "inc-3");
    assert_eq!(held.attempt, 1);
    let event = next_event(&mut old_stream).await;
    assert_eq!(event_kind(&event), WatchEventKind::Assigned);

    let new = start(&mut c, "inc-3", true).await.expect("take over");
    // The old stream ends with FAILED_PRECONDITION (a REVOKED may come first).
    let ended = tokio::time::timeout(EVENTUALLY, async {
        loop {
            match old_stream.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the old stream ends");
    let status = ended.expect_err("the old stream fails");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    // The subtask went back and was handed out again (to the new incarnation, the only one).
    let retried = c.get("inc-task-1").await;
    assert_assigned_to(&retried, "inc-3");
    assert_eq!(retried.attempt, 2);
    assert!(retried.epoch > held.epoch);
    let mut new_stream = watch(&mut c, "inc-3", &new).await.expect("watch");
    let replayed = next_event(&mut new_stream).await;
    assert_eq!(event_assignment(&replayed).epoch, retried.epoch);

    // The old process's report is refused: its incarnation ended (and its epoch is stale).
    assert_code(report(&mut c, &held, &old).await, Code::FailedPrecondition);
    assert_code(report(&mut c, &held, "").await, Code::FailedPrecondition);
    let done = report(&mut c, &retried, &new).await.expect("report");
    assert_state(&done, AssignmentState::Completed);
}

/// An agent that crashes on a poison subtask and restarts under its id spends an attempt each
/// time: the subtask FAILS after --max-attempts, and the agent goes on serving others.
#[tokio::test]
async fn a_poison_subtask_fails_after_max_attempts_of_restarts() {
    let server = TestServer::start_with(&["--max-attempts", "3"]).await;
    let mut c = server.clients.clone();
    start(&mut c, "inc-4", false).await.expect("register");
    let poison = c.assign_simple("inc-poison", "backend", &["rust"]).await;
    assert_assigned_to(&poison, "inc-4");
    for attempt in 2..=3 {
        start(&mut c, "inc-4", true).await.expect("restart");
        let retried = c.get("inc-poison").await;
        assert_assigned_to(&retried, "inc-4");
        assert_eq!(retried.attempt, attempt);
    }
    let last = start(&mut c, "inc-4", true).await.expect("restart");
    let failed = c.get("inc-poison").await;
    assert_state(&failed, AssignmentState::Failed);
    assert!(failed.detail.contains("no attempts left"), "{failed:?}");

    let next = c.assign_simple("inc-healthy", "backend", &["rust"]).await;
    assert_assigned_to(&next, "inc-4");
    let done = report(&mut c, &next, &last).await.expect("report");
    assert_state(&done, AssignmentState::Completed);
}

/// Once the lease lapsed, a new process registers the id without take_over.
#[tokio::test]
async fn a_lapsed_incarnation_is_replaced_without_take_over() {
    let server = TestServer::start_with(FAST_LEASES).await;
    let mut c = server.clients.clone();
    let first = start(&mut c, "inc-5", false).await.expect("register");
    poll_until("the lease lapses", EVENTUALLY, || {
        let mut c = c.clone();
        async move {
            let specialist = c.specialist("inc-5").await;
            (specialist.availability == Availability::Offline as i32).then_some(())
        }
    })
    .await;
    let second = start(&mut c, "inc-5", false)
        .await
        .expect("a lapsed incarnation is replaced");
    assert_ne!(first, second);
    assert_code(
        heartbeat(&mut c, "inc-5", &first).await,
        Code::FailedPrecondition,
    );
    heartbeat(&mut c, "inc-5", &second)
        .await
        .expect("heartbeat");
}
