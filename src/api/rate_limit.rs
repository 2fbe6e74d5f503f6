//! Per-caller token buckets for Assign: `limit` calls per minute, bursting up to `limit`. At most
//! MAX_CALLERS buckets are kept: idle ones are forgotten (at most once a second, so a flood of new
//! callers costs no full scan per call), and when that many callers are active at once, any further
//! new caller shares one overflow bucket until some go idle.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Buckets idle this long are full again and are forgotten.
const IDLE_BUCKET_TTL: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refreshed: Instant,
}

/// Most callers with a bucket of their own.
const MAX_CALLERS: usize = 100_000;
/// The bucket new callers share while MAX_CALLERS are active.
const OVERFLOW: &str = "overflow";

struct Buckets {
    by_caller: HashMap<String, Bucket>,
    pruned: Instant,
}

pub struct RateLimiter {
    per_minute: u32,
    max_callers: usize,
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    /// `per_minute == 0` turns the limit off.
    pub fn new(per_minute: u32) -> Self {
        Self::with_max_callers(per_minute, MAX_CALLERS)
    }

    fn with_max_callers(per_minute: u32, max_callers: usize) -> Self {
        Self {
            per_minute,
            max_callers,
            buckets: Mutex::new(Buckets {
                by_caller: HashMap::new(),
                pruned: Instant::now(),
            }),
        }
    }

    /// Callers with a bucket of their own now.
    pub fn callers(&self) -> usize {
        self.buckets.lock().by_caller.len()
    }

    /// Takes one token for `caller`; Err carries how long until the next one.
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let buckets = &mut *buckets;
        let full = buckets.by_caller.len() >= self.max_callers;
        if full && now.duration_since(buckets.pruned) >= Duration::from_secs(1) {
            buckets
                .by_caller
                .retain(|_, bucket| now.duration_since(bucket.refreshed) < IDLE_BUCKET_TTL);
            buckets.pruned = now;
        }
        let key = if buckets.by_caller.contains_key(caller)
            || buckets.by_caller.len() < self.max_callers.saturating_sub(1)
        {
            caller
        } else {
            OVERFLOW
        };
        let bucket = buckets.by_caller.entry(key.to_string()).or_insert(Bucket {
            tokens: capacity,
            refreshed: now,
        });
        let elapsed = now.duration_since(bucket.refreshed).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.refreshed = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_per_caller() {
        let limiter = RateLimiter::new(3);
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        let wait = limiter.check("a").unwrap_err();
        assert!(wait > Duration::from_secs(10) && wait <= Duration::from_secs(20));
        assert!(limiter.check("b").is_ok());
    }

    #[test]
    fn a_flood_of_new_callers_shares_one_bucket_past_the_bound() {
        let limiter = RateLimiter::with_max_callers(2, 10);
        let mut refused = 0;
        for n in 0..1000 {
            if limiter.check(&format!("caller-{n}")).is_err() {
                refused += 1;
            }
        }
        assert!(limiter.callers() <= 10, "{} buckets", limiter.callers());
        // Nine callers had a bucket of their own (2 calls each allowed); the rest shared one.
        assert_eq!(refused, 1000 - 9 - 2);
        // A caller with a bucket of its own keeps it.
        assert!(limiter.check("caller-0").is_ok());
    }

    #[test]
    fn zero_is_off() {
        let limiter = RateLimiter::new(0);
        assert!((0..1000).all(|_| limiter.check("a").is_ok()));
    }
}
