//! Queues: FIFO per type, priority order, real 1-based positions, GetQueuePosition, ListQueue paging,
//! GetQueueStats, no head-of-line blocking, and draining whenever capacity appears.

use crate::support;

use support::*;
use tonic::Code;

/// Registers a specialist with one slot and fills it, so that later work of the type queues.
async fn busy_specialist(
    c: &mut Clients,
    id: &str,
    specialist_type: &str,
    caps: &[&str],
) -> pb::Assignment {
    c.register_full(id, specialist_type, caps, 1, Availability::Online)
        .await;
    let held = c
        .assign_simple(&format!("{id}-blocker"), specialist_type, caps)
        .await;
    assert_assigned_to(&held, id);
    held
}

#[tokio::test]
async fn fifo_per_type_with_real_positions() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let blocker = busy_specialist(&mut c, "ff-1", "frontend", &["react"]).await;
    let mut ids = Vec::new();
    for n in 1..=5 {
        let id = format!("ff-q{n}");
        let queued = c.assign_simple(&id, "frontend", &["react"]).await;
        assert_state(&queued, AssignmentState::Queued);
        assert_eq!(queued.queue_position, n, "position of {id} on arrival");
        ids.push(id);
    }
    // Another type's queue is separate and starts at 1.
    busy_specialist(&mut c, "ff-back", "backend", &["rust"]).await;
    let other = c.assign_simple("ff-back-q1", "backend", &["rust"]).await;
    assert_eq!(other.queue_position, 1);

    assert_eq!(c.queued_ids("frontend").await, ids);
    let position = c.queue_position("ff-q3").await;
    assert_eq!(position.subtask_id, "ff-q3");
    assert_eq!(position.routed_type, "frontend");
    assert_eq!(position.queue_position, 3);
    assert_eq!(position.queue_depth, 5);

    // Completing the blocker hands out the head; everyone moves up by one.
    c.report(&blocker, true).await;
    let head = c.get("ff-q1").await;
    assert_assigned_to(&head, "ff-1");
    for (n, id) in ids.iter().enumerate().skip(1) {
        let now = c.get(id).await;
        assert_state(&now, AssignmentState::Queued);
        assert_eq!(now.queue_position, n as u64, "{id} moved up");
    }
    assert_eq!(c.queue_position("ff-q3").await.queue_position, 2);
    assert_eq!(c.queue_position("ff-q3").await.queue_depth, 4);

    // Served strictly in arrival order.
    let mut current = head;
    for id in ids.iter().skip(1) {
        c.report(&current, true).await;
        current = c.get(id).await;
        assert_assigned_to(&current, "ff-1");
    }
    c.report(&current, true).await;
    assert_eq!(c.queue_stats("frontend").await.depth, 0);
}

#[tokio::test]
async fn higher_priority_is_served_first_then_arrival() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let blocker = busy_specialist(&mut c, "pr-1", "backend", &[]).await;
    let arrivals = [
        ("pr-a", 0, 1),
        ("pr-b", 5, 1),
        ("pr-c", 5, 2),
        ("pr-d", 10, 1),
        ("pr-e", 0, 5),
    ];
    for (id, priority, position) in arrivals {
        let mut request = task(id, "backend", &[]);
        request.priority = priority;
        let queued = c.assign(request).await;
        assert_state(&queued, AssignmentState::Queued);
        assert_eq!(
            queued.queue_position, position,
            "{id} (priority {priority}) on arrival"
        );
    }
    let order = strings(&["pr-d", "pr-b", "pr-c", "pr-a", "pr-e"]);
    assert_eq!(c.queued_ids("backend").await, order);
    for (rank, id) in order.iter().enumerate() {
        assert_eq!(
            c.queue_position(id).await.queue_position,
            rank as u64 + 1,
            "{id}"
        );
    }
    let listed = c
        .queue
        .list_queue(pb::ListQueueRequest {
            specialist_type: "backend".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let priorities: Vec<i32> = listed.subtasks.iter().map(|entry| entry.priority).collect();
    assert_eq!(priorities, vec![10, 5, 5, 0, 0]);

    let mut current = blocker;
    for id in &order {
        c.report(&current, true).await;
        current = c.get(id).await;
        assert_assigned_to(&current, "pr-1");
    }
}

#[tokio::test]
async fn get_queue_position_only_for_queued_subtasks() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let blocker = busy_specialist(&mut c, "gq-1", "docs", &[]).await;
    let result = c
        .queue
        .get_queue_position(pb::GetQueuePositionRequest {
            subtask_id: blocker.subtask_id.clone(),
        })
        .await;
    let status = assert_code(result, Code::FailedPrecondition);
    assert!(status.message().contains(&blocker.subtask_id), "{status:?}");

    let result = c
        .queue
        .get_queue_position(pb::GetQueuePositionRequest {
            subtask_id: "gq-unknown".into(),
        })
        .await;
    assert_code(result, Code::NotFound);

    // Completed and cancelled subtasks are not queued either.
    c.assign_simple("gq-q", "docs", &[]).await;
    c.cancel("gq-q").await;
    let result = c
        .queue
        .get_queue_position(pb::GetQueuePositionRequest {
            subtask_id: "gq-q".into(),
        })
        .await;
    assert_code(result, Code::FailedPrecondition);
    c.report(&blocker, true).await;
    let result = c
        .queue
        .get_queue_position(pb::GetQueuePositionRequest {
            subtask_id: blocker.subtask_id.clone(),
        })
        .await;
    assert_code(result, Code::FailedPrecondition);
}

#[tokio::test]
async fn list_queue_pages_through_every_entry() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    busy_specialist(&mut c, "lq-1", "testing", &["pytest"]).await;
    let mut expected = Vec::new();
    for n in 1..=7 {
        let id = format!("lq-{n}");
        let mut request = task(&id, "testing", &["pytest", "tox"]);
        request.priority = 3;
        c.assign(request).await;
        expected.push(id);
    }

    let mut entries = Vec::new();
    let mut token = String::new();
    let mut page_sizes = Vec::new();
    loop {
        let page = c
            .queue
            .list_queue(pb::ListQueueRequest {
                specialist_type: "testing".into(),
                page_size: 3,
                page_token: token.clone(),
            })
            .await
            .expect("list queue")
            .into_inner();
        assert_eq!(page.queue_depth, 7);
        page_sizes.push(page.subtasks.len());
        entries.extend(page.subtasks);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(page_sizes.len() < 10, "paging terminates");
    }
    assert_eq!(page_sizes, vec![3, 3, 1]);
    let ids: Vec<String> = entries
        .iter()
        .map(|entry| entry.subtask_id.clone())
        .collect();
    assert_eq!(ids, expected);
    for (rank, entry) in entries.iter().enumerate() {
        assert_eq!(
            entry.queue_position,
            rank as u64 + 1,
            "{}",
            entry.subtask_id
        );
        assert_eq!(entry.priority, 3);
        assert_eq!(entry.attempt, 1);
        let mut caps = entry.required_capabilities.clone();
        caps.sort();
        assert_eq!(caps, strings(&["pytest", "tox"]));
        assert!(entry.enqueued_at.is_some());
    }

    // An empty queue lists nothing.
    let empty = c
        .queue
        .list_queue(pb::ListQueueRequest {
            specialist_type: "docs".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(empty.subtasks.is_empty());
    assert_eq!(empty.queue_depth, 0);
    assert!(empty.next_page_token.is_empty());

    assert_invalid(
        c.queue
            .list_queue(pb::ListQueueRequest {
                specialist_type: "testing".into(),
                page_size: 1001,
                page_token: String::new(),
            })
            .await,
        "page_size",
    );
    assert_invalid(
        c.queue
            .list_queue(pb::ListQueueRequest {
                specialist_type: "astrology".into(),
                ..Default::default()
            })
            .await,
        "specialist_type",
    );
}

#[tokio::test]
async fn queue_stats_report_every_field() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register_full("qs-on", "frontend", &[], 1, Availability::Online)
        .await;
    c.register_full("qs-idle", "frontend", &[], 1, Availability::Idle)
        .await;
    c.register_full("qs-busy", "frontend", &[], 2, Availability::Busy)
        .await;
    c.register_full("qs-away", "frontend", &[], 1, Availability::Away)
        .await;
    c.register_full("qs-off", "frontend", &[], 4, Availability::Offline)
        .await;

    let before = c.queue_stats("frontend").await;
    assert_eq!(before.specialist_type, "frontend");
    let counts = before.specialists.unwrap();
    assert_eq!(
        (
            counts.online,
            counts.idle,
            counts.busy,
            counts.away,
            counts.offline
        ),
        (1, 1, 1, 1, 1)
    );
    assert_eq!(before.depth, 0);
    assert_eq!(before.oldest_wait_ms, 0, "0 when the queue is empty");
    assert_eq!(before.active_assignments, 0);
    assert_eq!(before.free_capacity, 5, "OFFLINE capacity does not count");

    for n in 1..=7 {
        c.assign_simple(&format!("qs-task-{n}"), "frontend", &[])
            .await;
    }
    // 5 slots: 5 assigned, 2 queued.
    let mut blocked = task("qs-blocked", "frontend", &[]);
    blocked.depends_on = strings(&["qs-task-7"]);
    assert_state(&c.assign(blocked).await, AssignmentState::Blocked);

    let stats = poll_until("oldest_wait_ms to grow", EVENTUALLY, || {
        let mut c = c.clone();
        async move {
            let stats = c.queue_stats("frontend").await;
            (stats.oldest_wait_ms > 0).then_some(stats)
        }
    })
    .await;
    assert_eq!(stats.depth, 2);
    assert_eq!(stats.active_assignments, 5);
    assert_eq!(stats.free_capacity, 0);
    assert_eq!(stats.blocked, 1);
    assert!(stats.oldest_wait_ms < 60_000, "{}", stats.oldest_wait_ms);

    // Without a type: one entry per configured type, in configuration order.
    let all = c
        .queue
        .get_queue_stats(pb::GetQueueStatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let types: Vec<&str> = all
        .types
        .iter()
        .map(|t| t.specialist_type.as_str())
        .collect();
    assert_eq!(
        types,
        vec!["frontend", "backend", "testing", "docs", "general"]
    );
    let backend = &all.types[1];
    assert_eq!(backend.depth, 0);
    assert_eq!(backend.active_assignments, 0);
    assert_eq!(backend.free_capacity, 0);

    assert_invalid(
        c.queue
            .get_queue_stats(pb::GetQueueStatsRequest {
                specialist_type: "astrology".into(),
            })
            .await,
        "specialist_type",
    );
}

#[tokio::test]
async fn no_head_of_line_blocking() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let react_blocker = busy_specialist(&mut c, "hol-react", "frontend", &["react"]).await;
    let css_blocker = busy_specialist(&mut c, "hol-css", "frontend", &["css"]).await;
    let head = c
        .assign_simple("hol-needs-react", "frontend", &["react"])
        .await;
    assert_eq!(head.queue_position, 1);
    let behind = c.assign_simple("hol-needs-css", "frontend", &["css"]).await;
    assert_eq!(behind.queue_position, 2);

    // The css specialist frees up: it cannot take the head, but takes the one behind it.
    c.report(&css_blocker, true).await;
    assert_assigned_to(&c.get("hol-needs-css").await, "hol-css");
    let still = c.get("hol-needs-react").await;
    assert_state(&still, AssignmentState::Queued);
    assert_eq!(still.queue_position, 1);

    // Freeing the react specialist finally serves the head.
    c.report(&react_blocker, true).await;
    assert_assigned_to(&c.get("hol-needs-react").await, "hol-react");
    assert_eq!(c.queue_stats("frontend").await.depth, 0);
}

#[tokio::test]
async fn a_new_subtask_is_not_held_back_by_an_unservable_queue() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    busy_specialist(&mut c, "nh-react", "frontend", &["react"]).await;
    c.register_full("nh-css", "frontend", &["css"], 1, Availability::Online)
        .await;
    let waiting = c.assign_simple("nh-react-2", "frontend", &["react"]).await;
    assert_state(&waiting, AssignmentState::Queued);
    let fresh = c.assign_simple("nh-css-1", "frontend", &["css"]).await;
    assert_assigned_to(&fresh, "nh-css");
}

#[tokio::test]
async fn drains_on_completion_failure_and_cancel() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let blocker = busy_specialist(&mut c, "dc-1", "docs", &[]).await;
    for n in 1..=3 {
        c.assign_simple(&format!("dc-q{n}"), "docs", &[]).await;
    }
    c.report(&blocker, false).await;
    let first = c.get("dc-q1").await;
    assert_assigned_to(&first, "dc-1");
    c.cancel("dc-q1").await;
    let second = c.get("dc-q2").await;
    assert_assigned_to(&second, "dc-1");
    c.report(&second, true).await;
    assert_assigned_to(&c.get("dc-q3").await, "dc-1");
}

#[tokio::test]
async fn drains_on_release_skipping_what_the_releaser_gave_back() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let blocker = busy_specialist(&mut c, "rl-1", "backend", &[]).await;
    c.assign_simple("rl-q1", "backend", &[]).await;
    let released = c.release(&blocker).await;
    // The releaser is not offered its subtask again; it takes the next one instead.
    assert_state(&released, AssignmentState::Queued);
    assert_eq!(released.queue_position, 1, "requeued at the head");
    assert_eq!(released.attempt, 2);
    assert_assigned_to(&c.get("rl-q1").await, "rl-1");

    // Someone else registers and takes the released subtask.
    c.register("rl-2", "backend", &[]).await;
    let taken = c.get(&blocker.subtask_id).await;
    assert_assigned_to(&taken, "rl-2");
    assert_eq!(taken.attempt, 2);
}

#[tokio::test]
async fn drains_on_registration_and_reregistration() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let first = c.assign_simple("rg-q1", "testing", &["pytest"]).await;
    let second = c.assign_simple("rg-q2", "testing", &["pytest"]).await;
    let third = c.assign_simple("rg-q3", "testing", &["pytest"]).await;
    for (n, queued) in [&first, &second, &third].into_iter().enumerate() {
        assert_state(queued, AssignmentState::Queued);
        assert_eq!(queued.queue_position, n as u64 + 1);
    }
    c.register_full("rg-1", "testing", &["pytest"], 1, Availability::Online)
        .await;
    assert_assigned_to(&c.get("rg-q1").await, "rg-1");
    assert_eq!(c.get("rg-q2").await.queue_position, 1);

    // More room on re-registration drains the rest.
    let updated = c
        .register_full("rg-1", "testing", &["pytest"], 3, Availability::Online)
        .await;
    assert_eq!(updated.active_assignments, 3);
    assert_assigned_to(&c.get("rg-q2").await, "rg-1");
    assert_assigned_to(&c.get("rg-q3").await, "rg-1");
    assert_eq!(c.queue_stats("testing").await.depth, 0);
}

#[tokio::test]
async fn drains_when_a_specialist_comes_back_online() {
    let server = TestServer::start_with(FAST_LEASES).await;
    let mut c = server.clients.clone();
    c.register("bo-1", "docs", &["markdown"]).await;
    poll_until("bo-1 to go OFFLINE", EVENTUALLY, || {
        let mut c = c.clone();
        async move {
            (c.specialist("bo-1").await.availability == Availability::Offline as i32).then_some(())
        }
    })
    .await;
    let queued = c.assign_simple("bo-task", "docs", &["markdown"]).await;
    assert_state(&queued, AssignmentState::Queued);
    assert_eq!(queued.routed_type, "docs");

    c.heartbeat("bo-1", Availability::Unspecified).await;
    assert_assigned_to(&c.get("bo-task").await, "bo-1");
}

#[tokio::test]
async fn drains_when_an_away_specialist_is_the_only_one() {
    // AWAY still takes work when nobody better is free; a heartbeat to ONLINE keeps the work.
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register_full("aw-1", "general", &[], 0, Availability::Away)
        .await;
    let assignment = c.assign_simple("aw-task", "general", &[]).await;
    assert_assigned_to(&assignment, "aw-1");
    c.heartbeat("aw-1", Availability::Online).await;
    assert_eq!(c.get("aw-task").await.epoch, assignment.epoch);
}

/// Retention: a finished subtask is forgotten `--retention-ms` after it finished (NOT_FOUND on a
/// store without Postgres); one still in flight is not, however old. Its id may then be used again
/// for a new subtask.
#[tokio::test]
async fn finished_work_is_forgotten_after_the_retention() {
    let server =
        TestServer::start_with(&["--retention-ms", "300", "--sweep-interval-ms", "50"]).await;
    let mut c = server.clients.clone();
    c.register_full("rt-1", "backend", &["rust"], 2, Availability::Online)
        .await;
    let done = c.assign_simple("rt-done", "backend", &["rust"]).await;
    let held = c.assign_simple("rt-held", "backend", &["rust"]).await;
    assert_assigned_to(&held, "rt-1");
    c.report(&done, true).await;
    let forgotten = poll_until("the finished subtask to be forgotten", EVENTUALLY, || {
        let mut c = c.clone();
        async move {
            // Keep the holder's lease alive while we wait.
            c.heartbeat("rt-1", Availability::Online).await;
            match c
                .assign
                .get_assignment(pb::GetAssignmentRequest {
                    subtask_id: "rt-done".into(),
                })
                .await
            {
                Err(status) if status.code() == Code::NotFound => Some(status),
                _ => None,
            }
        }
    })
    .await;
    assert!(forgotten.message().contains("rt-done"), "{forgotten:?}");
    assert_state(&c.get("rt-held").await, AssignmentState::Assigned);
    // The id is free again: other content is a new subtask, not ALREADY_EXISTS.
    let mut again = task("rt-done", "backend", &["rust"]);
    again.priority = 9;
    let reused = c.assign(again).await;
    assert_assigned_to(&reused, "rt-1");
    assert_eq!(reused.attempt, 1);
}
