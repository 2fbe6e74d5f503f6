//! Memory under abuse: a server process (its RSS read from /proc) takes calls to thousands of
//! made-up methods with long names, Assigns from thousands of made-up callers (with ids over the
//! limit too), and far more WatchAssignments streams than it allows, and its memory stays bounded,
//! its /metrics stays small, and a legitimate agent is served throughout.

use std::time::Duration;

use futures::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};

use crate::support::*;

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

const UNKNOWN_METHODS: usize = 5_000;
const CALLERS: usize = 20_000;
const STREAMS: usize = 2_000;
/// What abuse may add to the server's resident memory.
const GROWTH_BOUND_MIB: f64 = 64.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_leaves_memory_bounded_and_the_agent_served() {
    // A lease that outlasts the run: the agent does not heartbeat here.
    let process = ServerProcess::spawn(&["--assign-rate-limit", "50", "--lease-ttl-ms", "600000"]);
    let pid = process.pid();
    let channel = channel(process.addr).await;
    let mut c = Clients::connect(process.addr).await;
    c.register("abuse-agent", "docs", &[]).await;
    let mut stream = c.watch("abuse-agent").await;
    let before = rss_mib(pid);

    // Made-up methods with 2 KB names: UNIMPLEMENTED, and one metric label for all of them.
    futures::stream::iter(0..UNKNOWN_METHODS)
        .for_each_concurrent(32, |n| {
            let channel = channel.clone();
            async move {
                let mut grpc = tonic::client::Grpc::new(channel);
                grpc.ready().await.expect("ready");
                let path = format!("/made.up.Service{n}/{}", "m".repeat(2048));
                let codec = tonic_prost::ProstCodec::<(), ()>::default();
                let answer = grpc
                    .unary(Request::new(()), path.parse().unwrap(), codec)
                    .await;
                assert_eq!(answer.unwrap_err().code(), Code::Unimplemented);
            }
        })
        .await;

    // Assigns from made-up callers: each has its own budget (bounded in number); ids over the
    // limit are refused before any budget is kept.
    futures::stream::iter(0..CALLERS)
        .for_each_concurrent(32, |n| {
            let mut c = c.clone();
            async move {
                let caller = if n % 2 == 0 {
                    format!("caller-{n:06}-{}", "x".repeat(100))
                } else {
                    "y".repeat(8 * 1024)
                };
                let mut request = Request::new(task(&format!("abuse-{n}"), "general", &["none"]));
                request
                    .metadata_mut()
                    .insert("x-caller-id", MetadataValue::try_from(caller).unwrap());
                let answer = c.assign.assign(request).await;
                if n % 2 == 1 {
                    assert_eq!(answer.unwrap_err().code(), Code::InvalidArgument);
                }
            }
        })
        .await;

    // Streams far over the bound: the extra ones are RESOURCE_EXHAUSTED at once.
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..STREAMS {
        match c
            .assign
            .watch_assignments(pb::WatchAssignmentsRequest {
                specialist_id: "abuse-agent".into(),
                incarnation: c.incarnations.get("abuse-agent"),
            })
            .await
        {
            Ok(stream) => open.push(stream),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                refused += 1;
            }
        }
    }
    assert!(refused >= STREAMS - 64, "{refused} of {STREAMS} refused");

    let after = rss_mib(pid);
    let (_, metrics) = http_get(process.metrics_addr.expect("metrics"), "/metrics").await;
    eprintln!(
        "abuse: RSS {before:.1} MiB before, {after:.1} MiB after {UNKNOWN_METHODS} made-up \
         methods, {CALLERS} made-up callers and {STREAMS} streams ({} kept open); /metrics {} KiB",
        open.len(),
        metrics.len() / 1024
    );
    assert!(
        after - before < GROWTH_BOUND_MIB,
        "RSS grew from {before:.1} to {after:.1} MiB"
    );
    assert!(
        metrics.len() < 512 * 1024,
        "/metrics is {} bytes",
        metrics.len()
    );

    // The legitimate agent was served all along.
    let assigned = c.assign_simple("abuse-real", "docs", &[]).await;
    assert_assigned_to(&assigned, "abuse-agent");
    let event = tokio::time::timeout(Duration::from_secs(10), next_event(&mut stream)).await;
    assert_eq!(
        event_assignment(&event.expect("the agent's stream delivers")).subtask_id,
        "abuse-real"
    );
}
