//! The rule-based score of a (subtask, specialist) pair and how candidates are ranked.

use std::cmp::Ordering;

use super::policy::ScoringWeights;
use super::rules::{AVAILABILITY_FACTORS, LOAD_BANDS, LOAD_FACTOR_OVERLOADED};
use super::specialist::{matched_capabilities, Availability};

/// One factor: its value in 0..1, its weight, and value x weight x 100.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Factor {
    pub value: f64,
    pub weight: f64,
    pub points: f64,
}

impl Factor {
    fn new(value: f64, weight: f64) -> Self {
        Self {
            value,
            weight,
            points: 100.0 * value * weight,
        }
    }
}

/// The score of one candidate and the four factors that make it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreBreakdown {
    pub score: f64,
    pub capability: Factor,
    pub load: Factor,
    pub availability: Factor,
    pub performance: Factor,
}

/// Share of required capabilities the specialist has; 1.0 when nothing is required.
pub fn capability_factor(capabilities: &[String], required: &[String]) -> f64 {
    capability_share(matched_capabilities(capabilities, required), required.len())
}

/// `matched` of `required` capabilities as the capability factor; 1.0 when nothing is required.
pub fn capability_share(matched: usize, required: usize) -> f64 {
    if required == 0 {
        return 1.0;
    }
    matched as f64 / required as f64
}

/// Load bands by subtasks held (`rules::LOAD_BANDS`): idle, light, moderate, heavy, overloaded.
pub fn load_factor(active: u32) -> f64 {
    LOAD_BANDS
        .iter()
        .find(|(most, _)| active <= *most)
        .map_or(LOAD_FACTOR_OVERLOADED, |(_, factor)| *factor)
}

/// `rules::AVAILABILITY_FACTORS`; OFFLINE specialists are never candidates (factor 0).
pub fn availability_factor(availability: Availability) -> f64 {
    AVAILABILITY_FACTORS
        .iter()
        .find(|(known, _)| *known == availability)
        .map_or(0.0, |(_, factor)| *factor)
}

/// What the scorer needs to know about one candidate.
#[derive(Debug, Clone, Copy)]
pub struct CandidateFacts<'a> {
    pub capabilities: &'a [String],
    pub active: u32,
    pub availability: Availability,
    pub performance: f64,
}

pub fn score(
    weights: &ScoringWeights,
    required: &[String],
    facts: CandidateFacts<'_>,
) -> ScoreBreakdown {
    score_of_factors(
        weights,
        capability_factor(facts.capabilities, required),
        facts.active,
        facts.availability,
        facts.performance,
    )
}

/// The score from the capability factor and the other three inputs: what a store that kept only
/// a hand-out's inputs computes its breakdown from (bit for bit `score`).
pub fn score_of_factors(
    weights: &ScoringWeights,
    capability_value: f64,
    active: u32,
    availability: Availability,
    performance: f64,
) -> ScoreBreakdown {
    let capability = Factor::new(capability_value, weights.capability);
    let load = Factor::new(load_factor(active), weights.load);
    let availability = Factor::new(availability_factor(availability), weights.availability);
    let performance = Factor::new(performance.clamp(0.0, 1.0), weights.performance);
    ScoreBreakdown {
        score: capability.points + load.points + availability.points + performance.points,
        capability,
        load,
        availability,
        performance,
    }
}

/// The best score a specialist with this load, availability and performance could reach for any
/// subtask (capability at 1). Computed like `score`, so a real score never exceeds it, and equals it
/// when the specialist has every required capability.
pub fn score_upper_bound(
    weights: &ScoringWeights,
    active: u32,
    availability: Availability,
    performance: f64,
) -> f64 {
    score(
        weights,
        &[],
        CandidateFacts {
            capabilities: &[],
            active,
            availability,
            performance,
        },
    )
    .score
}

/// Sort key of a candidate: higher score, then fewer active, then assigned longest ago, then smaller id.
#[derive(Debug, Clone, Copy)]
pub struct Rank<'a> {
    pub score: f64,
    pub active: u32,
    pub last_assigned_seq: u64,
    pub specialist_id: &'a str,
}

impl Rank<'_> {
    /// `Ordering::Less` when `self` should win over `other`.
    pub fn better_than(&self, other: &Rank<'_>) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.active.cmp(&other.active))
            .then(self.last_assigned_seq.cmp(&other.last_assigned_seq))
            .then(self.specialist_id.cmp(other.specialist_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_online_newcomer_with_every_capability() {
        let caps = vec!["react".to_string()];
        let breakdown = score(
            &ScoringWeights::default(),
            &caps,
            CandidateFacts {
                capabilities: &caps,
                active: 0,
                availability: Availability::Online,
                performance: 0.75,
            },
        );
        assert!((breakdown.score - 97.5).abs() < 1e-9);
        assert!((breakdown.performance.points - 7.5).abs() < 1e-9);
    }

    #[test]
    fn load_bands() {
        let bands: Vec<f64> = [0, 1, 2, 3, 4, 5, 9, 10, 50].map(load_factor).to_vec();
        assert_eq!(bands, vec![1.0, 0.8, 0.8, 0.6, 0.6, 0.4, 0.4, 0.1, 0.1]);
    }

    #[test]
    fn rank_prefers_score_then_load_then_rotation() {
        let base = Rank {
            score: 90.0,
            active: 1,
            last_assigned_seq: 5,
            specialist_id: "b",
        };
        let higher = Rank {
            score: 91.0,
            ..base
        };
        let lighter = Rank { active: 0, ..base };
        let rested = Rank {
            last_assigned_seq: 1,
            ..base
        };
        let smaller_id = Rank {
            specialist_id: "a",
            ..base
        };
        assert_eq!(higher.better_than(&base), Ordering::Less);
        assert_eq!(lighter.better_than(&base), Ordering::Less);
        assert_eq!(rested.better_than(&base), Ordering::Less);
        assert_eq!(smaller_id.better_than(&base), Ordering::Less);
    }
}
