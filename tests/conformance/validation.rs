//! Input validation (INVALID_ARGUMENT naming the field in bad-request details), NOT_FOUND for unknown
//! ids, the per-caller Assign rate limit, and expired client deadlines.

use crate::support;

use std::time::Duration;

use support::*;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};

const MAX_ID: usize = 128;
const MAX_PAYLOAD: usize = 1_048_576;

fn long(n: usize) -> String {
    "x".repeat(n)
}

/// Bad ids: empty, too long, whitespace, control characters.
fn bad_ids() -> Vec<(&'static str, String)> {
    vec![
        ("empty", String::new()),
        ("129 bytes", long(MAX_ID + 1)),
        ("space", "has space".into()),
        ("tab", "has\ttab".into()),
        ("newline", "line\nbreak".into()),
        ("control", "bell\u{7}".into()),
        ("zero-width space", "fe\u{200B}1".into()),
        ("bidi override", "fe\u{202E}1".into()),
        ("multibyte over limit", "é".repeat(65)),
    ]
}

async fn assert_not_created(c: &mut Clients, subtask_id: &str) {
    if subtask_id.is_empty() || subtask_id.len() > MAX_ID {
        return;
    }
    let result = c
        .assign
        .get_assignment(pb::GetAssignmentRequest {
            subtask_id: subtask_id.into(),
        })
        .await;
    match result {
        Err(status) => assert!(
            matches!(status.code(), Code::NotFound | Code::InvalidArgument),
            "{status:?}"
        ),
        Ok(found) => panic!("a rejected Assign created {subtask_id:?}: {found:?}"),
    }
}

#[tokio::test]
async fn assign_ids_are_validated() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    for (what, bad) in bad_ids() {
        let request = task(&bad, "frontend", &[]);
        let result = c.try_assign(request).await;
        assert_invalid(result, "subtask_id");
        assert_not_created(&mut c, &bad).await;

        let mut request = task(
            &format!("va-parent-{}", what.replace(' ', "-")),
            "frontend",
            &[],
        );
        request.parent_id = bad.clone();
        if bad.is_empty() {
            // An empty parent is allowed.
            c.try_assign(request)
                .await
                .expect("empty parent_id is fine");
        } else {
            assert_invalid(c.try_assign(request).await, "parent_id");
        }

        let mut request = task("va-deps", "frontend", &[]);
        request.depends_on = vec!["va-parent-empty".into(), bad.clone()];
        assert_invalid(c.try_assign(request).await, "depends_on[1]");
    }
    // Exactly 128 bytes and printable non-ASCII are fine.
    let longest = long(MAX_ID);
    c.assign(task(&longest, "frontend", &[])).await;
    c.assign(task("überjob-✓", "frontend", &[])).await;
}

#[tokio::test]
async fn assign_type_capabilities_payload_and_priority_are_validated() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();

    assert_invalid(
        c.try_assign(task("vt-1", "wizards", &[])).await,
        "specialist_type",
    );
    assert_invalid(c.try_assign(task("vt-2", "", &[])).await, "specialist_type");
    assert_invalid(
        c.try_assign(task("vt-3", "Frontend", &[])).await,
        "specialist_type",
    );

    let too_many: Vec<String> = (0..65).map(|n| format!("cap{n}")).collect();
    let mut request = task("vc-1", "frontend", &[]);
    request.required_capabilities = too_many;
    assert_invalid(c.try_assign(request).await, "required_capabilities");
    let exactly: Vec<String> = (0..64).map(|n| format!("cap{n}")).collect();
    let mut request = task("vc-ok", "frontend", &[]);
    request.required_capabilities = exactly;
    c.assign(request).await;

    for (index, bad) in [
        (2usize, String::new()),
        (0, long(65)),
        (1, "two words".into()),
        (1, "ctl\u{1b}".into()),
    ] {
        let mut caps = strings(&["react", "css", "html"]);
        caps[index] = bad;
        let mut request = task("vc-2", "frontend", &[]);
        request.required_capabilities = caps;
        assert_invalid(
            c.try_assign(request).await,
            &format!("required_capabilities[{index}]"),
        );
    }
    let mut request = task("vc-64", "frontend", &[]);
    request.required_capabilities = vec![long(64)];
    c.assign(request).await;

    let mut request = task("vp-1", "frontend", &[]);
    request.payload = vec![7u8; MAX_PAYLOAD + 1];
    assert_invalid(c.try_assign(request).await, "payload");
    assert_not_created(&mut c, "vp-1").await;
    let mut request = task("vp-max", "frontend", &[]);
    request.payload = vec![7u8; MAX_PAYLOAD];
    c.assign(request).await;
    let (_, subtask) = c.get_full("vp-max").await;
    assert_eq!(
        subtask.payload.len(),
        MAX_PAYLOAD,
        "a 1 MiB payload is stored whole"
    );

    for bad in [-1, 1001, i32::MIN, i32::MAX] {
        let mut request = task("vr-1", "frontend", &[]);
        request.priority = bad;
        assert_invalid(c.try_assign(request).await, "priority");
    }
    for good in [0, 1000] {
        let mut request = task(&format!("vr-ok-{good}"), "frontend", &[]);
        request.priority = good;
        c.assign(request).await;
    }
}

#[tokio::test]
async fn every_violation_of_a_request_is_reported() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let request = pb::AssignRequest {
        subtask_id: String::new(),
        specialist_type: "wizards".into(),
        required_capabilities: vec![String::new()],
        priority: -5,
        parent_id: "a b".into(),
        depends_on: vec![String::new()],
        payload: Vec::new(),
        require_all_capabilities: false,
        description: String::new(),
        estimated_duration_ms: None,
    };
    let status = assert_code(c.try_assign(request).await, Code::InvalidArgument);
    let fields = violated_fields(&status);
    for field in [
        "subtask_id",
        "specialist_type",
        "required_capabilities[0]",
        "priority",
        "parent_id",
        "depends_on[0]",
    ] {
        assert!(
            fields.iter().any(|f| f == field),
            "{field} missing from {fields:?}"
        );
    }
}

#[tokio::test]
async fn register_and_heartbeat_are_validated() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let register =
        |id: &str, specialist_type: &str, caps: Vec<String>, max: u32| pb::RegisterRequest {
            specialist_id: id.into(),
            specialist_type: specialist_type.into(),
            capabilities: caps,
            max_concurrency: max,
            ..Default::default()
        };
    for (_, bad) in bad_ids().into_iter().filter(|(_, id)| !id.is_empty()) {
        assert_invalid(
            c.register
                .register(register(&bad, "frontend", vec![], 0))
                .await,
            "specialist_id",
        );
        assert_invalid(
            c.register
                .heartbeat(pb::HeartbeatRequest {
                    specialist_id: bad.clone(),
                    availability: 0,
                    incarnation: "ab".into(),
                })
                .await,
            "specialist_id",
        );
    }
    assert_invalid(
        c.register
            .heartbeat(pb::HeartbeatRequest {
                specialist_id: String::new(),
                availability: 0,
                incarnation: "ab".into(),
            })
            .await,
        "specialist_id",
    );
    assert_invalid(
        c.register
            .register(register("vr-1", "wizards", vec![], 0))
            .await,
        "specialist_type",
    );
    assert_invalid(
        c.register.register(register("vr-1", "", vec![], 0)).await,
        "specialist_type",
    );
    let too_many: Vec<String> = (0..65).map(|n| format!("cap{n}")).collect();
    assert_invalid(
        c.register
            .register(register("vr-1", "frontend", too_many, 0))
            .await,
        "capabilities",
    );
    assert_invalid(
        c.register
            .register(register(
                "vr-1",
                "frontend",
                vec!["ok".into(), String::new()],
                0,
            ))
            .await,
        "capabilities[1]",
    );
    assert_invalid(
        c.register
            .register(register("vr-1", "frontend", vec![long(65)], 0))
            .await,
        "capabilities[0]",
    );
    assert_invalid(
        c.register
            .register(register("vr-1", "frontend", vec![], 1001))
            .await,
        "max_concurrency",
    );
    // Nothing was registered by the refused calls.
    let listed = c
        .register
        .list_specialists(pb::ListSpecialistsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.specialists.is_empty(), "{listed:?}");

    let ok = c
        .register_full("vr-1", "frontend", &[], 1000, Availability::Online)
        .await;
    assert_eq!(ok.max_concurrency, 1000);
    let longest = long(MAX_ID);
    c.register(&longest, "frontend", &[]).await;
}

#[tokio::test]
async fn release_and_report_are_validated() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("vrr-1", "backend", &[]).await;
    let held = c.assign_simple("vrr-task", "backend", &[]).await;

    assert_invalid(c.try_release("vrr-task", "vrr-1", 0).await, "epoch");
    assert_invalid(c.try_report("vrr-task", "vrr-1", 0, true).await, "epoch");
    assert_invalid(c.try_release("", "vrr-1", held.epoch).await, "subtask_id");
    assert_invalid(
        c.try_release("vrr-task", "", held.epoch).await,
        "specialist_id",
    );
    assert_invalid(
        c.try_report("bad id", "vrr-1", held.epoch, true).await,
        "subtask_id",
    );
    assert_invalid(
        c.try_report("vrr-task", &long(129), held.epoch, true).await,
        "specialist_id",
    );

    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.1, 1.5] {
        let result = c
            .perf
            .report_completion(pb::ReportCompletionRequest {
                subtask_id: "vrr-task".into(),
                specialist_id: "vrr-1".into(),
                epoch: held.epoch,
                success: true,
                completion_time_ms: 1,
                quality_score: bad,
                detail: String::new(),
                incarnation: String::new(),
            })
            .await;
        assert_invalid(result, "quality_score");
    }
    let report = |detail: &str, completion_time_ms: u64| pb::ReportCompletionRequest {
        subtask_id: "vrr-task".into(),
        specialist_id: "vrr-1".into(),
        epoch: held.epoch,
        success: true,
        completion_time_ms,
        quality_score: 0.5,
        detail: detail.into(),
        incarnation: String::new(),
    };
    for bad in ["nul\u{0}byte", "escape\u{1b}[31m", "rlo\u{202E}txt"] {
        let result = c.perf.report_completion(report(bad, 1)).await;
        assert_invalid(result, "detail");
    }
    for bad in [2_592_000_001, 12_300_000_000_000_000_000] {
        let result = c.perf.report_completion(report("", bad)).await;
        assert_invalid(result, "completion_time_ms");
    }
    // Nothing of that took effect.
    assert_eq!(c.get("vrr-task").await, held);

    for (n, quality) in [0.0, 1.0].into_iter().enumerate() {
        let held = if n == 0 {
            held.clone()
        } else {
            c.assign_simple("vrr-task-2", "backend", &[]).await
        };
        let done = c
            .perf
            .report_completion(pb::ReportCompletionRequest {
                subtask_id: held.subtask_id.clone(),
                specialist_id: "vrr-1".into(),
                epoch: held.epoch,
                success: true,
                completion_time_ms: 1,
                quality_score: quality,
                detail: String::new(),
                incarnation: c.incarnations.get("vrr-1"),
            })
            .await
            .expect("quality 0 and 1 are allowed");
        assert_state(
            &done.into_inner().assignment.unwrap(),
            AssignmentState::Completed,
        );
    }
}

#[tokio::test]
async fn lookups_are_validated() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    assert_invalid(
        c.assign
            .get_assignment(pb::GetAssignmentRequest {
                subtask_id: String::new(),
            })
            .await,
        "subtask_id",
    );
    assert_invalid(c.try_cancel("").await, "subtask_id");
    assert_invalid(
        c.queue
            .get_queue_position(pb::GetQueuePositionRequest {
                subtask_id: "a\nb".into(),
            })
            .await,
        "subtask_id",
    );
    assert_invalid(
        c.register
            .get_specialist(pb::GetSpecialistRequest {
                specialist_id: String::new(),
            })
            .await,
        "specialist_id",
    );
    assert_invalid(
        c.register
            .deregister(pb::DeregisterRequest {
                specialist_id: long(200),
            })
            .await,
        "specialist_id",
    );
    assert_invalid(
        c.perf
            .get_performance(pb::GetPerformanceRequest {
                specialist_id: String::new(),
            })
            .await,
        "specialist_id",
    );
    assert_invalid(
        c.assign
            .watch_assignments(pb::WatchAssignmentsRequest {
                specialist_id: String::new(),
                incarnation: "ab".into(),
            })
            .await
            .map(|_| ()),
        "specialist_id",
    );
    assert_invalid(
        c.register
            .list_specialists(pb::ListSpecialistsRequest {
                page_size: 1001,
                ..Default::default()
            })
            .await,
        "page_size",
    );
    c.register
        .list_specialists(pb::ListSpecialistsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("page_size 1000 is allowed");
    assert_invalid(
        c.queue
            .list_queue(pb::ListQueueRequest {
                specialist_type: "frontend".into(),
                page_size: 5000,
                page_token: String::new(),
            })
            .await,
        "page_size",
    );
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("nf-known", "docs", &[]).await;
    let held = c.assign_simple("nf-task", "docs", &[]).await;

    let codes = vec![
        (
            "GetAssignment",
            c.assign
                .get_assignment(pb::GetAssignmentRequest {
                    subtask_id: "nf-x".into(),
                })
                .await
                .map(|_| ()),
        ),
        ("Cancel", c.try_cancel("nf-x").await.map(|_| ())),
        (
            "Release",
            c.try_release("nf-x", "nf-known", held.epoch)
                .await
                .map(|_| ()),
        ),
        (
            "ReportCompletion",
            c.try_report("nf-x", "nf-known", held.epoch, true)
                .await
                .map(|_| ()),
        ),
        (
            "GetQueuePosition",
            c.queue
                .get_queue_position(pb::GetQueuePositionRequest {
                    subtask_id: "nf-x".into(),
                })
                .await
                .map(|_| ()),
        ),
        (
            "GetSpecialist",
            c.register
                .get_specialist(pb::GetSpecialistRequest {
                    specialist_id: "nf-x".into(),
                })
                .await
                .map(|_| ()),
        ),
        (
            "Heartbeat",
            c.register
                .heartbeat(pb::HeartbeatRequest {
                    specialist_id: "nf-x".into(),
                    availability: 0,
                    incarnation: "ab".into(),
                })
                .await
                .map(|_| ()),
        ),
        (
            "Deregister",
            c.register
                .deregister(pb::DeregisterRequest {
                    specialist_id: "nf-x".into(),
                })
                .await
                .map(|_| ()),
        ),
        (
            "GetPerformance",
            c.perf
                .get_performance(pb::GetPerformanceRequest {
                    specialist_id: "nf-x".into(),
                })
                .await
                .map(|_| ()),
        ),
    ];
    for (method, result) in codes {
        let status = result.expect_err(method);
        assert_eq!(status.code(), Code::NotFound, "{method}: {status:?}");
        assert!(
            status.message().contains("nf-x"),
            "{method} names the id: {status:?}"
        );
    }
    let watch = c
        .assign
        .watch_assignments(pb::WatchAssignmentsRequest {
            specialist_id: "nf-x".into(),
            incarnation: "ab".into(),
        })
        .await;
    match watch {
        Err(status) => assert_eq!(status.code(), Code::NotFound),
        Ok(response) => {
            let first = tokio::time::timeout(EVENTUALLY, response.into_inner().message())
                .await
                .expect("in time");
            assert_eq!(first.expect_err("NOT_FOUND").code(), Code::NotFound);
        }
    }
}

fn with_caller<T>(message: T, caller: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(caller) = caller {
        request
            .metadata_mut()
            .insert("x-caller-id", MetadataValue::try_from(caller).unwrap());
    }
    request
}

#[tokio::test]
async fn assign_is_rate_limited_per_caller() {
    let server = TestServer::start_with(&["--assign-rate-limit", "5"]).await;
    let mut c = server.clients.clone();
    for n in 0..5 {
        c.assign
            .assign(with_caller(
                task(&format!("rl-a-{n}"), "frontend", &[]),
                Some("caller-a"),
            ))
            .await
            .unwrap_or_else(|status| panic!("call {n} of 5 is allowed: {status:?}"));
    }
    let refused = c
        .assign
        .assign(with_caller(
            task("rl-a-over", "frontend", &[]),
            Some("caller-a"),
        ))
        .await;
    let status = assert_code(refused, Code::ResourceExhausted);
    assert!(!status.message().is_empty());
    // The wait comes as a google.rpc.RetryInfo detail too, for clients to honour.
    use tonic_types::StatusExt;
    let retry = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("a RetryInfo detail");
    assert!(
        retry > std::time::Duration::ZERO && retry <= std::time::Duration::from_secs(60),
        "{retry:?}"
    );
    assert_not_created(&mut c, "rl-a-over").await;

    // Another caller has its own budget.
    c.assign
        .assign(with_caller(
            task("rl-b-0", "frontend", &[]),
            Some("caller-b"),
        ))
        .await
        .expect("another caller still passes");

    // A caller id is an id: a made-up 8 KB one (a new budget per call, a bucket each) is refused
    // before it costs anything.
    let long_caller = "c".repeat(8192);
    let refused = c
        .assign
        .assign(with_caller(
            task("rl-long", "frontend", &[]),
            Some(&long_caller),
        ))
        .await;
    assert_invalid(refused, "x-caller-id");
    assert_not_created(&mut c, "rl-long").await;

    // Without x-caller-id the caller is the peer address, with its own budget.
    for n in 0..5 {
        c.assign
            .assign(with_caller(
                task(&format!("rl-ip-{n}"), "frontend", &[]),
                None,
            ))
            .await
            .unwrap_or_else(|status| panic!("anonymous call {n} of 5 is allowed: {status:?}"));
    }
    assert_code(
        c.assign
            .assign(with_caller(task("rl-ip-over", "frontend", &[]), None))
            .await,
        Code::ResourceExhausted,
    );
    assert_code(
        c.assign
            .assign(with_caller(
                task("rl-a-again", "frontend", &[]),
                Some("caller-a"),
            ))
            .await,
        Code::ResourceExhausted,
    );

    // The limit is on Assign only.
    c.get("rl-a-0").await;
    c.register("rl-spec", "frontend", &[]).await;
}

/// One unary gRPC call over raw HTTP/2 with curl, so that the grpc-timeout header reaches the server
/// as sent (tonic's client enforces the deadline itself and never shows the server's answer).
/// `None` sends no body at all (the request ends with its headers). Returns the response's
/// grpc-status and grpc-message.
async fn curl_grpc(
    addr: std::net::SocketAddr,
    method: &str,
    message: Option<Vec<u8>>,
    grpc_timeout: &str,
) -> (String, String) {
    let body = message.map(|message| {
        let mut body = vec![0u8];
        body.extend((message.len() as u32).to_be_bytes());
        body.extend(message);
        body
    });
    let url = format!("http://{addr}/{method}");
    let timeout_header = format!("grpc-timeout: {grpc_timeout}");
    // Should the server answer before it has read a body, it resets the upload; curl sometimes
    // reports that as a stream error without the response, so such attempts are retried.
    let mut last = String::new();
    for _ in 0..10 {
        let (url, timeout_header, body) = (url.clone(), timeout_header.clone(), body.clone());
        let output = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let data = if body.is_some() { "@-" } else { "" };
            let mut child = std::process::Command::new("curl")
                .args(["-sS", "-v", "--http2-prior-knowledge", "--max-time", "20"])
                .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
                .args([
                    "-H",
                    &timeout_header,
                    "--data-binary",
                    data,
                    "-o",
                    "/dev/null",
                    &url,
                ])
                .stdin(if body.is_some() {
                    std::process::Stdio::piped()
                } else {
                    std::process::Stdio::null()
                })
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|error| {
                    panic!(
                        "this test needs curl with HTTP/2 support on PATH ({error}); install curl"
                    )
                });
            if let (Some(body), Some(mut stdin)) = (body, child.stdin.take()) {
                let _ = stdin.write_all(&body);
            }
            child.wait_with_output().expect("curl runs")
        })
        .await
        .unwrap();
        let verbose = String::from_utf8_lossy(&output.stderr).into_owned();
        let header = |name: &str| {
            verbose
                .lines()
                .filter_map(|line| line.strip_prefix("< "))
                .find_map(|line| {
                    let (key, value) = line.split_once(':')?;
                    key.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| value.trim().to_string())
                })
        };
        if let Some(status) = header("grpc-status") {
            return (status, header("grpc-message").unwrap_or_default());
        }
        last = verbose;
    }
    panic!("curl never got a gRPC answer (does it support HTTP/2?): {last}");
}

#[tokio::test]
async fn an_expired_client_deadline_is_deadline_exceeded() {
    use prost::Message;
    let server = TestServer::start().await;
    let mut c = server.clients.clone();

    // The server answers DEADLINE_EXCEEDED (grpc-status 4) at once, before reading any message.
    // (No body is sent: an answer before the upload ends makes the server reset the upload.)
    let (status, message) = curl_grpc(
        server.addr,
        "switchboard.v1.AssignService/Assign",
        None,
        "1n",
    )
    .await;
    assert_eq!(
        status,
        (Code::DeadlineExceeded as i32).to_string(),
        "grpc-message: {message}"
    );
    let (status, _) = curl_grpc(
        server.addr,
        "switchboard.v1.RegisterService/Register",
        None,
        "0m",
    )
    .await;
    assert_eq!(status, (Code::DeadlineExceeded as i32).to_string());
    // The same raw path with time to spare works, so curl's request itself is sound.
    let request = task("dl-raw", "frontend", &[]).encode_to_vec();
    let (status, message) = curl_grpc(
        server.addr,
        "switchboard.v1.AssignService/Assign",
        Some(request),
        "10S",
    )
    .await;
    assert_eq!(status, "0", "grpc-message: {message}");
    assert_state(&c.get("dl-raw").await, AssignmentState::Queued);

    // Through tonic the client gives up by itself (it reports CANCELLED or DEADLINE_EXCEEDED);
    // either way nothing happens on the server.
    let mut request = Request::new(task("dl-task", "frontend", &[]));
    request.set_timeout(Duration::from_nanos(1));
    let status = c
        .assign
        .assign(request)
        .await
        .expect_err("an expired deadline fails");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert_not_created(&mut c, "dl-task").await;

    // A generous deadline is fine.
    let mut request = Request::new(task("dl-ok", "frontend", &[]));
    request.set_timeout(Duration::from_secs(30));
    c.assign
        .assign(request)
        .await
        .expect("a 30 s deadline passes");
}

#[tokio::test]
async fn specialist_types_come_from_the_configuration() {
    let server = TestServer::start_with(&["--specialist-types", "frontend,ml,general"]).await;
    let mut c = server.clients.clone();
    c.register("ct-ml", "ml", &["pytorch"]).await;
    assert_assigned_to(
        &c.assign_simple("ct-task", "ml", &["pytorch"]).await,
        "ct-ml",
    );
    assert_invalid(
        c.try_assign(task("ct-backend", "backend", &[])).await,
        "specialist_type",
    );
    assert_invalid(
        c.register
            .register(pb::RegisterRequest {
                specialist_id: "ct-back".into(),
                specialist_type: "backend".into(),
                ..Default::default()
            })
            .await,
        "specialist_type",
    );
    let stats = c
        .queue
        .get_queue_stats(pb::GetQueueStatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let types: Vec<&str> = stats
        .types
        .iter()
        .map(|t| t.specialist_type.as_str())
        .collect();
    assert_eq!(types, vec!["frontend", "ml", "general"]);
}

#[tokio::test]
async fn a_fallback_type_outside_the_types_refuses_to_start() {
    let args = server_args(&[
        "--specialist-types",
        "frontend,backend",
        "--fallback-type",
        "general",
    ]);
    let config = switchboard::config::ServeConfig::from_args(&args).expect("flags parse");
    assert!(switchboard::server::start(config).await.is_err());
    let args = server_args(&["--lease-ttl-ms", "100", "--heartbeat-interval-ms", "100"]);
    let config = switchboard::config::ServeConfig::from_args(&args).expect("flags parse");
    assert!(
        switchboard::server::start(config).await.is_err(),
        "the heartbeat interval must be below the lease ttl"
    );
}

#[tokio::test]
async fn free_text_refuses_control_characters() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let mut labels = std::collections::HashMap::new();
    labels.insert("team".to_string(), "web\u{0}".to_string());
    let registered = c
        .register
        .register(pb::RegisterRequest {
            specialist_id: "ft-1".into(),
            specialist_type: "backend".into(),
            labels,
            ..Default::default()
        })
        .await;
    assert_invalid(registered, "labels[team]");
    c.register("ft-1", "backend", &[]).await;
    let held = c.assign_simple("ft-task", "backend", &[]).await;
    let cancelled = c
        .assign
        .cancel(pb::CancelRequest {
            subtask_id: held.subtask_id.clone(),
            reason: "stop\u{7}".into(),
        })
        .await;
    assert_invalid(cancelled, "reason");
    // Layout characters are text: a multi-line reason is fine.
    let cancelled = c
        .assign
        .cancel(pb::CancelRequest {
            subtask_id: held.subtask_id.clone(),
            reason: "superseded\n\tby ft-task-2".into(),
        })
        .await
        .expect("a reason with a line break and a tab");
    assert_state(
        &cancelled.into_inner().assignment.unwrap(),
        AssignmentState::Cancelled,
    );
}

/// GetAssignmentRequest on the wire, its string field as raw bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct RawGetAssignment {
    #[prost(bytes = "vec", tag = "1")]
    subtask_id: Vec<u8>,
}

#[tokio::test]
async fn undecodable_requests_are_invalid_argument() {
    let server = TestServer::start().await;
    let channel = support::channel(server.addr).await;
    let call = |subtask_id: Vec<u8>| {
        let channel = channel.clone();
        async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.expect("ready");
            let codec =
                tonic_prost::ProstCodec::<RawGetAssignment, pb::GetAssignmentResponse>::default();
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(
                "/switchboard.v1.AssignService/GetAssignment",
            );
            grpc.unary(Request::new(RawGetAssignment { subtask_id }), path, codec)
                .await
        }
    };
    let not_utf8 = assert_code(call(vec![b'a', 0xff, 0xfe]).await, Code::InvalidArgument);
    assert!(not_utf8.message().contains("UTF-8"), "{not_utf8:?}");
    let too_large = assert_code(
        call(vec![b'a'; 5 * 1024 * 1024]).await,
        Code::InvalidArgument,
    );
    assert!(too_large.message().contains("larger"), "{too_large:?}");
    // Well-formed, it is an ordinary lookup.
    assert_code(call(b"no-such-task".to_vec()).await, Code::NotFound);
}
