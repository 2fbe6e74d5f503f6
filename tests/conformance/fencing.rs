//! Fencing epochs on Release and ReportCompletion, idempotent reports, release and cancel semantics,
//! lease expiry with requeue, attempt counting and max attempts.

use crate::support;

use std::time::Duration;

use support::*;
use tonic::Code;

/// Keeps a specialist's lease alive until the returned handle is aborted.
fn keep_alive(clients: &Clients, specialist_id: &str) -> tokio::task::JoinHandle<()> {
    let mut clients = clients.clone();
    let specialist_id = specialist_id.to_string();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(100));
        loop {
            interval.tick().await;
            let _ = clients
                .register
                .heartbeat(pb::HeartbeatRequest {
                    specialist_id: specialist_id.clone(),
                    availability: 0,
                    incarnation: clients.incarnations.get(&specialist_id),
                })
                .await;
        }
    })
}

async fn performance_of(c: &mut Clients, id: &str) -> pb::GetPerformanceResponse {
    c.perf
        .get_performance(pb::GetPerformanceRequest {
            specialist_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn stale_epoch_or_wrong_specialist_is_failed_precondition_and_changes_nothing() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("fe-holder", "backend", &["rust"]).await;
    let held = c.assign_simple("fe-task", "backend", &["rust"]).await;
    assert_assigned_to(&held, "fe-holder");
    c.register("fe-other", "backend", &["rust"]).await;
    let epoch = held.epoch;

    let attempts = [
        ("fe-holder", epoch + 1),
        ("fe-holder", epoch - 1),
        ("fe-other", epoch),
        ("fe-nobody", epoch),
    ];
    for (specialist, stale_epoch) in attempts {
        if stale_epoch == 0 {
            continue;
        }
        let status = assert_code(
            c.try_report("fe-task", specialist, stale_epoch, true).await,
            Code::FailedPrecondition,
        );
        assert!(!status.message().is_empty());
        assert_code(
            c.try_report("fe-task", specialist, stale_epoch, false)
                .await,
            Code::FailedPrecondition,
        );
        assert_code(
            c.try_release("fe-task", specialist, stale_epoch).await,
            Code::FailedPrecondition,
        );
    }
    assert_eq!(c.get("fe-task").await, held, "nothing changed");
    assert_eq!(performance_of(&mut c, "fe-holder").await.completed, 0);
    assert_eq!(performance_of(&mut c, "fe-other").await.completed, 0);
    assert_eq!(c.specialist("fe-holder").await.active_assignments, 1);

    // Unknown subtask: NOT_FOUND.
    assert_code(
        c.try_report("fe-unknown", "fe-holder", epoch, true).await,
        Code::NotFound,
    );
    assert_code(
        c.try_release("fe-unknown", "fe-holder", epoch).await,
        Code::NotFound,
    );

    // The right holder and epoch still work.
    assert_state(&c.report(&held, true).await, AssignmentState::Completed);
}

#[tokio::test]
async fn queued_subtasks_cannot_be_reported_or_released() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register_full("fq-1", "docs", &[], 1, Availability::Online)
        .await;
    let held = c.assign_simple("fq-held", "docs", &[]).await;
    c.assign_simple("fq-queued", "docs", &[]).await;
    assert_code(
        c.try_report("fq-queued", "fq-1", held.epoch, true).await,
        Code::FailedPrecondition,
    );
    assert_code(
        c.try_release("fq-queued", "fq-1", held.epoch).await,
        Code::FailedPrecondition,
    );
    assert_state(&c.get("fq-queued").await, AssignmentState::Queued);
}

#[tokio::test]
async fn a_repeated_report_is_idempotent() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("rp-1", "testing", &[]).await;
    c.register("rp-2", "testing", &[]).await;
    let held = c.assign_simple("rp-task", "testing", &[]).await;
    let first = c.report(&held, true).await;
    assert_state(&first, AssignmentState::Completed);
    assert_eq!(
        first.specialist_id, held.specialist_id,
        "holder kept once COMPLETED"
    );
    assert_eq!(first.epoch, held.epoch);
    assert!(first.finished_at.is_some());

    let repeat = c.report(&held, true).await;
    assert_eq!(
        repeat, first,
        "a retried report returns the recorded result"
    );
    let performance = performance_of(&mut c, &held.specialist_id).await;
    assert_eq!(
        performance.completed, 1,
        "a retried report is not counted twice"
    );

    // Anyone else, or another epoch, is refused.
    let other = if held.specialist_id == "rp-1" {
        "rp-2"
    } else {
        "rp-1"
    };
    assert_code(
        c.try_report("rp-task", other, held.epoch, true).await,
        Code::FailedPrecondition,
    );
    assert_code(
        c.try_report("rp-task", &held.specialist_id, held.epoch + 1, true)
            .await,
        Code::FailedPrecondition,
    );
    assert_code(
        c.try_release("rp-task", &held.specialist_id, held.epoch)
            .await,
        Code::FailedPrecondition,
    );

    // The same holds for a failure report.
    let doomed = c.assign_simple("rp-doomed", "testing", &[]).await;
    let failed = c.report(&doomed, false).await;
    assert_state(&failed, AssignmentState::Failed);
    assert_eq!(c.report(&doomed, false).await, failed);
}

#[tokio::test]
async fn release_requeues_at_the_head_with_the_next_attempt() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register_full("rq-a", "frontend", &[], 1, Availability::Online)
        .await;
    let held = c.assign_simple("rq-task", "frontend", &[]).await;
    assert_eq!(held.attempt, 1);
    c.assign_simple("rq-next-1", "frontend", &[]).await;
    c.assign_simple("rq-next-2", "frontend", &[]).await;

    let released = c.release(&held).await;
    assert_state(&released, AssignmentState::Queued);
    assert_eq!(released.attempt, 2);
    assert_eq!(released.queue_position, 1, "at the head");
    assert_eq!(released.specialist_id, "");
    assert!(
        released.detail.contains("test release"),
        "detail says what the release said: {}",
        released.detail
    );
    // rq-a had room again but is not offered what it gave back: it took the next one.
    let next = c.get("rq-next-1").await;
    assert_assigned_to(&next, "rq-a");
    assert_eq!(
        c.queued_ids("frontend").await,
        strings(&["rq-task", "rq-next-2"])
    );

    // The released epoch is dead.
    assert_code(
        c.try_report("rq-task", "rq-a", held.epoch, true).await,
        Code::FailedPrecondition,
    );
    assert_code(
        c.try_release("rq-task", "rq-a", held.epoch).await,
        Code::FailedPrecondition,
    );

    // Another specialist takes it from the head.
    c.register_full("rq-b", "frontend", &[], 1, Availability::Online)
        .await;
    let retaken = c.get("rq-task").await;
    assert_assigned_to(&retaken, "rq-b");
    assert_eq!(retaken.attempt, 2);
    assert!(
        retaken.epoch > next.epoch,
        "epochs increase across the store"
    );

    // rq-b gives it back too: attempt 3, and rq-b takes rq-next-2 instead.
    let again = c.release(&retaken).await;
    assert_state(&again, AssignmentState::Queued);
    assert_eq!(again.attempt, 3);
    assert_assigned_to(&c.get("rq-next-2").await, "rq-b");

    // Both releasers are free but excluded: it stays queued.
    for id in ["rq-next-1", "rq-next-2"] {
        let holding = c.get(id).await;
        c.report(&holding, true).await;
    }
    let stuck = c.get("rq-task").await;
    assert_state(&stuck, AssignmentState::Queued);
    let stats = c.queue_stats("frontend").await;
    assert_eq!(stats.depth, 1);
    assert_eq!(stats.free_capacity, 2);

    // A third specialist finishes the job.
    c.register("rq-c", "frontend", &[]).await;
    let third = c.get("rq-task").await;
    assert_assigned_to(&third, "rq-c");
    assert_eq!(third.attempt, 3);
}

#[tokio::test]
async fn release_past_max_attempts_fails_the_subtask() {
    let server = TestServer::start_with(&["--max-attempts", "2"]).await;
    let mut c = server.clients.clone();
    c.register("ma-a", "docs", &[]).await;
    c.register("ma-b", "docs", &[]).await;
    c.register("ma-c", "docs", &[]).await;
    let dependent = {
        let first = c.assign_simple("ma-task", "docs", &[]).await;
        let mut request = task("ma-dependent", "docs", &[]);
        request.depends_on = strings(&["ma-task"]);
        assert_state(&c.assign(request).await, AssignmentState::Blocked);
        first
    };
    let second = c.release(&dependent).await;
    assert_state(&second, AssignmentState::Assigned);
    assert_eq!(second.attempt, 2);
    assert_ne!(
        second.specialist_id, dependent.specialist_id,
        "the releaser is not offered it again"
    );
    let last = c.release(&second).await;
    assert_state(&last, AssignmentState::Failed);
    assert_eq!(last.attempt, 2);
    assert!(!last.detail.is_empty());
    assert_state(&c.get("ma-dependent").await, AssignmentState::Failed);
    for id in ["ma-a", "ma-b", "ma-c"] {
        assert_eq!(c.specialist(id).await.active_assignments, 0);
    }
}

#[tokio::test]
async fn cancel_semantics() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register_full("cn-1", "backend", &[], 1, Availability::Online)
        .await;
    let mut watch = c.watch("cn-1").await;
    let held = c.assign_simple("cn-held", "backend", &[]).await;
    let assigned = next_event(&mut watch).await;
    assert_eq!(event_kind(&assigned), WatchEventKind::Assigned);
    assert_eq!(event_assignment(&assigned).subtask_id, "cn-held");
    c.assign_simple("cn-queued", "backend", &[]).await;
    c.assign_simple("cn-queued-2", "backend", &[]).await;
    let mut blocked = task("cn-blocked", "backend", &[]);
    blocked.depends_on = strings(&["cn-queued-2"]);
    c.assign(blocked).await;

    // QUEUED -> CANCELLED and out of the queue.
    let cancelled = c.cancel("cn-queued").await;
    assert_state(&cancelled, AssignmentState::Cancelled);
    assert_eq!(cancelled.queue_position, 0);
    assert!(cancelled.finished_at.is_some());
    assert!(
        cancelled.detail.contains("test cancel"),
        "{}",
        cancelled.detail
    );
    assert_eq!(c.queued_ids("backend").await, strings(&["cn-queued-2"]));

    // BLOCKED -> CANCELLED.
    assert_state(&c.cancel("cn-blocked").await, AssignmentState::Cancelled);
    assert_eq!(c.queue_stats("backend").await.blocked, 0);

    // ASSIGNED -> CANCELLED: the holder hears REVOKED, then gets the next queued subtask.
    let gone = c.cancel("cn-held").await;
    assert_state(&gone, AssignmentState::Cancelled);
    let revoked = next_event(&mut watch).await;
    assert_eq!(event_kind(&revoked), WatchEventKind::Revoked);
    assert_eq!(event_assignment(&revoked).subtask_id, "cn-held");
    let next = next_event(&mut watch).await;
    assert_eq!(event_kind(&next), WatchEventKind::Assigned);
    assert_eq!(event_assignment(&next).subtask_id, "cn-queued-2");
    assert_assigned_to(&c.get("cn-queued-2").await, "cn-1");
    assert_code(
        c.try_report("cn-held", "cn-1", held.epoch, true).await,
        Code::FailedPrecondition,
    );
    assert_code(
        c.try_release("cn-held", "cn-1", held.epoch).await,
        Code::FailedPrecondition,
    );

    // Cancelling again returns the cancelled subtask.
    let twice = c.cancel("cn-held").await;
    assert_state(&twice, AssignmentState::Cancelled);

    // COMPLETED and FAILED cannot be cancelled.
    let done = c.report(&event_assignment(&next).clone(), true).await;
    assert_state(&done, AssignmentState::Completed);
    assert_code(c.try_cancel("cn-queued-2").await, Code::FailedPrecondition);
    assert_state(&c.get("cn-queued-2").await, AssignmentState::Completed);
    let doomed = c.assign_simple("cn-doomed", "backend", &[]).await;
    c.report(&doomed, false).await;
    assert_code(c.try_cancel("cn-doomed").await, Code::FailedPrecondition);
    assert_code(c.try_cancel("cn-unknown").await, Code::NotFound);
}

#[tokio::test]
async fn lease_expiry_requeues_to_another_specialist_then_fails_after_max_attempts() {
    let mut flags = FAST_LEASES.to_vec();
    flags.extend(["--max-attempts", "2"]);
    let server = TestServer::start_with(&flags).await;
    let mut c = server.clients.clone();

    c.register_full("le-old", "testing", &["pytest"], 1, Availability::Online)
        .await;
    let held = c.assign_simple("le-task", "testing", &["pytest"]).await;
    assert_assigned_to(&held, "le-old");
    let mut old_watch = c.watch("le-old").await;
    let replay = next_event(&mut old_watch).await;
    assert_eq!(event_assignment(&replay).subtask_id, "le-task");

    // The new specialist stays alive; the old one never heartbeats.
    c.register_full("le-new", "testing", &["pytest"], 1, Availability::Online)
        .await;
    let heartbeats = keep_alive(&c, "le-new");

    let moved = eventually_assignment(&c, "le-task", "reassigned to le-new", |a| {
        a.specialist_id == "le-new"
    })
    .await;
    assert_assigned_to(&moved, "le-new");
    assert_eq!(moved.attempt, 2, "a lapsed lease costs an attempt");
    assert!(moved.epoch > held.epoch);

    let old = c.specialist("le-old").await;
    assert_eq!(old.availability, Availability::Offline as i32);
    assert_eq!(old.active_assignments, 0);
    let revoked = next_event(&mut old_watch).await;
    assert_eq!(
        event_kind(&revoked),
        WatchEventKind::Revoked,
        "the old holder is told"
    );
    assert_eq!(event_assignment(&revoked).subtask_id, "le-task");

    // The old holder wakes up and reports: fenced off.
    assert_code(
        c.try_report("le-task", "le-old", held.epoch, true).await,
        Code::FailedPrecondition,
    );
    assert_code(
        c.try_release("le-task", "le-old", held.epoch).await,
        Code::FailedPrecondition,
    );
    assert_eq!(c.get("le-task").await.specialist_id, "le-new");

    // le-new stops heartbeating: the second lapse exceeds max attempts (2).
    heartbeats.abort();
    let failed = eventually_assignment(&c, "le-task", "FAILED after max attempts", |a| {
        a.state == AssignmentState::Failed as i32
    })
    .await;
    assert_eq!(failed.attempt, 2);
    assert!(!failed.detail.is_empty(), "says why it failed");
    assert_code(
        c.try_report("le-task", "le-new", moved.epoch, true).await,
        Code::FailedPrecondition,
    );
    assert_eq!(c.queue_stats("testing").await.depth, 0);
}

#[tokio::test]
async fn lapsed_specialist_is_never_picked_and_its_work_waits_for_someone_alive() {
    let server = TestServer::start_with(FAST_LEASES).await;
    let mut c = server.clients.clone();
    c.register("lp-1", "docs", &[]).await;
    let held = c.assign_simple("lp-held", "docs", &[]).await;
    assert_assigned_to(&held, "lp-1");
    let requeued = eventually_assignment(&c, "lp-held", "requeued after the lease lapsed", |a| {
        a.state == AssignmentState::Queued as i32
    })
    .await;
    assert_eq!(requeued.attempt, 2);
    assert_eq!(requeued.queue_position, 1);
    let fresh = c.assign_simple("lp-fresh", "docs", &[]).await;
    assert_state(&fresh, AssignmentState::Queued);
    assert_eq!(fresh.queue_position, 2, "behind the requeued head");

    // Back online: it gets the requeued head first.
    c.heartbeat("lp-1", Availability::Unspecified).await;
    let back = c.get("lp-held").await;
    assert_assigned_to(&back, "lp-1");
    assert_eq!(back.attempt, 2);
    assert_assigned_to(&c.get("lp-fresh").await, "lp-1");
}

#[tokio::test]
async fn a_lapsed_lease_is_never_picked_even_before_the_sweep() {
    // The sweeper runs once a minute here: only the lease itself can keep work away.
    let server = TestServer::start_with(&[
        "--lease-ttl-ms",
        "600",
        "--heartbeat-interval-ms",
        "100",
        "--sweep-interval-ms",
        "60000",
    ])
    .await;
    let mut c = server.clients.clone();
    c.register("ns-1", "backend", &[]).await;
    // Queue stats count a lapsed lease as offline with no free capacity.
    poll_until("ns-1's lease to lapse", EVENTUALLY, || {
        let mut c = c.clone();
        async move {
            let stats = c.queue_stats("backend").await;
            (stats.free_capacity == 0).then_some(())
        }
    })
    .await;
    let stats = c.queue_stats("backend").await;
    assert_eq!(
        stats.specialists.unwrap().offline,
        1,
        "a lapsed lease counts as offline"
    );
    let queued = c.assign_simple("ns-task", "backend", &[]).await;
    assert_state(&queued, AssignmentState::Queued);

    // A heartbeat renews the lease and the queue drains at once.
    c.heartbeat("ns-1", Availability::Unspecified).await;
    assert_assigned_to(&c.get("ns-task").await, "ns-1");
}

#[tokio::test]
async fn a_subtask_failed_by_lease_expiry_fails_its_dependents() {
    let mut flags = FAST_LEASES.to_vec();
    flags.extend(["--max-attempts", "1"]);
    let server = TestServer::start_with(&flags).await;
    let mut c = server.clients.clone();
    c.register("lf-1", "docs", &[]).await;
    let held = c.assign_simple("lf-task", "docs", &[]).await;
    assert_assigned_to(&held, "lf-1");
    let mut dependent = task("lf-dependent", "docs", &[]);
    dependent.depends_on = strings(&["lf-task"]);
    assert_state(&c.assign(dependent).await, AssignmentState::Blocked);
    let failed = eventually_assignment(&c, "lf-task", "FAILED by lease expiry", |a| {
        a.state == AssignmentState::Failed as i32
    })
    .await;
    assert_eq!(failed.attempt, 1);
    assert_state(&c.get("lf-dependent").await, AssignmentState::Failed);
}
