//! Learned performance factors: what a trained model says about each candidate of one subtask,
//! handed to the store so that its atomic pick uses them instead of the rule-based window.

use std::collections::HashMap;

use super::policy::ScoringWeights;
use super::specialist::Availability;

/// Per-candidate performance factors for one subtask and the weight they get in the score.
///
/// The other three weights are scaled so that all four still add up to 1: capability, load and
/// availability keep their proportions, so live load still counts.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedFactors {
    /// Weight of the performance factor in 0..=1.
    pub performance_weight: f64,
    /// Specialist id -> performance factor in 0..1. A specialist missing here (it was not a
    /// candidate when the factors were computed) gets its rule-based factor.
    pub performance: HashMap<String, f64>,
}

impl LearnedFactors {
    /// The weights to score with: `performance_weight` for performance, the rest of `base` scaled.
    pub fn weights(&self, base: &ScoringWeights) -> ScoringWeights {
        let performance_weight = self.performance_weight.clamp(0.0, 1.0);
        let others = base.capability + base.load + base.availability;
        if others <= 0.0 {
            return ScoringWeights {
                capability: 0.0,
                load: 0.0,
                availability: 0.0,
                performance: 1.0,
            };
        }
        let scale = (1.0 - performance_weight) / others;
        ScoringWeights {
            capability: base.capability * scale,
            load: base.load * scale,
            availability: base.availability * scale,
            performance: performance_weight,
        }
    }

    /// The learned factor of a specialist, or `rule_factor` when it has none.
    pub fn performance_of(&self, specialist_id: &str, rule_factor: f64) -> f64 {
        self.performance
            .get(specialist_id)
            .copied()
            .unwrap_or(rule_factor)
            .clamp(0.0, 1.0)
    }
}

/// A specialist eligible for a subtask right now, with what a learned scorer needs to know of it.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateInfo {
    pub specialist_id: String,
    pub specialist_type: String,
    /// Sorted.
    pub capabilities: Vec<String>,
    pub active: u32,
    pub max_concurrency: u32,
    pub availability: Availability,
    /// Successes among its last `recent_outcomes` reported outcomes.
    pub recent_successes: u32,
    pub recent_outcomes: u32,
    /// Its rule-based performance factor.
    pub rule_performance: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_keep_the_other_proportions_and_add_up_to_one() {
        let factors = LearnedFactors {
            performance_weight: 0.5,
            performance: HashMap::new(),
        };
        let weights = factors.weights(&ScoringWeights::default());
        assert!(weights.validate().is_ok());
        assert!((weights.capability / weights.load - 0.4 / 0.3).abs() < 1e-9);
        assert_eq!(weights.performance, 0.5);
    }

    #[test]
    fn missing_specialist_gets_its_rule_factor() {
        let factors = LearnedFactors {
            performance_weight: 0.5,
            performance: HashMap::from([("a".to_string(), 0.9)]),
        };
        assert_eq!(factors.performance_of("a", 0.2), 0.9);
        assert_eq!(factors.performance_of("b", 0.2), 0.2);
    }
}
