//! A specialist's outcome history and the performance factor derived from it.

use std::collections::VecDeque;

pub use super::rules::{PERFORMANCE_PRIOR, PERFORMANCE_WINDOW};
use super::rules::{PRIOR_SUCCESSES, PRIOR_WEIGHT};

/// Everything reported about one specialist, kept across re-registrations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerformanceRecord {
    pub completed: u64,
    pub succeeded: u64,
    pub quality_sum: f64,
    pub completion_time_ms_sum: f64,
    /// Most recent outcome last; at most PERFORMANCE_WINDOW long.
    pub recent: VecDeque<bool>,
}

impl PerformanceRecord {
    pub fn record(&mut self, success: bool, quality: f64, completion_time_ms: u64) {
        self.completed += 1;
        if success {
            self.succeeded += 1;
        }
        self.quality_sum += quality;
        self.completion_time_ms_sum += completion_time_ms as f64;
        self.recent.push_back(success);
        while self.recent.len() > PERFORMANCE_WINDOW {
            self.recent.pop_front();
        }
    }

    /// (recent successes + prior successes) / (recent outcomes + prior weight).
    pub fn performance_factor(&self) -> f64 {
        let successes = self.recent.iter().filter(|success| **success).count();
        window_performance(successes as u32, self.recent.len() as u32)
    }

    pub fn summary(&self) -> PerformanceSummary {
        let completed = self.completed as f64;
        let mean = |sum: f64| {
            if self.completed == 0 {
                0.0
            } else {
                sum / completed
            }
        };
        PerformanceSummary {
            completed: self.completed,
            succeeded: self.succeeded,
            success_rate: mean(self.succeeded as f64),
            mean_quality: mean(self.quality_sum),
            mean_completion_time_ms: mean(self.completion_time_ms_sum),
            performance: self.performance_factor(),
            recent_outcomes: self.recent.len() as u32,
        }
    }
}

/// The rule-based performance factor of a window with `successes` among `outcomes`.
pub fn window_performance(successes: u32, outcomes: u32) -> f64 {
    (f64::from(successes) + PRIOR_SUCCESSES) / (f64::from(outcomes) + PRIOR_WEIGHT)
}

/// What GetPerformance reports.
#[derive(Debug, Clone, PartialEq)]
pub struct PerformanceSummary {
    pub completed: u64,
    pub succeeded: u64,
    pub success_rate: f64,
    pub mean_quality: f64,
    pub mean_completion_time_ms: f64,
    pub performance: f64,
    pub recent_outcomes: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newcomer_gets_the_prior() {
        assert_eq!(
            PerformanceRecord::default().performance_factor(),
            PERFORMANCE_PRIOR
        );
    }

    #[test]
    fn window_forgets_old_outcomes() {
        let mut record = PerformanceRecord::default();
        for _ in 0..PERFORMANCE_WINDOW {
            record.record(false, 0.0, 10);
        }
        for _ in 0..PERFORMANCE_WINDOW {
            record.record(true, 1.0, 10);
        }
        let expected = (20.0 + 1.5) / 22.0;
        assert!((record.performance_factor() - expected).abs() < 1e-12);
        assert_eq!(record.summary().success_rate, 0.5);
    }
}
