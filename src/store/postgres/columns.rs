//! Domain values as column values: times as timestamptz, score breakdowns as jsonb, unsigned
//! counters as Postgres integers (refused, naming the event, when they do not fit).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::error::PgError;
use crate::domain::scoring::{Factor, ScoreBreakdown};

/// `{"score", "capability": {"value", "weight", "points"}, "load": .., "availability": .., "performance": ..}`
pub fn breakdown_json(breakdown: &ScoreBreakdown) -> Value {
    let factor = |factor: &Factor| json!({"value": factor.value, "weight": factor.weight, "points": factor.points});
    json!({
        "score": breakdown.score,
        "capability": factor(&breakdown.capability),
        "load": factor(&breakdown.load),
        "availability": factor(&breakdown.availability),
        "performance": factor(&breakdown.performance),
    })
}

/// A store time (Unix milliseconds) as a timestamptz value.
pub fn timestamp(at_ms: i64) -> SystemTime {
    let offset = Duration::from_millis(at_ms.unsigned_abs());
    if at_ms >= 0 {
        UNIX_EPOCH + offset
    } else {
        UNIX_EPOCH - offset
    }
}

pub(super) fn to_i32(event_id: &str, field: &str, value: u32) -> Result<i32, PgError> {
    i32::try_from(value)
        .map_err(|_| PgError::invalid_event(event_id, format!("{field} {value} out of range")))
}

pub(super) fn to_i64(event_id: &str, field: &str, value: u64) -> Result<i64, PgError> {
    i64::try_from(value)
        .map_err(|_| PgError::invalid_event(event_id, format!("{field} {value} out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_milliseconds_on_both_sides_of_the_epoch() {
        let after = timestamp(1_700_000_000_123);
        let since = after.duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(since.as_millis(), 1_700_000_000_123);
        let before = timestamp(-1_500);
        assert_eq!(
            UNIX_EPOCH.duration_since(before).unwrap(),
            Duration::from_millis(1_500)
        );
    }

    #[test]
    fn breakdown_names_every_factor() {
        let factor = Factor {
            value: 0.5,
            weight: 0.2,
            points: 10.0,
        };
        let breakdown = ScoreBreakdown {
            score: 40.0,
            capability: factor,
            load: factor,
            availability: factor,
            performance: factor,
        };
        let value = breakdown_json(&breakdown);
        assert_eq!(value["score"], 40.0);
        for name in ["capability", "load", "availability", "performance"] {
            assert_eq!(value[name]["value"], 0.5);
            assert_eq!(value[name]["weight"], 0.2);
            assert_eq!(value[name]["points"], 10.0);
        }
    }

    #[test]
    fn counters_that_do_not_fit_are_refused() {
        assert_eq!(to_i64("t/1-0", "epoch", 7).unwrap(), 7);
        let error = to_i64("t/1-0", "epoch", u64::MAX).unwrap_err();
        assert!(error.to_string().contains("epoch"), "{error}");
        assert!(to_i32("t/1-0", "attempt", u32::MAX).is_err());
    }
}
