//! What a run measures: HDR latency histograms (microseconds), event counters, errors by gRPC code.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;
use tonic::Code;

/// Largest latency a histogram holds (longer ones are recorded as this): 10 minutes.
const MAX_MICROS: u64 = 600_000_000;

/// One latency distribution, shared by the tasks that record into it.
pub struct Latency {
    histogram: Mutex<Histogram<u64>>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        // Constant bounds (1 us .. 10 min, 3 significant figures) that hdrhistogram always accepts.
        let histogram =
            Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant histogram bounds");
        Self {
            histogram: Mutex::new(histogram),
        }
    }

    pub fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(MAX_MICROS);
        self.histogram.lock().saturating_record(micros.max(1));
    }

    /// Records a zero-length interval (the smallest value the histogram holds: 1 us).
    pub fn record_zero(&self) {
        self.histogram.lock().saturating_record(1);
    }

    pub fn count(&self) -> u64 {
        self.histogram.lock().len()
    }

    pub fn summary(&self) -> Summary {
        let histogram = self.histogram.lock();
        if histogram.is_empty() {
            return Summary::default();
        }
        let ms = |micros: u64| round3(micros as f64 / 1_000.0);
        Summary {
            count: histogram.len(),
            mean_ms: round3(histogram.mean() / 1_000.0),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// Rounds to microsecond precision when shown in milliseconds.
pub fn round3(value: f64) -> f64 {
    (value * 1_000.0).round() / 1_000.0
}

/// Percentiles of one distribution, in milliseconds; all zero when nothing was recorded.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// Failed calls by `Method/Code`, e.g. `Assign/ResourceExhausted`.
#[derive(Default)]
pub struct Errors {
    by_code: Mutex<BTreeMap<String, u64>>,
    total: AtomicU64,
}

impl Errors {
    pub fn record(&self, method: &str, code: Code) {
        self.total.fetch_add(1, Ordering::Relaxed);
        *self
            .by_code
            .lock()
            .entry(format!("{method}/{code:?}"))
            .or_default() += 1;
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn by_code(&self) -> BTreeMap<String, u64> {
        self.by_code.lock().clone()
    }
}

/// A monotonically increasing count.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, amount: u64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn incr(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Everything one run records, shared by callers, agents and the progress printer.
#[derive(Default)]
pub struct Stats {
    /// Assign call latency (request sent -> reply received), measured phase.
    pub assign: Latency,
    /// Assign reply (ASSIGNED) -> the stream message for it; 0 when the message came first.
    pub deliver: Latency,
    /// Assign reply (QUEUED) -> the stream message for it: time spent in the queue.
    pub queue_wait: Latency,
    /// Assign sent -> ReportCompletion acknowledged (capacity freed), measured phase.
    pub cycle: Latency,
    /// ReportCompletion call latency.
    pub report: Latency,
    /// Assign calls sent, both phases.
    pub sent: Counter,
    /// Assign replies ASSIGNED at once.
    pub replied_assigned: Counter,
    /// Assign replies QUEUED.
    pub replied_queued: Counter,
    /// Assign replies in another state (BLOCKED, FAILED, or an earlier run's finished subtask).
    pub replied_other: Counter,
    /// ASSIGNED stream messages for this run's subtasks (first delivery of each assignment).
    pub delivered: Counter,
    /// Deliveries that arrived before the Assign reply did.
    pub delivered_before_reply: Counter,
    /// Completions acknowledged by the server.
    pub completed: Counter,
    /// REVOKED stream messages.
    pub revoked: Counter,
    /// Assignments of subtasks this run did not submit (released back at once).
    pub foreign: Counter,
    /// Watch streams reopened after they ended or failed.
    pub reconnects: Counter,
    pub errors: Errors,
}

impl Stats {
    /// Assign calls the server accepted.
    pub fn accepted(&self) -> u64 {
        self.replied_assigned.get() + self.replied_queued.get() + self.replied_other.get()
    }
}
