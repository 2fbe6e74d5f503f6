//! `switchboard bench`: a load generator that drives a server over real gRPC on loopback.
//!
//! - `runner.rs`   the phases of a run (backlog, agents, measured load, settle) and the report
//! - `target.rs`   the server under load: `--addr` (loopback only) or one started in this process
//! - `agents.rs`   N specialists, each with a WatchAssignments stream, heartbeats and completions
//! - `callers.rs`  M concurrent Assign callers at a fixed total rate or flat out
//! - `tracker.rs`  each subtask from Assign to completion; matches replies with deliveries
//! - `stats.rs`    HDR latency histograms, counters, errors by gRPC code
//! - `progress.rs` one line a second on stderr while it runs
//! - `process.rs`  server CPU seconds and RSS from /proc
//! - `report.rs`   the table and the `--json` object

pub mod agents;
pub mod callers;
pub mod floor;
pub mod process;
pub mod progress;
pub mod report;
pub mod runner;
pub mod stats;
pub mod target;
pub mod tracker;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::BenchConfig;

pub use report::Report;
pub use runner::run;

/// What callers, agents and the progress printer of one run share.
pub struct RunContext {
    /// Prefix of every id this run makes (subtasks, agents, callers, the agents' capability).
    pub run_id: String,
    pub stats: Arc<stats::Stats>,
    pub tracker: Arc<tracker::Tracker>,
    /// Client deadline of every unary call.
    pub timeout: Duration,
    /// Cancelled when the agents are to stop.
    pub agents_stop: CancellationToken,
}

/// Runs the benchmark and prints the report on stdout: a table, or one JSON object with `--json`.
pub async fn main(config: BenchConfig) -> anyhow::Result<()> {
    let json = config.json;
    let report = run(config).await?;
    if report
        .errors_by_code
        .contains_key("Assign/ResourceExhausted")
    {
        warn!(
            "Assign calls were rate limited: start the server with --assign-rate-limit 0 \
             (each bench caller has its own x-caller-id)"
        );
    }
    if json {
        println!("{}", report.to_json()?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}
