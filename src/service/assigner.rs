//! Assigning and reporting. Without a factor source the store scores by the rules; with one (the
//! learned scorer, or a simulated policy) the candidates the store names get learned performance
//! factors, which the store's atomic pick then uses. A factor source that fails never fails the
//! Assign: the rules score that subtask.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use tracing::{debug, warn};

use crate::domain::learned::{CandidateInfo, LearnedFactors};
use crate::domain::subtask::{AssignmentView, CompletionReport, SubtaskSpec, SubtaskState};
use crate::learned_scorer::features::SubtaskContext;
use crate::learned_scorer::LearnedEngine;
use crate::metrics as names;
use crate::store::{Store, StoreResult};

/// Where learned performance factors come from.
#[async_trait]
pub trait FactorSource: Send + Sync {
    /// Factors for a new subtask's candidates; None scores it by the rules.
    async fn factors(
        &self,
        spec: &SubtaskSpec,
        context: SubtaskContext,
        candidates: &[CandidateInfo],
    ) -> Option<LearnedFactors>;

    /// A completion report that took effect (what a learning source learns from).
    fn observe(&self, report: &CompletionReport) {
        let _ = report;
    }
}

#[async_trait]
impl FactorSource for LearnedEngine {
    async fn factors(
        &self,
        spec: &SubtaskSpec,
        context: SubtaskContext,
        candidates: &[CandidateInfo],
    ) -> Option<LearnedFactors> {
        match LearnedEngine::factors(self, &spec.subtask_id, context, candidates).await {
            Ok(factors) => factors,
            Err(error) => {
                warn!(%error, subtask_id = %spec.subtask_id, "learned scoring failed; using the rules");
                None
            }
        }
    }

    fn observe(&self, report: &CompletionReport) {
        // Cheap bookkeeping here; training itself runs on the engine's own thread.
        LearnedEngine::observe(self, report);
    }
}

#[derive(Clone)]
pub struct Assigner {
    store: Arc<dyn Store>,
    factors: Option<Arc<dyn FactorSource>>,
}

fn outcome_label(state: SubtaskState) -> &'static str {
    match state {
        SubtaskState::Assigned => "assigned",
        SubtaskState::Queued => "queued",
        SubtaskState::Blocked => "blocked",
        SubtaskState::Failed => "failed",
        SubtaskState::Completed | SubtaskState::Cancelled => "existing",
    }
}

impl Assigner {
    pub fn new(store: Arc<dyn Store>, factors: Option<Arc<dyn FactorSource>>) -> Self {
        Self { store, factors }
    }

    /// Accepts a subtask: routed, picked and handed out (or queued) in one step of the store.
    /// `context` describes it to a factor source (made only when there is one).
    pub async fn assign(
        &self,
        spec: SubtaskSpec,
        context: impl FnOnce(&SubtaskSpec) -> SubtaskContext,
    ) -> StoreResult<AssignmentView> {
        let started = Instant::now();
        let result = match &self.factors {
            None => self.store.assign(spec).await,
            Some(source) => {
                let factors = self.learned_factors(source.as_ref(), &spec, context).await;
                self.store.assign_with(spec, factors).await
            }
        };
        metrics::histogram!(names::ASSIGN_DURATION).record(started.elapsed().as_secs_f64());
        match &result {
            Ok(view) => {
                metrics::counter!(names::ASSIGNMENTS, "outcome" => outcome_label(view.state))
                    .increment(1);
                debug!(
                    subtask_id = %view.subtask_id,
                    state = view.state.as_str(),
                    specialist_id = view.holder.as_ref().map(|holder| holder.specialist_id.as_str()).unwrap_or(""),
                    routed_type = %view.routed_type,
                    "assign"
                );
            }
            Err(_) => {
                metrics::counter!(names::ASSIGNMENTS, "outcome" => "rejected").increment(1);
            }
        }
        result
    }

    async fn learned_factors(
        &self,
        source: &dyn FactorSource,
        spec: &SubtaskSpec,
        context: impl FnOnce(&SubtaskSpec) -> SubtaskContext,
    ) -> Option<LearnedFactors> {
        let candidates = match self.store.candidates(spec).await {
            Ok(candidates) => candidates,
            Err(error) => {
                warn!(%error, subtask_id = %spec.subtask_id, "no candidates for learned scoring");
                return None;
            }
        };
        source.factors(spec, context(spec), &candidates).await
    }

    /// A completion report: the store's step, then the factor source learns from it.
    pub async fn report(&self, report: CompletionReport) -> StoreResult<AssignmentView> {
        let view = self.store.report_completion(report.clone()).await?;
        if let Some(source) = &self.factors {
            source.observe(&report);
        }
        Ok(view)
    }
}
