//! A circuit breaker per backing store: after `threshold` consecutive failures it opens for
//! `open_for`, and calls fail fast with a clear message instead of waiting on a dead server. The
//! first call after that is a trial: success closes it, failure opens it again.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub threshold: u32,
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Default)]
struct BreakerState {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    name: &'static str,
    config: BreakerConfig,
    state: Mutex<BreakerState>,
}

impl CircuitBreaker {
    pub fn new(name: &'static str, config: BreakerConfig) -> Self {
        Self {
            name,
            config,
            state: Mutex::new(BreakerState::default()),
        }
    }

    /// Err with the reason while the breaker is open; Ok lets the call (or the trial call) through.
    pub fn check(&self) -> Result<(), String> {
        let mut state = self.state.lock();
        match state.open_until {
            Some(until) if Instant::now() < until => Err(format!(
                "{} circuit breaker open after {} consecutive failures; retrying in {} ms",
                self.name,
                state.consecutive_failures,
                until.saturating_duration_since(Instant::now()).as_millis()
            )),
            Some(_) => {
                // Half-open: let this call try; one more failure reopens at once.
                state.open_until = None;
                state.consecutive_failures = self.config.threshold.saturating_sub(1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    pub fn record_success(&self) {
        let mut state = self.state.lock();
        state.consecutive_failures = 0;
        state.open_until = None;
    }

    pub fn record_failure(&self) {
        let mut state = self.state.lock();
        state.consecutive_failures += 1;
        if state.consecutive_failures >= self.config.threshold {
            state.open_until = Some(Instant::now() + self.config.open_for);
        }
    }

    pub fn is_open(&self) -> bool {
        self.state
            .lock()
            .open_until
            .is_some_and(|until| Instant::now() < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_half_opens_after_the_wait() {
        let breaker = CircuitBreaker::new(
            "redis",
            BreakerConfig {
                threshold: 3,
                open_for: Duration::from_millis(20),
            },
        );
        for _ in 0..2 {
            breaker.record_failure();
        }
        assert!(breaker.check().is_ok());
        breaker.record_failure();
        let refused = breaker.check().unwrap_err();
        assert!(refused.contains("redis circuit breaker open"), "{refused}");
        let reopened_at = Instant::now() + Duration::from_millis(25);
        while Instant::now() < reopened_at {
            std::hint::spin_loop();
        }
        assert!(breaker.check().is_ok(), "half-open lets a trial through");
        breaker.record_failure();
        assert!(breaker.check().is_err(), "a failed trial reopens at once");
    }

    #[test]
    fn success_closes() {
        let breaker = CircuitBreaker::new("postgres", BreakerConfig::default());
        for _ in 0..4 {
            breaker.record_failure();
        }
        breaker.record_success();
        breaker.record_failure();
        assert!(breaker.check().is_ok());
    }
}
