//! WatchAssignments: replay of in-flight work on connect, new assignments with their subtask details,
//! reconnects that lose nothing, unknown specialists, streams ending on deregistration.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::*;
use tonic::Code;

#[tokio::test]
async fn replays_in_flight_assignments_on_connect() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("wr-1", "frontend", &["react", "css"]).await;
    let mut first_request = task("wr-task-1", "frontend", &["react"]);
    first_request.payload = b"first payload".to_vec();
    first_request.priority = 4;
    first_request.parent_id = "wr-parent".into();
    let first = c.assign(first_request).await;
    let mut second_request = task("wr-task-2", "frontend", &["css", "react"]);
    second_request.payload = vec![0, 159, 146, 150, 255];
    let second = c.assign(second_request).await;
    // Completed work is not in flight.
    let done = c.assign_simple("wr-done", "frontend", &["react"]).await;
    c.report(&done, true).await;

    let mut stream = c.watch("wr-1").await;
    let replay_1 = next_event(&mut stream).await;
    let replay_2 = next_event(&mut stream).await;
    assert_eq!(event_kind(&replay_1), WatchEventKind::Assigned);
    assert_eq!(event_kind(&replay_2), WatchEventKind::Assigned);
    assert_eq!(
        event_assignment(&replay_1),
        &first,
        "oldest epoch first, same as Assign returned"
    );
    assert_eq!(event_assignment(&replay_2), &second);
    let subtask = replay_1.subtask.as_ref().expect("subtask details");
    assert_eq!(subtask.subtask_id, "wr-task-1");
    assert_eq!(subtask.specialist_type, "frontend");
    assert_eq!(subtask.required_capabilities, strings(&["react"]));
    assert_eq!(subtask.payload, b"first payload");
    assert_eq!(subtask.priority, 4);
    assert_eq!(subtask.parent_id, "wr-parent");
    let subtask = replay_2.subtask.as_ref().expect("subtask details");
    assert_eq!(
        subtask.payload,
        vec![0, 159, 146, 150, 255],
        "payload bytes are opaque"
    );
    assert_eq!(
        subtask
            .required_capabilities
            .iter()
            .collect::<BTreeSet<_>>(),
        ["css".to_string(), "react".to_string()]
            .iter()
            .collect::<BTreeSet<_>>()
    );
    // Nothing else: no duplicate of the replayed events, no completed work.
    assert_no_event(&mut stream, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn streams_new_assignments_with_their_subtask_details() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("ws-1", "backend", &["rust"]).await;
    let mut stream = c.watch("ws-1").await;
    let payload: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
    let mut request = task("ws-task", "backend", &["rust"]);
    request.payload = payload.clone();
    let assigned = c.assign(request).await;

    let event = next_event(&mut stream).await;
    assert_eq!(event_kind(&event), WatchEventKind::Assigned);
    let assignment = event_assignment(&event);
    assert_eq!(assignment.subtask_id, "ws-task");
    assert_eq!(assignment.specialist_id, "ws-1");
    assert_eq!(assignment.epoch, assigned.epoch);
    assert_eq!(assignment.state, AssignmentState::Assigned as i32);
    let subtask = event.subtask.as_ref().unwrap();
    assert_eq!(subtask.required_capabilities, strings(&["rust"]));
    assert_eq!(subtask.payload, payload);

    // A queued subtask reaches the stream when it is handed out later.
    c.register_full("ws-1", "backend", &["rust"], 1, Availability::Online)
        .await;
    let queued = c.assign_simple("ws-later", "backend", &["rust"]).await;
    assert_state(&queued, AssignmentState::Queued);
    assert_no_event(&mut stream, Duration::from_millis(200)).await;
    c.report(&assigned, true).await;
    let later = next_event(&mut stream).await;
    assert_eq!(event_kind(&later), WatchEventKind::Assigned);
    assert_eq!(event_assignment(&later).subtask_id, "ws-later");
    assert_eq!(
        event_assignment(&later).epoch,
        c.get("ws-later").await.epoch
    );
}

#[tokio::test]
async fn work_for_other_specialists_is_not_streamed() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register_full("wo-a", "docs", &[], 1, Availability::Online)
        .await;
    c.register_full("wo-b", "docs", &[], 1, Availability::Online)
        .await;
    let mut stream_a = c.watch("wo-a").await;
    let mut stream_b = c.watch("wo-b").await;
    let first = c.assign_simple("wo-1", "docs", &[]).await;
    let second = c.assign_simple("wo-2", "docs", &[]).await;
    assert_ne!(first.specialist_id, second.specialist_id);
    let (for_a, for_b) = if first.specialist_id == "wo-a" {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(
        event_assignment(&next_event(&mut stream_a).await).subtask_id,
        for_a.subtask_id
    );
    assert_eq!(
        event_assignment(&next_event(&mut stream_b).await).subtask_id,
        for_b.subtask_id
    );
    assert_no_event(&mut stream_a, Duration::from_millis(200)).await;
    assert_no_event(&mut stream_b, Duration::from_millis(10)).await;
}

#[tokio::test]
async fn a_reconnect_loses_nothing() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register_full("wc-1", "testing", &[], 100, Availability::Online)
        .await;

    let mut stream = c.watch("wc-1").await;
    let first = c.assign_simple("wc-1-task", "testing", &[]).await;
    assert_eq!(
        event_assignment(&next_event(&mut stream).await).subtask_id,
        "wc-1-task"
    );
    drop(stream);

    // While disconnected: one more assignment, and the first one completes.
    let missed = c.assign_simple("wc-2-task", "testing", &[]).await;
    c.report(&first, true).await;

    let mut stream = c.watch("wc-1").await;
    let replayed = next_event(&mut stream).await;
    assert_eq!(event_kind(&replayed), WatchEventKind::Assigned);
    assert_eq!(event_assignment(&replayed), &missed);
    assert_no_event(&mut stream, Duration::from_millis(200)).await;

    // And the live feed continues after the replay.
    let live = c.assign_simple("wc-3-task", "testing", &[]).await;
    assert_eq!(event_assignment(&next_event(&mut stream).await), &live);
}

#[tokio::test]
async fn many_assignments_while_watching_and_reconnecting_arrive_exactly_once() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register_full("wm-1", "general", &[], 1000, Availability::Online)
        .await;
    let total = 300;

    let mut stream = c.watch("wm-1").await;
    let submitter = {
        let mut c = server.connect().await;
        tokio::spawn(async move {
            for n in 0..total {
                c.assign_simple(&format!("wm-task-{n}"), "general", &[])
                    .await;
            }
        })
    };
    // Read part of them, then drop the stream mid-flight.
    let mut seen_first = BTreeSet::new();
    while seen_first.len() < 100 {
        let event = next_event(&mut stream).await;
        assert_eq!(event_kind(&event), WatchEventKind::Assigned);
        assert!(
            seen_first.insert(event_assignment(&event).subtask_id.clone()),
            "duplicate event on one stream"
        );
    }
    drop(stream);
    submitter.await.expect("submitter");

    // Nothing was reported, so a new stream must replay every one of them exactly once.
    let mut stream = c.watch("wm-1").await;
    let mut replayed = BTreeSet::new();
    let mut last_epoch = 0;
    for _ in 0..total {
        let event = next_event(&mut stream).await;
        let assignment = event_assignment(&event);
        assert!(assignment.epoch > last_epoch, "replayed oldest epoch first");
        last_epoch = assignment.epoch;
        assert!(
            replayed.insert(assignment.subtask_id.clone()),
            "duplicate replay"
        );
    }
    assert_eq!(replayed.len(), total);
    assert!(seen_first.is_subset(&replayed));
    assert_no_event(&mut stream, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn watching_an_unknown_specialist_is_not_found() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let result = c
        .assign
        .watch_assignments(pb::WatchAssignmentsRequest {
            specialist_id: "wu-nobody".into(),
            incarnation: "ab".into(),
        })
        .await;
    match result {
        Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
        Ok(response) => {
            // Some servers send the status as the first stream message instead.
            let mut stream = response.into_inner();
            let first = tokio::time::timeout(EVENTUALLY, stream.message())
                .await
                .expect("an answer in time");
            let status = first.expect_err("no events for an unknown specialist");
            assert_eq!(status.code(), Code::NotFound, "{status:?}");
        }
    }
}

#[tokio::test]
async fn deregistration_revokes_and_ends_the_stream() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("wd-1", "frontend", &[]).await;
    let held = c.assign_simple("wd-task", "frontend", &[]).await;
    let mut stream = c.watch("wd-1").await;
    assert_eq!(event_assignment(&next_event(&mut stream).await), &held);
    c.deregister("wd-1").await;
    let revoked = next_event(&mut stream).await;
    assert_eq!(event_kind(&revoked), WatchEventKind::Revoked);
    assert_eq!(event_assignment(&revoked).subtask_id, "wd-task");
    let end = tokio::time::timeout(EVENTUALLY, stream.message())
        .await
        .expect("the stream ends in time");
    match end {
        Ok(None) => {}
        Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
        Ok(Some(event)) => panic!("no events after deregistration, got {event:?}"),
    }
}

#[tokio::test]
async fn a_stream_survives_a_reregistration() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("wre-1", "backend", &[]).await;
    let mut stream = c.watch("wre-1").await;
    c.register("wre-1", "backend", &["rust"]).await;
    let assigned = c.assign_simple("wre-task", "backend", &["rust"]).await;
    assert_eq!(event_assignment(&next_event(&mut stream).await), &assigned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_ends_up_holding_exactly_its_in_flight_work() {
    use futures::StreamExt;
    const TASKS: usize = 1500;
    let server = TestServer::start_with(&["--lease-ttl-ms", "600000"]).await;
    let mut c = server.clients.clone();
    c.register_full("wl-1", "general", &[], 1000, Availability::Online)
        .await;
    // Open the stream on a connection with small HTTP/2 windows and do not read it while far more
    // events than any buffer holds happen: 1500 ASSIGNED with a 512-byte payload, then 750 REVOKED.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .http2_adaptive_window(false)
        .connect()
        .await
        .expect("connect");
    let mut stream = pb::assign_service_client::AssignServiceClient::new(channel)
        .watch_assignments(pb::WatchAssignmentsRequest {
            specialist_id: "wl-1".into(),
            incarnation: c.incarnations.get("wl-1"),
        })
        .await
        .expect("watch")
        .into_inner();
    let payload = vec![b'p'; 512];
    futures::stream::iter(0..TASKS)
        .for_each_concurrent(16, |n| {
            let mut c = c.clone();
            let mut request = task(&format!("wl-task-{n}"), "general", &[]);
            request.payload = payload.clone();
            async move {
                c.assign(request).await;
            }
        })
        .await;
    futures::stream::iter((0..TASKS).step_by(2))
        .for_each_concurrent(16, |n| {
            let mut c = c.clone();
            async move {
                c.cancel(&format!("wl-task-{n}")).await;
            }
        })
        .await;
    let marker = c.assign_simple("wl-marker", "general", &[]).await;

    // Read until the marker: by then every in-flight assignment must have been delivered, and every
    // delivered one that was cancelled meanwhile revoked (also those whose REVOKED fell in the gap).
    let mut delivered = BTreeSet::new();
    let mut believed_held = BTreeSet::new();
    loop {
        let event = next_event(&mut stream).await;
        let assignment = event_assignment(&event);
        match event_kind(&event) {
            WatchEventKind::Assigned => {
                delivered.insert((assignment.subtask_id.clone(), assignment.epoch));
                believed_held.insert(assignment.subtask_id.clone());
            }
            WatchEventKind::Revoked => {
                assert_eq!(
                    assignment.state,
                    AssignmentState::Cancelled as i32,
                    "{assignment:?}"
                );
                believed_held.remove(&assignment.subtask_id);
            }
            other => panic!("unexpected event kind {other:?}"),
        }
        if assignment.subtask_id == "wl-marker" {
            assert_eq!(assignment.epoch, marker.epoch);
            break;
        }
    }
    let in_flight: Vec<pb::Assignment> = futures::stream::iter((1..TASKS).step_by(2))
        .map(|n| {
            let mut c = c.clone();
            async move { c.get(&format!("wl-task-{n}")).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut missing = Vec::new();
    for assignment in in_flight {
        assert_assigned_to(&assignment, "wl-1");
        if !delivered.contains(&(assignment.subtask_id.clone(), assignment.epoch)) {
            missing.push(assignment.subtask_id);
        }
    }
    assert!(
        missing.is_empty(),
        "{} in-flight assignments never reached the lagging watcher, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    believed_held.remove("wl-marker");
    let cancelled_but_believed: Vec<&String> = believed_held
        .iter()
        .filter(|subtask_id| {
            let n: usize = subtask_id.trim_start_matches("wl-task-").parse().unwrap();
            n.is_multiple_of(2)
        })
        .collect();
    assert!(
        cancelled_but_believed.is_empty(),
        "{} cancelled subtasks were never revoked on the lagging watcher, e.g. {:?}",
        cancelled_but_believed.len(),
        &cancelled_but_believed[..cancelled_but_believed.len().min(5)]
    );
    assert_eq!(believed_held.len(), TASKS / 2);
}

#[tokio::test]
async fn a_watch_stream_outlives_the_per_call_timeout() {
    // The per-call deadline bounds unary calls, not how long a watch stream stays open.
    let server = TestServer::start_with(&["--request-timeout-ms", "300"]).await;
    let mut c = server.clients.clone();
    c.register("wt-1", "docs", &[]).await;
    let mut stream = c.watch("wt-1").await;
    // Quiet for well over the per-call timeout: the stream must neither end nor fail.
    assert_no_event(&mut stream, Duration::from_millis(900)).await;
    let assigned = c.assign_simple("wt-task", "docs", &[]).await;
    assert_eq!(event_assignment(&next_event(&mut stream).await), &assigned);
}

#[tokio::test]
async fn watch_streams_are_bounded_per_server() {
    let server = TestServer::start_with(&["--max-watch-streams", "2"]).await;
    let mut c = server.clients.clone();
    c.register("bound-1", "backend", &[]).await;
    let first = c.watch("bound-1").await;
    let _second = c.watch("bound-1").await;
    let refused = c
        .assign
        .watch_assignments(pb::WatchAssignmentsRequest {
            specialist_id: "bound-1".into(),
            incarnation: c.incarnations.get("bound-1"),
        })
        .await;
    let status = assert_code(refused, Code::ResourceExhausted);
    assert!(
        status.message().contains("--max-watch-streams"),
        "{status:?}"
    );
    // A stream the client drops gives its place back.
    drop(first);
    poll_until("a place frees up", EVENTUALLY, || {
        let mut c = c.clone();
        async move {
            c.assign
                .watch_assignments(pb::WatchAssignmentsRequest {
                    specialist_id: "bound-1".into(),
                    incarnation: c.incarnations.get("bound-1"),
                })
                .await
                .ok()
        }
    })
    .await;
}

/// One caller cannot take every place: --max-watch-streams-per-caller bounds its streams, and
/// another caller still gets one.
#[tokio::test]
async fn watch_streams_are_bounded_per_caller() {
    let server = TestServer::start_with(&["--max-watch-streams-per-caller", "1"]).await;
    let mut c = server.clients.clone();
    c.register("per-caller-1", "backend", &[]).await;
    let watch_as = |caller: &str| {
        let mut request = tonic::Request::new(pb::WatchAssignmentsRequest {
            specialist_id: "per-caller-1".into(),
            incarnation: c.incarnations.get("per-caller-1"),
        });
        request.metadata_mut().insert(
            "x-caller-id",
            tonic::metadata::MetadataValue::try_from(caller).unwrap(),
        );
        request
    };
    let _first = c
        .assign
        .watch_assignments(watch_as("caller-a"))
        .await
        .expect("a first stream");
    let refused = c.assign.watch_assignments(watch_as("caller-a")).await;
    let status = assert_code(refused, Code::ResourceExhausted);
    assert!(
        status.message().contains("--max-watch-streams-per-caller"),
        "{status:?}"
    );
    c.assign
        .watch_assignments(watch_as("caller-b"))
        .await
        .expect("another caller has its own place");
}
