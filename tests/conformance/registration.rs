//! RegisterService: minting ids, defaults, re-registration, heartbeats and leases, deregistration,
//! Get/List specialists.

use crate::support;

use std::collections::BTreeSet;

use support::*;
use tonic::Code;

fn ts_ms(timestamp: &Option<prost_types::Timestamp>) -> i64 {
    let timestamp = timestamp.as_ref().expect("timestamp is set");
    timestamp.seconds * 1000 + i64::from(timestamp.nanos) / 1_000_000
}

#[tokio::test]
async fn register_mints_ids_per_type_and_applies_defaults() {
    let server =
        TestServer::start_with(&["--lease-ttl-ms", "20000", "--heartbeat-interval-ms", "4000"])
            .await;
    let mut c = server.clients.clone();

    let response = c
        .register
        .register(pb::RegisterRequest {
            specialist_type: "frontend".into(),
            capabilities: strings(&["react", "css"]),
            ..Default::default()
        })
        .await
        .expect("register")
        .into_inner();
    assert_eq!(response.heartbeat_interval_ms, 4000);
    assert_eq!(response.lease_ttl_ms, 20000);
    let first = response.specialist.expect("specialist");
    assert_eq!(first.specialist_id, "specialist-frontend-1");
    assert_eq!(first.specialist_type, "frontend");
    assert_eq!(first.max_concurrency, 5, "default max_concurrency");
    assert_eq!(
        first.availability,
        Availability::Online as i32,
        "UNSPECIFIED means ONLINE"
    );
    assert_eq!(first.active_assignments, 0);
    assert_eq!(
        first.capabilities.iter().cloned().collect::<BTreeSet<_>>(),
        ["css", "react"]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
    );
    assert_close(first.performance, 0.75, "newcomer performance");
    let registered = ts_ms(&first.registered_at);
    let lease = ts_ms(&first.lease_expires_at);
    assert_eq!(
        lease - ts_ms(&first.last_heartbeat_at),
        20000,
        "lease = last heartbeat + ttl"
    );
    assert!(
        lease >= registered + 20000 - 1,
        "lease runs a ttl from registration"
    );

    let second = c.register("", "frontend", &["vue"]).await;
    assert_eq!(second.specialist_id, "specialist-frontend-2");
    let backend = c.register("", "backend", &["rust"]).await;
    assert_eq!(
        backend.specialist_id, "specialist-backend-1",
        "numbering is per type"
    );

    // A minted id does not collide with an explicitly chosen one.
    c.register("specialist-docs-1", "docs", &["markdown"]).await;
    let minted = c.register("", "docs", &["markdown"]).await;
    assert_eq!(minted.specialist_id, "specialist-docs-2");

    let explicit = c
        .register_full(
            "reg-explicit",
            "testing",
            &["pytest"],
            7,
            Availability::Idle,
        )
        .await;
    assert_eq!(explicit.specialist_id, "reg-explicit");
    assert_eq!(explicit.max_concurrency, 7);
    assert_eq!(explicit.availability, Availability::Idle as i32);
}

#[tokio::test]
async fn reregister_updates_and_keeps_in_flight_work() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register_full("rr-1", "frontend", &["react"], 2, Availability::Online)
        .await;
    let held = c.assign_simple("rr-task-1", "frontend", &["react"]).await;
    assert_assigned_to(&held, "rr-1");

    let mut labels = std::collections::HashMap::new();
    labels.insert("zone".to_string(), "eu-1".to_string());
    let updated = c
        .register
        .register(pb::RegisterRequest {
            specialist_id: "rr-1".into(),
            specialist_type: "frontend".into(),
            capabilities: strings(&["react", "css"]),
            max_concurrency: 3,
            labels,
            availability: Availability::Busy as i32,
            incarnation: c.incarnations.get("rr-1"),
            take_over: false,
        })
        .await
        .expect("re-register")
        .into_inner()
        .specialist
        .unwrap();
    assert_eq!(updated.active_assignments, 1, "in-flight work is kept");
    assert_eq!(updated.max_concurrency, 3);
    assert_eq!(updated.availability, Availability::Busy as i32);
    assert_eq!(updated.labels.get("zone").map(String::as_str), Some("eu-1"));
    assert!(updated.capabilities.contains(&"css".to_string()));

    let after = c.get("rr-task-1").await;
    assert_assigned_to(&after, "rr-1");
    assert_eq!(
        after.epoch, held.epoch,
        "re-registration does not re-issue the assignment"
    );
    assert_eq!(after.attempt, 1);

    // The old assignment is still valid: its holder can complete it.
    let done = c.report(&held, true).await;
    assert_state(&done, AssignmentState::Completed);
    assert_eq!(c.specialist("rr-1").await.active_assignments, 0);
    // Listing returns exactly one specialist for the id (no duplicate on re-register).
    let listed = c
        .register
        .list_specialists(pb::ListSpecialistsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.specialists.len(), 1);
}

#[tokio::test]
async fn reregister_with_another_type_is_failed_precondition() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("tc-1", "frontend", &["react"]).await;
    let result = c
        .register
        .register(pb::RegisterRequest {
            specialist_id: "tc-1".into(),
            specialist_type: "backend".into(),
            capabilities: strings(&["rust"]),
            ..Default::default()
        })
        .await;
    assert_code(result, Code::FailedPrecondition);
    let unchanged = c.specialist("tc-1").await;
    assert_eq!(unchanged.specialist_type, "frontend");
    assert_eq!(unchanged.capabilities, strings(&["react"]));

    // After deregistering, the id may come back as another type.
    c.deregister("tc-1").await;
    let again = c.register("tc-1", "backend", &["rust"]).await;
    assert_eq!(again.specialist_type, "backend");
}

#[tokio::test]
async fn heartbeat_renews_the_lease_and_changes_availability() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let registered = c.register("hb-1", "backend", &["rust"]).await;
    let first_lease = ts_ms(&registered.lease_expires_at);

    // The clock moves on: keep heartbeating until the lease visibly moves forward.
    let renewed = poll_until("a later lease after heartbeat", EVENTUALLY, || {
        let mut c = c.clone();
        async move {
            let response = c.heartbeat("hb-1", Availability::Unspecified).await;
            let lease = ts_ms(&response.lease_expires_at);
            (lease > first_lease).then_some(response)
        }
    })
    .await;
    let specialist = renewed.specialist.expect("specialist");
    assert_eq!(
        ts_ms(&specialist.lease_expires_at),
        ts_ms(&renewed.lease_expires_at)
    );
    assert_eq!(
        ts_ms(&specialist.lease_expires_at) - ts_ms(&specialist.last_heartbeat_at),
        15_000,
        "default lease ttl is 15 s"
    );
    assert_eq!(specialist.availability, Availability::Online as i32);

    let busy = c.heartbeat("hb-1", Availability::Busy).await;
    assert_eq!(
        busy.specialist.unwrap().availability,
        Availability::Busy as i32
    );
    let kept = c.heartbeat("hb-1", Availability::Unspecified).await;
    assert_eq!(
        kept.specialist.unwrap().availability,
        Availability::Busy as i32,
        "UNSPECIFIED keeps the current availability"
    );
    let away = c.heartbeat("hb-1", Availability::Away).await;
    assert_eq!(
        away.specialist.unwrap().availability,
        Availability::Away as i32
    );
    assert_eq!(
        c.specialist("hb-1").await.availability,
        Availability::Away as i32
    );
}

#[tokio::test]
async fn heartbeat_of_unknown_specialist_is_not_found() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let result = c
        .register
        .heartbeat(pb::HeartbeatRequest {
            specialist_id: "hb-nobody".into(),
            availability: 0,
            incarnation: "ab".into(),
        })
        .await;
    assert_code(result, Code::NotFound);

    // A deregistered specialist is unknown too.
    c.register("hb-gone", "docs", &[]).await;
    c.deregister("hb-gone").await;
    let result = c
        .register
        .heartbeat(pb::HeartbeatRequest {
            specialist_id: "hb-gone".into(),
            availability: 0,
            incarnation: "ab".into(),
        })
        .await;
    assert_code(result, Code::NotFound);
}

#[tokio::test]
async fn lapsed_lease_goes_offline_and_heartbeat_brings_it_back() {
    let server = TestServer::start_with(FAST_LEASES).await;
    let mut c = server.clients.clone();
    let registered = c.register("lease-1", "testing", &["pytest"]).await;
    assert_eq!(registered.availability, Availability::Online as i32);

    poll_until("lease-1 to go OFFLINE", EVENTUALLY, || {
        let mut c = c.clone();
        async move {
            (c.specialist("lease-1").await.availability == Availability::Offline as i32)
                .then_some(())
        }
    })
    .await;
    let stats = c.queue_stats("testing").await;
    assert_eq!(stats.specialists.unwrap().offline, 1);

    let back = c.heartbeat("lease-1", Availability::Unspecified).await;
    assert_eq!(
        back.specialist.unwrap().availability,
        Availability::Online as i32,
        "an OFFLINE specialist comes back ONLINE on heartbeat"
    );
}

#[tokio::test]
async fn deregister_requeues_in_flight_work_at_the_queue_head() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register_full("dr-1", "frontend", &["react"], 1, Availability::Online)
        .await;
    let held = c.assign_simple("dr-task-1", "frontend", &["react"]).await;
    assert_assigned_to(&held, "dr-1");
    let second = c.assign_simple("dr-task-2", "frontend", &["react"]).await;
    assert_state(&second, AssignmentState::Queued);
    assert_eq!(second.queue_position, 1);

    let requeued = c.deregister("dr-1").await;
    assert_eq!(requeued, vec!["dr-task-1".to_string()]);

    let back = c.get("dr-task-1").await;
    assert_state(&back, AssignmentState::Queued);
    assert_eq!(back.queue_position, 1, "requeued at the head");
    assert_eq!(back.attempt, 1, "leaving is not a failed attempt");
    assert_eq!(back.specialist_id, "");
    assert_eq!(c.get("dr-task-2").await.queue_position, 2);
    assert_eq!(
        c.queued_ids("frontend").await,
        strings(&["dr-task-1", "dr-task-2"])
    );

    let result = c
        .register
        .get_specialist(pb::GetSpecialistRequest {
            specialist_id: "dr-1".into(),
        })
        .await;
    assert_code(result, Code::NotFound);
    let result = c
        .register
        .deregister(pb::DeregisterRequest {
            specialist_id: "dr-1".into(),
        })
        .await;
    assert_code(result, Code::NotFound);

    // Another specialist arrives and gets the requeued subtask first.
    c.register_full("dr-2", "frontend", &["react"], 1, Availability::Online)
        .await;
    let taken = c.get("dr-task-1").await;
    assert_assigned_to(&taken, "dr-2");
    assert!(taken.epoch > held.epoch, "a new assignment has a new epoch");
    assert_eq!(taken.attempt, 1);
    assert_eq!(c.get("dr-task-2").await.queue_position, 1);

    // The old holder's epoch is dead.
    assert_code(
        c.try_report("dr-task-1", "dr-1", held.epoch, true).await,
        Code::FailedPrecondition,
    );
}

#[tokio::test]
async fn deregister_hands_work_to_a_free_specialist_at_once() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("dh-a", "backend", &["rust"]).await;
    let first = c.assign_simple("dh-task-1", "backend", &["rust"]).await;
    assert_assigned_to(&first, "dh-a");
    let second = c.assign_simple("dh-task-2", "backend", &["rust"]).await;
    assert_assigned_to(&second, "dh-a");
    c.register("dh-b", "backend", &["rust"]).await;

    let mut watch_b = c.watch("dh-b").await;
    let requeued: BTreeSet<String> = c.deregister("dh-a").await.into_iter().collect();
    assert_eq!(
        requeued,
        ["dh-task-1", "dh-task-2"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    for id in ["dh-task-1", "dh-task-2"] {
        let now = c.get(id).await;
        assert_assigned_to(&now, "dh-b");
        assert_eq!(now.attempt, 1);
    }
    let mut streamed = BTreeSet::new();
    for _ in 0..2 {
        let event = next_event(&mut watch_b).await;
        assert_eq!(event_kind(&event), WatchEventKind::Assigned);
        streamed.insert(event_assignment(&event).subtask_id.clone());
    }
    assert_eq!(streamed, requeued);
    assert_eq!(c.queue_stats("backend").await.depth, 0);
}

#[tokio::test]
async fn deregistered_specialist_keeps_its_performance_history() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("ph-1", "docs", &["markdown"]).await;
    let held = c.assign_simple("ph-task-1", "docs", &["markdown"]).await;
    c.report(&held, true).await;
    c.deregister("ph-1").await;
    let performance = c
        .perf
        .get_performance(pb::GetPerformanceRequest {
            specialist_id: "ph-1".into(),
        })
        .await
        .expect("history is kept under the id")
        .into_inner();
    assert_eq!(performance.completed, 1);
    assert_eq!(performance.succeeded, 1);
    // Coming back under the same id, the history counts again.
    let back = c.register("ph-1", "docs", &["markdown"]).await;
    assert_close(back.performance, 2.5 / 3.0, "performance after one success");
}

#[tokio::test]
async fn get_and_list_specialists_with_paging_and_type_filter() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    for n in 1..=5 {
        c.register(&format!("ls-front-{n}"), "frontend", &["react"])
            .await;
    }
    for n in 1..=3 {
        c.register(&format!("ls-back-{n}"), "backend", &["rust"])
            .await;
    }

    let got = c.specialist("ls-back-2").await;
    assert_eq!(got.specialist_type, "backend");
    assert_eq!(got.capabilities, strings(&["rust"]));

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .register
            .list_specialists(pb::ListSpecialistsRequest {
                specialist_type: "frontend".into(),
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .expect("list")
            .into_inner();
        pages += 1;
        assert!(page.specialists.len() <= 2, "page_size is honoured");
        assert!(!page.specialists.is_empty(), "no empty pages");
        for specialist in &page.specialists {
            assert_eq!(specialist.specialist_type, "frontend", "type filter");
        }
        seen.extend(page.specialists.into_iter().map(|s| s.specialist_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(pages < 10, "paging terminates");
    }
    assert_eq!(pages, 3);
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        5,
        "every frontend specialist exactly once: {seen:?}"
    );
    assert!(unique.iter().all(|id| id.starts_with("ls-front-")));

    let everything = c
        .register
        .list_specialists(pb::ListSpecialistsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        everything.specialists.len(),
        8,
        "empty type lists every type; page 0 means 50"
    );
    assert!(everything.next_page_token.is_empty());

    let none = c
        .register
        .list_specialists(pb::ListSpecialistsRequest {
            specialist_type: "docs".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.specialists.is_empty());
    assert!(none.next_page_token.is_empty());

    assert_invalid(
        c.register
            .list_specialists(pb::ListSpecialistsRequest {
                specialist_type: "wizards".into(),
                ..Default::default()
            })
            .await,
        "specialist_type",
    );
}

#[tokio::test]
async fn deregister_requeues_several_subtasks_oldest_first_within_their_priority_band() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register_full("dp-1", "testing", &[], 2, Availability::Online)
        .await;
    let older = c.assign_simple("dp-older", "testing", &[]).await;
    let newer = c.assign_simple("dp-newer", "testing", &[]).await;
    assert_assigned_to(&older, "dp-1");
    assert_assigned_to(&newer, "dp-1");
    let mut high = task("dp-high", "testing", &[]);
    high.priority = 5;
    c.assign(high).await;
    c.assign_simple("dp-waiting", "testing", &[]).await;
    assert_eq!(
        c.queued_ids("testing").await,
        strings(&["dp-high", "dp-waiting"])
    );

    c.deregister("dp-1").await;
    // Back at the head of the priority-0 band, oldest first; the priority-5 one stays in front.
    assert_eq!(
        c.queued_ids("testing").await,
        strings(&["dp-high", "dp-older", "dp-newer", "dp-waiting"])
    );
    assert_eq!(c.get("dp-older").await.queue_position, 2);
    assert_eq!(c.get("dp-newer").await.attempt, 1);
}

#[tokio::test]
async fn a_specialist_that_says_it_is_offline_gets_no_work_until_it_is_back() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("so-1", "docs", &[]).await;
    let offline = c.heartbeat("so-1", Availability::Offline).await;
    assert_eq!(
        offline.specialist.unwrap().availability,
        Availability::Offline as i32
    );
    let queued = c.assign_simple("so-task", "docs", &[]).await;
    assert_state(&queued, AssignmentState::Queued);
    assert_eq!(c.queue_stats("docs").await.free_capacity, 0);

    let back = c.heartbeat("so-1", Availability::Unspecified).await;
    assert_eq!(
        back.specialist.unwrap().availability,
        Availability::Online as i32
    );
    assert_assigned_to(&c.get("so-task").await, "so-1");
}

#[tokio::test]
async fn the_default_max_concurrency_is_configurable() {
    let server = TestServer::start_with(&["--default-max-concurrency", "2"]).await;
    let mut c = server.clients.clone();
    let registered = c.register("dm-1", "backend", &[]).await;
    assert_eq!(registered.max_concurrency, 2);
    for n in 0..2 {
        assert_assigned_to(
            &c.assign_simple(&format!("dm-task-{n}"), "backend", &[])
                .await,
            "dm-1",
        );
    }
    assert_state(
        &c.assign_simple("dm-task-2", "backend", &[]).await,
        AssignmentState::Queued,
    );
}
