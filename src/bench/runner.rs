//! One run, phase by phase: connect (or start the embedded server); with `--backlog`, submit the
//! backlog while no agent is there; start the agents and time the drain; run the measured load;
//! wait for outstanding work to settle; stop the agents (they deregister); build the report.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::agents::{self, AgentSpec};
use super::callers::{self, Load, LoadOutcome, SubtaskShape};
use super::floor;
use super::process::{self, Probe, Subject};
use super::progress::Progress;
use super::report::{Latencies, Report};
use super::stats::{round3, Stats};
use super::target::{self, Target};
use super::tracker::{Phase, PhaseCounts, Tracker};
use super::RunContext;
use crate::config::BenchConfig;

/// Longest any one timed option may be, in seconds: every run ends within a few hours at most.
const MAX_SECONDS: f64 = 3_600.0;
/// How often a settle or drain condition is checked.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// Runs the benchmark `config` describes and returns its figures.
pub async fn run(config: BenchConfig) -> anyhow::Result<Report> {
    validate(&config)?;
    let run_id = new_run_id();
    let target = Target::open(config.addr.as_deref(), &config.embedded_flags).await?;
    if cfg!(debug_assertions) {
        warn!("this is a debug build: its figures say little about the product; build with --release (make bench, cargo run --release -- bench)");
    }
    info!(%run_id, addr = %target.addr(), server = %target.describe(), "bench starting");
    let result = drive(&config, &target, run_id).await;
    let closed = target.close().await;
    let report = result?;
    if let Err(error) = closed {
        warn!(%error, "embedded server did not shut down cleanly");
    }
    Ok(report)
}

fn validate(config: &BenchConfig) -> anyhow::Result<()> {
    let seconds = [
        ("--duration", config.duration),
        ("--drain-timeout", config.drain_timeout),
        ("--settle-timeout", config.settle_timeout),
    ];
    for (flag, value) in seconds {
        if !(value > 0.0 && value <= MAX_SECONDS) {
            bail!("{flag} must be above 0 and at most {MAX_SECONDS} seconds");
        }
    }
    if !(config.floor_secs >= 0.0 && config.floor_secs <= MAX_SECONDS) {
        bail!("--floor-secs must be 0 (not measured) or at most {MAX_SECONDS} seconds");
    }
    if !(config.rate >= 0.0 && config.rate.is_finite()) {
        bail!("--rate must be 0 (flat out) or a positive number of calls per second");
    }
    let at_least_one = [
        ("--agents", u64::from(config.agents)),
        ("--callers", u64::from(config.callers)),
        ("--connections", u64::from(config.connections)),
        ("--max-concurrency", u64::from(config.max_concurrency)),
        ("--subtasks", config.subtasks),
        ("--request-timeout-ms", config.request_timeout_ms),
    ];
    for (flag, value) in at_least_one {
        if value == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    if config.payload_bytes > 1024 * 1024 {
        bail!("--payload-bytes must be at most 1 MiB (the server's limit)");
    }
    Ok(())
}

/// Unique per run (time and pid), so runs against a shared server never collide.
fn new_run_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    format!("bench-{millis:x}-{}", std::process::id())
}

fn probe_for(config: &BenchConfig, target: &Target) -> Option<Arc<Probe>> {
    let subject = if target.is_embedded() {
        Subject::InProcess {
            thread_name: target::SERVER_THREAD_NAME,
        }
    } else {
        let pid = config
            .server_pid
            .or_else(|| process::find_listener(target.addr().port()));
        match pid {
            Some(pid) => Subject::Pid(pid),
            None => {
                warn!("server process not found; its CPU and RSS are not measured (--server-pid)");
                return None;
            }
        }
    };
    Some(Arc::new(Probe::new(subject)))
}

async fn drive(config: &BenchConfig, target: &Target, run_id: String) -> anyhow::Result<Report> {
    let channels = target::connect(target.addr(), config.connections).await?;
    let probe = probe_for(config, target);
    let process_cpu_start = process::own_process_cpu_seconds();
    let stats = Arc::new(Stats::default());
    let context = Arc::new(RunContext {
        run_id: run_id.clone(),
        stats: stats.clone(),
        tracker: Arc::new(Tracker::new(stats.clone())),
        timeout: Duration::from_millis(config.request_timeout_ms),
        agents_stop: CancellationToken::new(),
    });
    let progress = Progress::start(context.clone(), probe.clone(), config.quiet);
    // Only this run's agents have this capability, and every subtask requires it.
    let shape = Arc::new(SubtaskShape {
        specialist_type: config.specialist_type.clone(),
        required_capabilities: vec![run_id.clone()],
        payload: vec![b'x'; config.payload_bytes],
    });
    let spec = AgentSpec {
        specialist_type: config.specialist_type.clone(),
        capabilities: vec![run_id.clone()],
        max_concurrency: config.max_concurrency,
        think: Duration::from_millis(config.think_ms),
    };
    let drain_timeout = Duration::from_secs_f64(config.drain_timeout);

    if config.backlog > 0 {
        progress.phase("backlog");
        let load = Load {
            phase: Phase::Backlog,
            id_prefix: format!("{run_id}-b"),
            callers: config.callers,
            rate: 0.0,
            limit: config.backlog,
            deadline: Instant::now() + drain_timeout,
        };
        callers::run(context.clone(), &channels, shape.clone(), load).await;
    }

    progress.phase("agents");
    let agents_started = Instant::now();
    let fleet = tokio::time::timeout(
        drain_timeout,
        agents::start(context.clone(), &channels, config.agents, spec),
    )
    .await
    .context("starting the agents timed out (--drain-timeout)")??;

    let mut drain = Drain::default();
    if config.backlog > 0 {
        progress.phase("draining");
        let backlog = &context.tracker.backlog;
        let deadline = agents_started + drain_timeout;
        if wait_for(deadline, || {
            backlog.delivered.get() >= backlog.deliverable()
        })
        .await
        {
            drain.delivered = backlog.last_delivered().map(|at| at - agents_started);
        }
        if wait_for(deadline, || settled(backlog)).await {
            drain.completed = backlog.last_completed().map(|at| at - agents_started);
        } else {
            warn!("the backlog did not drain within --drain-timeout");
        }
    }

    progress.phase("measured");
    let load = Load {
        phase: Phase::Measured,
        id_prefix: format!("{run_id}-m"),
        callers: config.callers,
        rate: config.rate,
        limit: config.subtasks,
        deadline: Instant::now() + Duration::from_secs_f64(config.duration),
    };
    let outcome = callers::run(context.clone(), &channels, shape, load).await;

    progress.phase("settling");
    let settle_deadline = Instant::now() + Duration::from_secs_f64(config.settle_timeout);
    let measured = &context.tracker.measured;
    if !wait_for(settle_deadline, || settled(measured)).await {
        warn!("outstanding subtasks did not complete within --settle-timeout");
    }
    progress.phase("stopping");
    let stop_bound = context.timeout * 2 + Duration::from_secs(1);
    if tokio::time::timeout(stop_bound, fleet.stop(&context))
        .await
        .is_err()
    {
        warn!("stopping the agents took too long; some may still be registered");
    }
    progress.stop().await;

    let mut report = build_report(config, target, &context, &outcome, &drain);
    report.server_cpu_s = probe.as_ref().and_then(|p| p.cpu_seconds()).map(round3);
    report.server_rss_mb = probe.as_ref().and_then(|p| p.peak_rss_mb()).map(round3);
    report.server_measured = probe.as_ref().map_or_else(
        || "not measured (server process not found; --server-pid)".to_string(),
        |p| p.describe(),
    );
    report.process_cpu_s = process::own_process_cpu_seconds()
        .zip(process_cpu_start)
        .map(|(end, start)| round3(end - start));
    if config.floor_secs > 0.0 {
        progress_floor(config);
        let rate = floor::health_checks_per_s(
            &channels,
            config.callers,
            Duration::from_secs_f64(config.floor_secs),
            context.timeout,
        )
        .await;
        report.floor_health_per_s = Some(round3(rate));
    }
    Ok(report)
}

fn progress_floor(config: &BenchConfig) {
    if !config.quiet {
        eprintln!(
            "[floor] {} callers calling Health/Check flat out for {} s",
            config.callers, config.floor_secs
        );
    }
}

/// Every deliverable subtask of the phase completed.
fn settled(counts: &PhaseCounts) -> bool {
    counts.completed.get() >= counts.deliverable()
}

/// Polls `condition` until it holds (true) or `deadline` passes (false).
async fn wait_for(deadline: Instant, condition: impl Fn() -> bool) -> bool {
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Backlog drain figures, from the agents' start.
#[derive(Default)]
struct Drain {
    delivered: Option<Duration>,
    completed: Option<Duration>,
}

fn build_report(
    config: &BenchConfig,
    target: &Target,
    context: &RunContext,
    outcome: &LoadOutcome,
    drain: &Drain,
) -> Report {
    let stats = &context.stats;
    let tracker = &context.tracker;
    let measured = &tracker.measured;
    let phase_s = (outcome.finished - outcome.started).as_secs_f64();
    let per_s = |count: u64, seconds: f64| {
        if seconds > 0.0 {
            round3(count as f64 / seconds)
        } else {
            0.0
        }
    };
    let cycle_s = measured
        .last_completed()
        .map_or(0.0, |at| (at - outcome.started).as_secs_f64());
    let accepted = stats.accepted();
    let undeliverable = tracker.backlog.undeliverable.get() + measured.undeliverable.get();
    let completed = stats.completed.get();
    let backlog = tracker.backlog.deliverable();
    let ms = |duration: Duration| round3(duration.as_secs_f64() * 1_000.0);
    let mut report = Report {
        run_id: context.run_id.clone(),
        addr: target.addr().to_string(),
        server: target.describe(),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .to_string(),
        agents: config.agents,
        callers: config.callers,
        specialist_type: config.specialist_type.clone(),
        max_concurrency: config.max_concurrency,
        think_ms: config.think_ms,
        rate: config.rate,
        duration_s: round3(phase_s),
        subtasks: stats.sent.get(),
        accepted,
        assigned_at_once: stats.replied_assigned.get(),
        queued_at_once: stats.replied_queued.get(),
        completed,
        incomplete: accepted.saturating_sub(undeliverable + completed),
        errors: stats.errors.total(),
        errors_by_code: stats.errors.by_code(),
        assign_per_s: per_s(measured.accepted.get(), phase_s),
        cycle_per_s: per_s(measured.completed.get(), cycle_s),
        delivered_before_reply: stats.delivered_before_reply.get(),
        backlog: config.backlog,
        drain_ms: (config.backlog > 0)
            .then(|| drain.delivered.map(ms))
            .flatten(),
        backlog_complete_ms: (config.backlog > 0)
            .then(|| drain.completed.map(ms))
            .flatten(),
        drain_per_s: drain
            .delivered
            .map(|took| per_s(backlog, took.as_secs_f64())),
        revoked: stats.revoked.get(),
        foreign: stats.foreign.get(),
        reconnects: stats.reconnects.get(),
        ..Report::default()
    };
    report.set_latencies(&Latencies {
        assign: stats.assign.summary(),
        deliver: stats.deliver.summary(),
        queue_wait: stats.queue_wait.summary(),
        cycle: stats.cycle.summary(),
        report: stats.report.summary(),
    });
    report
}
