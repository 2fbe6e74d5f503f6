//! The configured rules every store applies: types, weights, leases, attempts.

/// Weights of the four score factors; they add up to 1 so scores run 0..100.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoringWeights {
    pub capability: f64,
    pub load: f64,
    pub availability: f64,
    pub performance: f64,
}

impl Default for ScoringWeights {
    fn default() -> Self {
        Self {
            capability: 0.4,
            load: 0.3,
            availability: 0.2,
            performance: 0.1,
        }
    }
}

impl ScoringWeights {
    pub fn validate(&self) -> Result<(), String> {
        let all = [
            self.capability,
            self.load,
            self.availability,
            self.performance,
        ];
        if all
            .iter()
            .any(|weight| !weight.is_finite() || *weight < 0.0)
        {
            return Err("score weights must be finite and not negative".into());
        }
        let total: f64 = all.iter().sum();
        if (total - 1.0).abs() > 1e-6 {
            return Err(format!(
                "score weights must add up to 1, they add up to {total}"
            ));
        }
        Ok(())
    }
}

/// Everything a store needs to know to route like every other store.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingPolicy {
    pub specialist_types: Vec<String>,
    /// Type that takes subtasks no specialist of the requested type could ever serve.
    pub fallback_type: Option<String>,
    pub weights: ScoringWeights,
    pub default_max_concurrency: u32,
    pub lease_ttl_ms: i64,
    pub max_attempts: u32,
    /// How long a finished subtask is kept after it finished; then the store forgets it.
    pub retention_ms: i64,
}

impl Default for RoutingPolicy {
    fn default() -> Self {
        Self {
            specialist_types: ["frontend", "backend", "testing", "docs", "general"]
                .map(String::from)
                .to_vec(),
            fallback_type: Some("general".into()),
            weights: ScoringWeights::default(),
            default_max_concurrency: 5,
            lease_ttl_ms: 15_000,
            max_attempts: 3,
            retention_ms: 3_600_000,
        }
    }
}

impl RoutingPolicy {
    pub fn knows_type(&self, specialist_type: &str) -> bool {
        self.specialist_types
            .iter()
            .any(|known| known == specialist_type)
    }
}
