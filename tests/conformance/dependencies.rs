//! depends_on: BLOCKED with waiting_on, routed when the last dependency completes, failure and
//! cancellation cascade transitively, unknown dependencies; idempotent Assign.

use crate::support;

use std::collections::BTreeSet;

use support::*;
use tonic::Code;

fn with_deps(id: &str, specialist_type: &str, deps: &[&str]) -> pb::AssignRequest {
    let mut request = task(id, specialist_type, &[]);
    request.depends_on = strings(deps);
    request
}

fn set(values: &[String]) -> BTreeSet<String> {
    values.iter().cloned().collect()
}

#[tokio::test]
async fn blocked_until_every_dependency_completes_then_assigned() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("bd-1", "backend", &[]).await;
    let first = c.assign_simple("bd-dep-1", "backend", &[]).await;
    let second = c.assign_simple("bd-dep-2", "backend", &[]).await;

    let blocked = c
        .assign(with_deps("bd-task", "backend", &["bd-dep-1", "bd-dep-2"]))
        .await;
    assert_state(&blocked, AssignmentState::Blocked);
    assert_eq!(
        set(&blocked.waiting_on),
        set(&strings(&["bd-dep-1", "bd-dep-2"]))
    );
    assert_eq!(blocked.specialist_id, "");
    assert_eq!(blocked.queue_position, 0);
    assert_eq!(blocked.epoch, 0);
    assert_eq!(c.queue_stats("backend").await.blocked, 1);
    let result = c
        .queue
        .get_queue_position(pb::GetQueuePositionRequest {
            subtask_id: "bd-task".into(),
        })
        .await;
    assert_code(result, Code::FailedPrecondition);

    c.report(&first, true).await;
    let waiting = c.get("bd-task").await;
    assert_state(&waiting, AssignmentState::Blocked);
    assert_eq!(waiting.waiting_on, strings(&["bd-dep-2"]));

    c.report(&second, true).await;
    let routed = c.get("bd-task").await;
    assert_assigned_to(&routed, "bd-1");
    assert!(routed.waiting_on.is_empty());
    assert_eq!(routed.attempt, 1);
    assert_eq!(c.queue_stats("backend").await.blocked, 0);
}

#[tokio::test]
async fn unblocked_subtask_queues_when_nobody_is_free() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register_full("uq-1", "docs", &[], 1, Availability::Online)
        .await;
    let dep = c.assign_simple("uq-dep", "docs", &[]).await;
    c.assign(with_deps("uq-task", "docs", &["uq-dep"])).await;
    let other = c.assign_simple("uq-other", "docs", &[]).await;
    assert_state(&other, AssignmentState::Queued);
    // Completing the dependency frees uq-1, which takes the queued one; uq-task joins the queue.
    c.report(&dep, true).await;
    assert_assigned_to(&c.get("uq-other").await, "uq-1");
    let queued = c.get("uq-task").await;
    assert_state(&queued, AssignmentState::Queued);
    assert_eq!(queued.queue_position, 1);
    assert_eq!(c.queue_position("uq-task").await.queue_depth, 1);
}

#[tokio::test]
async fn completed_dependencies_do_not_block() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("cd-1", "testing", &[]).await;
    let dep = c.assign_simple("cd-dep", "testing", &[]).await;
    c.report(&dep, true).await;
    let assignment = c.assign(with_deps("cd-task", "testing", &["cd-dep"])).await;
    assert_assigned_to(&assignment, "cd-1");
}

#[tokio::test]
async fn a_chain_is_routed_link_by_link() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("ch-1", "frontend", &[]).await;
    let a = c.assign_simple("ch-a", "frontend", &[]).await;
    assert_state(
        &c.assign(with_deps("ch-b", "frontend", &["ch-a"])).await,
        AssignmentState::Blocked,
    );
    assert_state(
        &c.assign(with_deps("ch-c", "frontend", &["ch-b"])).await,
        AssignmentState::Blocked,
    );
    c.report(&a, true).await;
    let b = c.get("ch-b").await;
    assert_assigned_to(&b, "ch-1");
    assert_state(&c.get("ch-c").await, AssignmentState::Blocked);
    c.report(&b, true).await;
    assert_assigned_to(&c.get("ch-c").await, "ch-1");
}

#[tokio::test]
async fn a_failed_dependency_fails_its_dependents_transitively() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("fd-1", "backend", &[]).await;
    let root = c.assign_simple("fd-root", "backend", &[]).await;
    let other = c.assign_simple("fd-other", "backend", &[]).await;
    c.assign(with_deps("fd-child", "backend", &["fd-root"]))
        .await;
    c.assign(with_deps("fd-grandchild", "backend", &["fd-child"]))
        .await;
    c.assign(with_deps(
        "fd-mixed",
        "backend",
        &["fd-other", "fd-grandchild"],
    ))
    .await;
    c.assign(with_deps("fd-unrelated", "backend", &["fd-other"]))
        .await;

    let failed = c.report(&root, false).await;
    assert_state(&failed, AssignmentState::Failed);
    assert_eq!(
        failed.specialist_id, "fd-1",
        "holder kept once FAILED by a report"
    );
    assert!(failed.finished_at.is_some());
    for id in ["fd-child", "fd-grandchild", "fd-mixed"] {
        let now = c.get(id).await;
        assert_state(&now, AssignmentState::Failed);
        assert!(!now.detail.is_empty(), "{id} says why it failed");
        assert!(now.finished_at.is_some());
    }
    assert_state(&c.get("fd-unrelated").await, AssignmentState::Blocked);
    assert_eq!(c.queue_stats("backend").await.blocked, 1);

    // A new subtask on a failed dependency is created FAILED.
    let late = c
        .assign(with_deps("fd-late", "backend", &["fd-root"]))
        .await;
    assert_state(&late, AssignmentState::Failed);
    assert!(late.detail.contains("fd-root"), "{}", late.detail);

    // The unrelated branch still completes normally.
    c.report(&other, true).await;
    assert_assigned_to(&c.get("fd-unrelated").await, "fd-1");
}

#[tokio::test]
async fn a_cancelled_dependency_fails_its_dependents() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    // No specialist: the root queues.
    let root = c.assign_simple("cx-root", "docs", &[]).await;
    assert_state(&root, AssignmentState::Queued);
    c.assign(with_deps("cx-child", "docs", &["cx-root"])).await;
    c.assign(with_deps("cx-grandchild", "docs", &["cx-child"]))
        .await;
    let cancelled = c.cancel("cx-root").await;
    assert_state(&cancelled, AssignmentState::Cancelled);
    assert_state(&c.get("cx-child").await, AssignmentState::Failed);
    assert_state(&c.get("cx-grandchild").await, AssignmentState::Failed);
    assert_eq!(c.queue_stats("docs").await.depth, 0);

    let late = c.assign(with_deps("cx-late", "docs", &["cx-root"])).await;
    assert_state(&late, AssignmentState::Failed);

    // Cancelling a BLOCKED subtask fails its own dependents as well.
    let held = c.assign_simple("cx-root-2", "docs", &[]).await;
    c.assign(with_deps("cx-mid", "docs", &["cx-root-2"])).await;
    c.assign(with_deps("cx-leaf", "docs", &["cx-mid"])).await;
    assert_state(&c.cancel("cx-mid").await, AssignmentState::Cancelled);
    assert_state(&c.get("cx-leaf").await, AssignmentState::Failed);
    assert_state(&c.get(&held.subtask_id).await, AssignmentState::Queued);
}

#[tokio::test]
async fn an_unknown_dependency_is_failed_precondition_naming_it() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.assign_simple("ud-known", "frontend", &[]).await;
    let result = c
        .try_assign(with_deps(
            "ud-task",
            "frontend",
            &["ud-known", "ud-missing-dep"],
        ))
        .await;
    let status = assert_code(result, Code::FailedPrecondition);
    assert!(
        status.message().contains("ud-missing-dep"),
        "message names it: {status:?}"
    );
    assert!(
        !status.message().contains("ud-known"),
        "only the unknown one: {status:?}"
    );
    // Nothing was created.
    let result = c
        .assign
        .get_assignment(pb::GetAssignmentRequest {
            subtask_id: "ud-task".into(),
        })
        .await;
    assert_code(result, Code::NotFound);

    // Once the dependency exists the same request is accepted.
    c.assign_simple("ud-missing-dep", "frontend", &[]).await;
    let blocked = c
        .assign(with_deps(
            "ud-task",
            "frontend",
            &["ud-known", "ud-missing-dep"],
        ))
        .await;
    assert_state(&blocked, AssignmentState::Blocked);
}

#[tokio::test]
async fn a_subtask_cannot_depend_on_itself() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let result = c
        .try_assign(with_deps("self-dep", "frontend", &["self-dep"]))
        .await;
    let status = result.expect_err("self dependency is refused");
    assert!(
        matches!(
            status.code(),
            Code::FailedPrecondition | Code::InvalidArgument
        ),
        "{status:?}"
    );
    let result = c
        .assign
        .get_assignment(pb::GetAssignmentRequest {
            subtask_id: "self-dep".into(),
        })
        .await;
    assert_code(result, Code::NotFound);
}

#[tokio::test]
async fn assign_is_idempotent_on_the_same_content() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("id-1", "backend", &["rust", "sql"]).await;
    c.assign_simple("id-dep-a", "backend", &["rust"]).await;
    c.assign_simple("id-dep-b", "backend", &["rust"]).await;
    let original = pb::AssignRequest {
        subtask_id: "id-task".into(),
        specialist_type: "backend".into(),
        required_capabilities: strings(&["rust", "sql"]),
        priority: 7,
        parent_id: "id-parent".into(),
        depends_on: Vec::new(),
        payload: b"{\"job\":1}".to_vec(),
        require_all_capabilities: true,
        description: String::new(),
        estimated_duration_ms: None,
    };
    let first = c.assign(original.clone()).await;
    assert_assigned_to(&first, "id-1");

    let again = c.assign(original.clone()).await;
    assert_eq!(
        again, first,
        "the same content returns the assignment unchanged"
    );
    // Capabilities are a set: another order is the same content.
    let mut reordered = original.clone();
    reordered.required_capabilities = strings(&["sql", "rust"]);
    let same = c.assign(reordered).await;
    assert_eq!(same.epoch, first.epoch);
    assert_eq!(same.specialist_id, first.specialist_id);
    assert_eq!(
        c.specialist("id-1").await.active_assignments,
        3,
        "no second hand-out"
    );

    type Change = Box<dyn Fn(&mut pb::AssignRequest)>;
    let changes: Vec<(&str, Change)> = vec![
        ("priority", Box::new(|r| r.priority = 8)),
        ("payload", Box::new(|r| r.payload = b"{\"job\":2}".to_vec())),
        ("type", Box::new(|r| r.specialist_type = "frontend".into())),
        (
            "capabilities",
            Box::new(|r| r.required_capabilities = strings(&["rust"])),
        ),
        (
            "parent",
            Box::new(|r| r.parent_id = "id-other-parent".into()),
        ),
        (
            "require_all",
            Box::new(|r| r.require_all_capabilities = false),
        ),
        (
            "depends_on",
            Box::new(|r| r.depends_on = strings(&["id-dep-a"])),
        ),
    ];
    for (what, change) in changes {
        let mut different = original.clone();
        change(&mut different);
        let result = c.try_assign(different).await;
        let status = result.expect_err(what);
        assert_eq!(
            status.code(),
            Code::AlreadyExists,
            "changed {what}: {status:?}"
        );
    }
    // Still unchanged after the refused attempts.
    assert_eq!(c.get("id-task").await, first);

    // After completion the same request returns the final state.
    c.report(&first, true).await;
    let finished = c.assign(original).await;
    assert_state(&finished, AssignmentState::Completed);
    assert_eq!(finished.epoch, first.epoch);
}

#[tokio::test]
async fn idempotent_assign_of_queued_and_blocked_subtasks() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let queued = c.assign_simple("iq-1", "testing", &[]).await;
    assert_state(&queued, AssignmentState::Queued);
    let again = c.assign_simple("iq-1", "testing", &[]).await;
    assert_state(&again, AssignmentState::Queued);
    assert_eq!(again.queue_position, 1);
    assert_eq!(c.queue_stats("testing").await.depth, 1, "not queued twice");

    let mut blocked = with_deps("iq-2", "testing", &["iq-1", "iq-0"]);
    c.assign_simple("iq-0", "testing", &[]).await;
    let first = c.assign(blocked.clone()).await;
    assert_state(&first, AssignmentState::Blocked);
    // Dependencies are a set too.
    blocked.depends_on.reverse();
    let second = c.assign(blocked).await;
    assert_state(&second, AssignmentState::Blocked);
    assert_eq!(set(&second.waiting_on), set(&first.waiting_on));
}

#[tokio::test]
async fn a_cancelled_blocked_subtask_stays_cancelled_when_its_dependency_completes() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("cb-1", "backend", &[]).await;
    let dep = c.assign_simple("cb-dep", "backend", &[]).await;
    c.assign(with_deps("cb-blocked", "backend", &["cb-dep"]))
        .await;
    assert_state(&c.cancel("cb-blocked").await, AssignmentState::Cancelled);
    c.report(&dep, true).await;
    let after = c.get("cb-blocked").await;
    assert_state(&after, AssignmentState::Cancelled);
    assert_eq!(after.specialist_id, "");
    assert_eq!(c.specialist("cb-1").await.active_assignments, 0);
    assert_eq!(c.queue_stats("backend").await.blocked, 0);
}

#[tokio::test]
async fn cancelling_an_assigned_subtask_fails_its_dependents() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("ca-1", "frontend", &[]).await;
    c.assign_simple("ca-root", "frontend", &[]).await;
    c.assign(with_deps("ca-child", "frontend", &["ca-root"]))
        .await;
    c.assign(with_deps("ca-grandchild", "frontend", &["ca-child"]))
        .await;
    assert_state(&c.cancel("ca-root").await, AssignmentState::Cancelled);
    assert_state(&c.get("ca-child").await, AssignmentState::Failed);
    assert_state(&c.get("ca-grandchild").await, AssignmentState::Failed);
}

#[tokio::test]
async fn releasing_past_max_attempts_fails_dependents() {
    let server = TestServer::start_with(&["--max-attempts", "1"]).await;
    let mut c = server.clients.clone();
    c.register("rm-1", "docs", &[]).await;
    let held = c.assign_simple("rm-root", "docs", &[]).await;
    c.assign(with_deps("rm-child", "docs", &["rm-root"])).await;
    assert_state(&c.release(&held).await, AssignmentState::Failed);
    assert_state(&c.get("rm-child").await, AssignmentState::Failed);
}
