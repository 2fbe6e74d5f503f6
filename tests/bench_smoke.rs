//! A few seconds of `switchboard bench` (the real binary) so the load generator keeps working: on
//! its own embedded server with a backlog, against a running server at a fixed rate, and the
//! refusal of a non-loopback address; the embedded run also measures the transport floor. Stdout must be exactly one JSON object with sane figures.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

/// Fields every `--json` report has.
const FIELDS: &[&str] = &[
    "assign_per_s",
    "cycle_per_s",
    "assign_p50_ms",
    "assign_p90_ms",
    "assign_p99_ms",
    "assign_p999_ms",
    "deliver_p50_ms",
    "deliver_p99_ms",
    "drain_ms",
    "server_cpu_s",
    "server_rss_mb",
    "subtasks",
    "errors",
    "completed",
    "accepted",
    "incomplete",
];

/// Runs `switchboard bench <args>` on a blocking thread (the test's runtime keeps serving).
async fn bench(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("bench")
            .args(&args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("running switchboard bench")
    })
    .await
    .expect("the bench thread")
}

/// The one JSON object on stdout, after checking the run succeeded.
fn report(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench failed: {:?}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    let value: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("stdout is not one JSON object ({error}): {stdout}"));
    assert!(value.is_object(), "not an object: {value}");
    for field in FIELDS {
        assert!(value.get(field).is_some(), "no {field} in {value}");
    }
    value
}

fn number(report: &Value, field: &str) -> f64 {
    report[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number: {report}"))
}

/// Every run: work got through, nothing failed, every accepted subtask completed, percentiles ordered.
fn assert_sane(report: &Value) {
    assert!(number(report, "assign_per_s") > 0.0, "{report}");
    assert!(number(report, "cycle_per_s") > 0.0, "{report}");
    assert_eq!(number(report, "errors"), 0.0, "{report}");
    assert!(number(report, "completed") > 0.0, "{report}");
    assert_eq!(
        number(report, "accepted"),
        number(report, "subtasks"),
        "{report}"
    );
    assert_eq!(
        number(report, "completed"),
        number(report, "accepted"),
        "{report}"
    );
    assert_eq!(number(report, "incomplete"), 0.0, "{report}");
    let assign: Vec<f64> = [
        "assign_p50_ms",
        "assign_p90_ms",
        "assign_p99_ms",
        "assign_p999_ms",
    ]
    .iter()
    .map(|field| number(report, field))
    .collect();
    assert!(assign[0] > 0.0, "{report}");
    assert!(assign.windows(2).all(|pair| pair[0] <= pair[1]), "{report}");
    assert!(number(report, "deliver_p50_ms") <= number(report, "deliver_p99_ms"));
    assert!(number(report, "server_cpu_s") > 0.0, "{report}");
    assert!(number(report, "server_rss_mb") > 1.0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_run_with_a_backlog() {
    let output = bench(&[
        "--json",
        "--agents",
        "20",
        "--callers",
        "4",
        "--max-concurrency",
        "4",
        "--think-ms",
        "1",
        "--duration",
        "2",
        "--subtasks",
        "20000",
        "--backlog",
        "200",
        "--drain-timeout",
        "20",
        "--settle-timeout",
        "10",
        "--floor-secs",
        "0.5",
    ])
    .await;
    let report = report(&output);
    assert_sane(&report);
    assert_eq!(
        report["server"],
        "in-process server, embedded in-memory store (no Redis/Postgres configured; state is lost on exit)"
    );
    assert_eq!(report["build"], "debug");
    assert!(number(&report, "floor_health_per_s") > 0.0, "{report}");
    assert!(number(&report, "drain_ms") > 0.0, "{report}");
    assert!(number(&report, "subtasks") > 200.0, "{report}");
    // Progress lines went to stderr, not stdout.
    assert!(String::from_utf8_lossy(&output.stderr).contains("assign"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_server_at_a_fixed_rate() {
    let config = switchboard::config::ServeConfig::from_args([
        "--listen",
        "127.0.0.1:0",
        "--no-metrics",
        "--assign-rate-limit",
        "0",
        "--log-filter",
        "warn",
    ])
    .expect("serve flags");
    let server = switchboard::server::start(config)
        .await
        .expect("server starts");
    let addr = server.grpc_addr().to_string();
    let output = bench(&[
        "--json",
        "--quiet",
        "--addr",
        &addr,
        "--agents",
        "5",
        "--callers",
        "2",
        "--rate",
        "200",
        "--duration",
        "1.5",
    ])
    .await;
    let report = report(&output);
    assert_sane(&report);
    assert_eq!(report["server"], "external server");
    assert!(report["drain_ms"].is_null(), "{report}");
    assert!(report["floor_health_per_s"].is_null(), "{report}");
    // 200 a second for 1.5 s: about 300 calls, never far more.
    let subtasks = number(&report, "subtasks");
    assert!((100.0..=300.0).contains(&subtasks), "{report}");
    assert!(number(&report, "assign_per_s") < 260.0, "{report}");
    assert!(
        report["server_measured"]
            .as_str()
            .is_some_and(|text| text.contains(&std::process::id().to_string())),
        "the listening process (this test) was measured: {report}"
    );
    tokio::time::timeout(Duration::from_secs(15), server.shutdown())
        .await
        .expect("shutdown in time")
        .expect("clean shutdown");
}

#[tokio::test]
async fn refuses_a_non_loopback_address() {
    let output = bench(&["--addr", "192.0.2.1:50051", "--duration", "1"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not loopback"), "stderr: {stderr}");
    assert!(output.stdout.is_empty());
}
