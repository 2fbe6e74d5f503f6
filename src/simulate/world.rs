//! The synthetic world: specialists with hidden per-capability skill and speed, a seeded stream of
//! subtasks, and outcomes drawn from the hidden skill. Every draw is a hash of the seed and what it
//! is about, so every policy sees the same stream and the same specialist doing the same subtask
//! has the same outcome under every policy.

use crate::learned_scorer::features::SubtaskContext;

/// The scenario knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub seed: u64,
    pub subtasks: usize,
    pub specialists: usize,
    pub capabilities: usize,
    pub capabilities_per_specialist: usize,
    /// Width of the skill range around 0.5: 0 makes everyone equal, 0.9 spreads 0.05..0.95.
    pub skill_spread: f64,
    /// Offered load as a share of the fleet's capacity (slots x 1/mean duration).
    pub load: f64,
    pub max_concurrency: u32,
    pub mean_duration_ms: f64,
    /// Subtask index at which skills drift (0: never).
    pub drift_at: usize,
    /// Share of specialists whose skills are redrawn at the drift.
    pub drift_share: f64,
}

/// A deterministic uniform draw in [0, 1) from the seed and a few identifying numbers.
pub fn uniform(seed: u64, parts: &[u64]) -> f64 {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    for part in parts {
        state ^= part.wrapping_add(0x9E37_79B9_7F4A_7C15);
        // splitmix64 finaliser
        state = (state ^ (state >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        state = (state ^ (state >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        state ^= state >> 31;
    }
    (state >> 11) as f64 / (1u64 << 53) as f64
}

// Draw purposes, so that draws for different things never coincide.
const CAPABILITY_PICK: u64 = 1;
const SKILL: u64 = 2;
const SPEED: u64 = 3;
const ARRIVAL: u64 = 4;
const REQUIREMENT: u64 = 5;
const OUTCOME: u64 = 6;
const DURATION: u64 = 7;
const QUALITY: u64 = 8;
const DRIFT: u64 = 9;
const PRIORITY: u64 = 10;

#[derive(Debug, Clone)]
pub struct SimSpecialist {
    pub specialist_id: String,
    /// Capability indexes, sorted.
    pub capabilities: Vec<usize>,
    /// Success probability per capability index (0 where it lacks it), before and after drift.
    pub skill: Vec<f64>,
    pub drifted_skill: Vec<f64>,
    /// Duration multiplier.
    pub slowness: f64,
}

impl SimSpecialist {
    /// Its capability names as it registers them: sorted.
    pub fn capability_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .capabilities
            .iter()
            .map(|index| capability_name(*index))
            .collect();
        names.sort();
        names
    }
}

#[derive(Debug, Clone)]
pub struct SimSubtask {
    pub index: usize,
    pub arrival_ms: i64,
    pub required: Vec<usize>,
    pub priority: i32,
}

/// What happened when a specialist did a subtask.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub success: bool,
    pub quality: f64,
    pub duration_ms: i64,
}

pub struct World {
    pub scenario: Scenario,
    pub specialists: Vec<SimSpecialist>,
    pub subtasks: Vec<SimSubtask>,
}

pub fn capability_name(index: usize) -> String {
    format!("cap{index}")
}

impl World {
    pub fn new(scenario: Scenario) -> Self {
        let seed = scenario.seed;
        let skill_of = |purpose: u64, specialist: usize, capability: usize| {
            let draw = uniform(seed, &[purpose, specialist as u64, capability as u64]);
            (0.5 + scenario.skill_spread * (draw - 0.5)).clamp(0.02, 0.98)
        };
        let mut specialists = Vec::with_capacity(scenario.specialists);
        for specialist in 0..scenario.specialists {
            // Distinct capabilities by a seeded partial shuffle; specialist i always gets
            // capability i mod K, so every capability has holders.
            let mut order: Vec<usize> = (0..scenario.capabilities).collect();
            order.swap(0, specialist % scenario.capabilities);
            for slot in 1..order.len() {
                let pick = slot
                    + (uniform(seed, &[CAPABILITY_PICK, specialist as u64, slot as u64])
                        * (order.len() - slot) as f64) as usize;
                let last = order.len() - 1;
                order.swap(slot, pick.min(last));
            }
            let mut capabilities: Vec<usize> = order
                .into_iter()
                .take(
                    scenario
                        .capabilities_per_specialist
                        .clamp(1, scenario.capabilities),
                )
                .collect();
            capabilities.sort_unstable();
            let mut skill = vec![0.0; scenario.capabilities];
            let mut drifted_skill = vec![0.0; scenario.capabilities];
            let drifts = uniform(seed, &[DRIFT, specialist as u64]) < scenario.drift_share;
            for &capability in &capabilities {
                skill[capability] = skill_of(SKILL, specialist, capability);
                drifted_skill[capability] = if drifts {
                    skill_of(DRIFT, specialist, capability)
                } else {
                    skill[capability]
                };
            }
            specialists.push(SimSpecialist {
                specialist_id: format!("sim-{specialist:03}"),
                capabilities,
                skill,
                drifted_skill,
                slowness: 0.6 + uniform(seed, &[SPEED, specialist as u64]),
            });
        }
        let slots = (scenario.specialists as f64) * f64::from(scenario.max_concurrency);
        let arrivals_per_ms = scenario.load * slots / (scenario.mean_duration_ms * 1.1);
        let mut now_ms = 0.0;
        let subtasks = (0..scenario.subtasks)
            .map(|index| {
                let gap = -(1.0 - uniform(seed, &[ARRIVAL, index as u64])).ln() / arrivals_per_ms;
                now_ms += gap;
                let first = (uniform(seed, &[REQUIREMENT, index as u64, 0])
                    * scenario.capabilities as f64) as usize;
                let mut required = vec![first.min(scenario.capabilities - 1)];
                if uniform(seed, &[REQUIREMENT, index as u64, 1]) < 0.3 {
                    let second = (uniform(seed, &[REQUIREMENT, index as u64, 2])
                        * scenario.capabilities as f64) as usize;
                    required.push(second.min(scenario.capabilities - 1));
                }
                required.sort_unstable();
                required.dedup();
                SimSubtask {
                    index,
                    arrival_ms: now_ms as i64,
                    required,
                    priority: (uniform(seed, &[PRIORITY, index as u64]) * 3.0) as i32,
                }
            })
            .collect();
        Self {
            scenario,
            specialists,
            subtasks,
        }
    }

    /// The hidden probability that `specialist` succeeds at `subtask`: the mean of its skill over
    /// the required capabilities (a capability it lacks counts 0.05).
    pub fn success_probability(&self, specialist: usize, subtask: &SimSubtask) -> f64 {
        let drifted = self.scenario.drift_at > 0 && subtask.index >= self.scenario.drift_at;
        let skills = if drifted {
            &self.specialists[specialist].drifted_skill
        } else {
            &self.specialists[specialist].skill
        };
        let total: f64 = subtask
            .required
            .iter()
            .map(|capability| skills[*capability].max(0.05))
            .sum();
        total / subtask.required.len().max(1) as f64
    }

    /// The outcome of `specialist` doing `subtask`, the same under every policy.
    pub fn outcome(&self, specialist: usize, subtask: &SimSubtask) -> Outcome {
        let probability = self.success_probability(specialist, subtask);
        let key = [subtask.index as u64, specialist as u64];
        let seed = self.scenario.seed;
        let success = uniform(seed, &[OUTCOME, key[0], key[1]]) < probability;
        let noise = uniform(seed, &[QUALITY, key[0], key[1]]) - 0.5;
        let quality = if success {
            (0.4 + 0.6 * probability + 0.2 * noise).clamp(0.0, 1.0)
        } else {
            (0.2 * probability + 0.1 * noise).clamp(0.0, 1.0)
        };
        let duration = self.scenario.mean_duration_ms
            * self.specialists[specialist].slowness
            * (0.5 + uniform(seed, &[DURATION, key[0], key[1]]));
        Outcome {
            success,
            quality,
            duration_ms: duration.max(1.0) as i64,
        }
    }

    pub fn context(&self, subtask: &SimSubtask) -> SubtaskContext {
        SubtaskContext {
            specialist_type: "general".into(),
            required_capabilities: subtask
                .required
                .iter()
                .map(|index| capability_name(*index))
                .collect(),
            priority: subtask.priority,
            description: None,
            estimated_duration_ms: None,
        }
    }
}
