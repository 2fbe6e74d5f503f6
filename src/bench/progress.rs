//! Progress on stderr while a run goes: one line a second with the last second's rates and the
//! totals so far. Each tick also samples the server's RSS so the report has its peak.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::process::Probe;
use super::RunContext;

/// The printer; `stop` ends it.
pub struct Progress {
    phase: Arc<Mutex<&'static str>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Progress {
    /// Starts ticking; prints nothing when `quiet` (but still samples the server).
    pub fn start(context: Arc<RunContext>, probe: Option<Arc<Probe>>, quiet: bool) -> Self {
        let phase = Arc::new(Mutex::new("starting"));
        let stop = CancellationToken::new();
        let task = tokio::spawn(tick(context, probe, quiet, phase.clone(), stop.clone()));
        Self { phase, stop, task }
    }

    /// Names the phase the next lines report.
    pub fn phase(&self, name: &'static str) {
        *self.phase.lock() = name;
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Progress {
    /// A run that ends early (an error) stops the printer too.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn tick(
    context: Arc<RunContext>,
    probe: Option<Arc<Probe>>,
    quiet: bool,
    phase: Arc<Mutex<&'static str>>,
    stop: CancellationToken,
) {
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let stats = &context.stats;
    let (mut accepted, mut completed) = (stats.accepted(), stats.completed.get());
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Some(probe) = &probe {
            probe.sample();
        }
        if quiet {
            continue;
        }
        let (now_accepted, now_completed) = (stats.accepted(), stats.completed.get());
        let name = *phase.lock();
        eprintln!(
            "[{:>4}s] {name:<9} assign {:>7}/s  cycles {:>7}/s  accepted {:>8}  completed {:>8}  \
             outstanding {:>6}  errors {}",
            started.elapsed().as_secs(),
            now_accepted - accepted,
            now_completed - completed,
            now_accepted,
            now_completed,
            context.tracker.outstanding(),
            stats.errors.total(),
        );
        (accepted, completed) = (now_accepted, now_completed);
    }
}
