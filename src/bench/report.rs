//! The result of a run: one flat record, printed as a table or as one JSON object (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::stats::Summary;

/// Every figure of one run. Latencies are in milliseconds; rates per second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub run_id: String,
    /// gRPC address driven.
    pub addr: String,
    /// "in-process server, <its store>" or "external server".
    pub server: String,
    /// "release" or "debug": a debug build's figures say little about the product.
    pub build: String,
    pub agents: u32,
    pub callers: u32,
    pub specialist_type: String,
    pub max_concurrency: u32,
    pub think_ms: u64,
    /// Offered Assign rate; 0 = flat out.
    pub rate: f64,
    /// Length of the measured phase: first call to last reply.
    pub duration_s: f64,
    /// Assign calls made, backlog included.
    pub subtasks: u64,
    /// Assign calls the server accepted (the rest are errors).
    pub accepted: u64,
    /// Accepted replies that were ASSIGNED at once / QUEUED.
    pub assigned_at_once: u64,
    pub queued_at_once: u64,
    /// Completions the server acknowledged; incomplete = accepted - completed.
    pub completed: u64,
    pub incomplete: u64,
    /// Failed calls of every method; errors_by_code splits them by `Method/Code`.
    pub errors: u64,
    pub errors_by_code: BTreeMap<String, u64>,
    pub assign_per_s: f64,
    /// Full cycles (Assign -> delivered -> ReportCompletion acknowledged) per second.
    pub cycle_per_s: f64,
    pub assign_mean_ms: f64,
    pub assign_p50_ms: f64,
    pub assign_p90_ms: f64,
    pub assign_p99_ms: f64,
    pub assign_p999_ms: f64,
    pub assign_max_ms: f64,
    /// Assign reply (ASSIGNED) -> stream message.
    pub deliver_p50_ms: f64,
    pub deliver_p90_ms: f64,
    pub deliver_p99_ms: f64,
    pub deliver_p999_ms: f64,
    pub deliver_max_ms: f64,
    /// Stream message before the Assign reply (recorded as 0 in the delivery latency).
    pub delivered_before_reply: u64,
    /// Assign reply (QUEUED) -> stream message.
    pub queue_wait_p50_ms: f64,
    pub queue_wait_p99_ms: f64,
    /// Assign sent -> completion acknowledged (think time included).
    pub cycle_p50_ms: f64,
    pub cycle_p99_ms: f64,
    pub report_p50_ms: f64,
    pub report_p99_ms: f64,
    /// Backlog submitted before the agents started (0 = none).
    pub backlog: u64,
    /// Agents started -> every backlog subtask delivered; null without a backlog.
    pub drain_ms: Option<f64>,
    /// Agents started -> every backlog subtask completed; null without a backlog.
    pub backlog_complete_ms: Option<f64>,
    /// Backlog subtasks delivered per second while draining.
    pub drain_per_s: Option<f64>,
    /// Server CPU seconds over the run; null when not measurable.
    pub server_cpu_s: Option<f64>,
    /// Highest server RSS seen during the run, MiB.
    pub server_rss_mb: Option<f64>,
    /// What server_cpu_s and server_rss_mb describe.
    pub server_measured: String,
    /// CPU seconds of this process (the load generator, plus the server when embedded).
    pub process_cpu_s: Option<f64>,
    /// Health checks per second, flat out, same callers and connections (--floor-secs); null when
    /// not measured. No store is involved: this bounds what Assign can reach here.
    pub floor_health_per_s: Option<f64>,
    pub revoked: u64,
    pub foreign: u64,
    pub reconnects: u64,
}

/// Latency fields of the report from the histograms' summaries.
pub struct Latencies {
    pub assign: Summary,
    pub deliver: Summary,
    pub queue_wait: Summary,
    pub cycle: Summary,
    pub report: Summary,
}

impl Report {
    pub fn set_latencies(&mut self, latencies: &Latencies) {
        let Latencies {
            assign,
            deliver,
            queue_wait,
            cycle,
            report,
        } = latencies;
        self.assign_mean_ms = assign.mean_ms;
        self.assign_p50_ms = assign.p50_ms;
        self.assign_p90_ms = assign.p90_ms;
        self.assign_p99_ms = assign.p99_ms;
        self.assign_p999_ms = assign.p999_ms;
        self.assign_max_ms = assign.max_ms;
        self.deliver_p50_ms = deliver.p50_ms;
        self.deliver_p90_ms = deliver.p90_ms;
        self.deliver_p99_ms = deliver.p99_ms;
        self.deliver_p999_ms = deliver.p999_ms;
        self.deliver_max_ms = deliver.max_ms;
        self.queue_wait_p50_ms = queue_wait.p50_ms;
        self.queue_wait_p99_ms = queue_wait.p99_ms;
        self.cycle_p50_ms = cycle.p50_ms;
        self.cycle_p99_ms = cycle.p99_ms;
        self.report_p50_ms = report.p50_ms;
        self.report_p99_ms = report.p99_ms;
    }

    pub fn to_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    /// The human-readable table.
    pub fn to_table(&self) -> String {
        let rate = if self.rate > 0.0 {
            format!("{} /s offered", self.rate)
        } else {
            "flat out".to_string()
        };
        let opt = |value: Option<f64>, unit: &str| {
            value.map_or_else(|| "-".to_string(), |v| format!("{v:.2} {unit}"))
        };
        let pct = |p50: f64, p90: f64, p99: f64, p999: f64, max: f64| {
            if max == 0.0 {
                return "none recorded".to_string();
            }
            format!("p50 {p50:.3}  p90 {p90:.3}  p99 {p99:.3}  p99.9 {p999:.3}  max {max:.3} ms")
        };
        let short = |p50: f64, p99: f64| {
            if p99 == 0.0 {
                return "none recorded".to_string();
            }
            format!("p50 {p50:.3}  p99 {p99:.3} ms")
        };
        let rows: Vec<(&str, String)> = vec![
            (
                "run",
                format!(
                    "{} on {} ({}; {} build)",
                    self.run_id, self.addr, self.server, self.build
                ),
            ),
            (
                "load",
                format!(
                    "{} agents ({}, max_concurrency {}, think {} ms), {} callers, {rate}",
                    self.agents,
                    self.specialist_type,
                    self.max_concurrency,
                    self.think_ms,
                    self.callers
                ),
            ),
            (
                "subtasks",
                format!(
                    "{} sent, {} accepted ({} assigned at once, {} queued), {} completed, {} incomplete",
                    self.subtasks,
                    self.accepted,
                    self.assigned_at_once,
                    self.queued_at_once,
                    self.completed,
                    self.incomplete
                ),
            ),
            ("measured phase", format!("{:.2} s", self.duration_s)),
            ("Assign throughput", format!("{:.0} /s", self.assign_per_s)),
            ("full cycle throughput", format!("{:.0} /s", self.cycle_per_s)),
            (
                "Assign latency",
                pct(
                    self.assign_p50_ms,
                    self.assign_p90_ms,
                    self.assign_p99_ms,
                    self.assign_p999_ms,
                    self.assign_max_ms,
                ),
            ),
            (
                "delivery latency",
                pct(
                    self.deliver_p50_ms,
                    self.deliver_p90_ms,
                    self.deliver_p99_ms,
                    self.deliver_p999_ms,
                    self.deliver_max_ms,
                ),
            ),
            (
                "delivered before reply",
                format!("{} (counted as 0 ms)", self.delivered_before_reply),
            ),
            (
                "queue wait (QUEUED)",
                short(self.queue_wait_p50_ms, self.queue_wait_p99_ms),
            ),
            (
                "cycle latency",
                short(self.cycle_p50_ms, self.cycle_p99_ms),
            ),
            (
                "ReportCompletion",
                short(self.report_p50_ms, self.report_p99_ms),
            ),
            (
                "backlog drain",
                match self.drain_ms {
                    None => "no backlog".to_string(),
                    Some(_) => format!(
                        "{} subtasks: delivered in {}, completed in {} ({})",
                        self.backlog,
                        opt(self.drain_ms, "ms"),
                        opt(self.backlog_complete_ms, "ms"),
                        opt(self.drain_per_s, "/s")
                    ),
                },
            ),
            ("server CPU", opt(self.server_cpu_s, "s")),
            ("server peak RSS", opt(self.server_rss_mb, "MiB")),
            ("measured", self.server_measured.clone()),
            ("this process CPU", opt(self.process_cpu_s, "s")),
            (
                "transport floor",
                self.floor_health_per_s.map_or_else(
                    || "not measured (--floor-secs)".to_string(),
                    |rate| format!("{rate:.0} Health/Check /s, flat out, same callers"),
                ),
            ),
            (
                "errors",
                if self.errors_by_code.is_empty() {
                    "0".to_string()
                } else {
                    let parts: Vec<String> = self
                        .errors_by_code
                        .iter()
                        .map(|(key, count)| format!("{key} {count}"))
                        .collect();
                    format!("{} ({})", self.errors, parts.join(", "))
                },
            ),
            (
                "stream",
                format!(
                    "{} revoked, {} foreign released, {} reconnects",
                    self.revoked, self.foreign, self.reconnects
                ),
            ),
        ];
        let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (name, value) in rows {
            let _ = writeln!(out, "{name:<width$}  {value}");
        }
        out
    }
}
