//! The learned engine: turns a subtask's candidates into learned performance factors for the
//! store's pick, turns completion reports into training examples, retrains every N reports or T
//! seconds, and swaps a new model in only when it beats the serving one on held-out reports.
//!
//! Cold start: until a trained model beats the rule-based prior on the hold-out, `factors` returns
//! None and Assign scores by the rules; the status says "rules". Exploration: a candidate's factor
//! gets an optimism bonus that shrinks with the outcomes seen for it on the required capabilities,
//! so newcomers and untried pairings are tried.

use std::collections::{HashMap, VecDeque};
use std::sync::{mpsc, Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tracing::{info, warn};

use crate::domain::learned::{CandidateInfo, LearnedFactors};
use crate::domain::subtask::CompletionReport;
use crate::metrics as names;

use super::checkpoints::{Checkpoint, CheckpointStore};
use super::features::{encode, encode_candidates, SubtaskContext, SubtaskFeatures};
use super::model::{Prediction, ScorerModel};
use super::names::compare_names;
use super::scorer::Scorer;
use super::trainer::{train, Example, HoldoutMetrics, Trained, TrainerSettings};
use super::{spawn_single_threaded, EngineError};

/// How the engine learns and how much its factors count.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    pub trainer: TrainerSettings,
    /// Retrain after this many new reports (0: only by time).
    pub train_every_reports: u64,
    /// Retrain when this long has passed since the last run and new reports came in.
    pub train_every: Option<Duration>,
    /// Performance weight of the rules (what the factor starts from).
    pub base_performance_weight: f64,
    /// Performance weight once the model has earned full trust (hold-out AUC 0.75 or more).
    pub max_performance_weight: f64,
    /// Optimism bonus for a pairing never seen; it shrinks as 1/sqrt(1 + outcomes seen).
    pub exploration: f64,
    /// Submitted subtasks whose context is kept until their report comes.
    pub pending_capacity: usize,
    /// Train on a background thread (server) or inline in `observe` (simulator, tests).
    pub background_training: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            trainer: TrainerSettings::default(),
            train_every_reports: 500,
            train_every: Some(Duration::from_secs(60)),
            base_performance_weight: 0.1,
            max_performance_weight: 0.6,
            exploration: 0.1,
            pending_capacity: 100_000,
            background_training: true,
        }
    }
}

/// What GetModelStatus reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelStatus {
    /// "rules" until a trained model serves, then "learned".
    pub scorer: &'static str,
    pub version: u64,
    pub training_set_size: u64,
    /// The serving model's hold-out metrics.
    pub holdout: Option<HoldoutMetrics>,
    /// The latest run's incumbent (the serving model, or the rules) on that run's hold-out.
    pub incumbent_holdout: Option<HoldoutMetrics>,
    pub last_trained_at_ms: Option<i64>,
    pub examples: u64,
    pub trainings: u64,
    pub rejected: u64,
    pub performance_weight: f64,
    pub detail: String,
}

struct Shared {
    examples: VecDeque<Example>,
    pending: HashMap<String, SubtaskContext>,
    pending_order: VecDeque<String>,
    /// Each specialist seen as a candidate: its latest snapshot and its outcomes per capability.
    specialists: HashMap<String, KnownSpecialist>,
    reports_since_training: u64,
    last_training: Instant,
    training_running: bool,
    model: Option<Arc<ScorerModel>>,
    status: ModelStatus,
}

/// What the engine keeps of a specialist seen as a candidate.
struct KnownSpecialist {
    /// Its latest snapshot.
    info: CandidateInfo,
    /// Outcomes reported for it per capability the subtask required, sorted by capability (a
    /// handful each: a binary search is cheaper than hashing the name).
    outcomes: Vec<(String, u32)>,
}

/// What one Assign takes from the shared state, in one look under the lock.
struct Prepared {
    context: SubtaskContext,
    model: Arc<ScorerModel>,
    /// Per candidate: outcomes seen for it on the required capabilities (the exploration bonus).
    seen: Vec<u32>,
    performance_weight: f64,
}

/// Batches of up to this many candidates are scored on the calling task, not on the inference
/// thread. The serving forward pass is a plain loop, not candle, and cheap: on the 2-core machine
/// about 0.1 us a candidate, no more than encoding the candidate, which always ran on the calling
/// task; all of `factors` for 100 candidates took 30 to 47 us (`cargo bench --bench scorer`),
/// within the 10 to 100 us a tokio task is commonly allowed between awaits. The round trip to the
/// thread alone took 15 to 90 us (waking it, then being woken by its reply). Bigger batches still
/// go to the thread, so no task runs a long forward pass.
const INLINE_CANDIDATES: usize = 128;

/// The window to train on and the model serving when it was taken.
type TrainingJob = (Vec<Example>, Option<Arc<ScorerModel>>);

struct Inner {
    settings: EngineSettings,
    scorer: Scorer,
    checkpoints: Arc<dyn CheckpointStore>,
    shared: Mutex<Shared>,
    trainer: Mutex<Option<mpsc::Sender<TrainingJob>>>,
    /// For inline training: a one-thread pool to run it in.
    inline_pool: Option<rayon::ThreadPool>,
}

/// The engine; cheap to clone.
#[derive(Clone)]
pub struct LearnedEngine {
    inner: Arc<Inner>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

impl LearnedEngine {
    /// Starts the inference thread (and the trainer thread for background training) and loads the
    /// active checkpoint if the store has one.
    pub fn start(
        settings: EngineSettings,
        checkpoints: Arc<dyn CheckpointStore>,
    ) -> Result<Self, EngineError> {
        let status = ModelStatus {
            scorer: "rules",
            version: 0,
            training_set_size: 0,
            holdout: None,
            incumbent_holdout: None,
            last_trained_at_ms: None,
            examples: 0,
            trainings: 0,
            rejected: 0,
            performance_weight: settings.base_performance_weight,
            detail: "cold start: no trained model yet, scoring by the rules".into(),
        };
        let background = settings.background_training;
        let inner = Arc::new(Inner {
            scorer: Scorer::spawn()?,
            checkpoints,
            shared: Mutex::new(Shared {
                examples: VecDeque::new(),
                pending: HashMap::new(),
                pending_order: VecDeque::new(),
                specialists: HashMap::new(),
                reports_since_training: 0,
                last_training: Instant::now(),
                training_running: false,
                model: None,
                status,
            }),
            trainer: Mutex::new(None),
            inline_pool: if background {
                None
            } else {
                rayon::ThreadPoolBuilder::new().num_threads(1).build().ok()
            },
            settings,
        });
        if background {
            let (jobs, inbox) = mpsc::channel::<TrainingJob>();
            let weak: Weak<Inner> = Arc::downgrade(&inner);
            spawn_single_threaded("trainer", move || {
                while let Ok((examples, current)) = inbox.recv() {
                    let Some(inner) = weak.upgrade() else {
                        return;
                    };
                    inner.run_training(&examples, current);
                }
            })?;
            *inner.trainer.lock() = Some(jobs);
        }
        let engine = Self { inner };
        if let Some(checkpoint) = engine.inner.checkpoints.load_active()? {
            engine.install_checkpoint(&checkpoint)?;
        }
        Ok(engine)
    }

    pub fn status(&self) -> ModelStatus {
        self.inner.shared.lock().status.clone()
    }

    pub fn scorer(&self) -> &Scorer {
        &self.inner.scorer
    }

    /// Serves a stored checkpoint. One that does not load is rejected with the reason, and the
    /// serving model (or the rules) stays.
    pub fn install_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), EngineError> {
        let model = Arc::new(ScorerModel::from_safetensors(&checkpoint.weights)?);
        self.inner.scorer.install(Some(model.clone()))?;
        let mut shared = self.inner.shared.lock();
        shared.model = Some(model);
        let status = &mut shared.status;
        status.scorer = "learned";
        status.version = checkpoint.version;
        status.training_set_size = checkpoint.training_set_size;
        status.holdout = Some(checkpoint.holdout);
        status.last_trained_at_ms = Some(checkpoint.created_at_ms);
        status.performance_weight = self.inner.performance_weight(&checkpoint.holdout);
        status.detail = format!("serving checkpoint version {}", checkpoint.version);
        record_model_metrics(checkpoint.version, &checkpoint.holdout);
        Ok(())
    }

    /// Learned factors for a new subtask's candidates; None while the rules serve (or when
    /// there is nobody to choose from). Remembers the subtask so its report can train.
    pub async fn factors(
        &self,
        subtask_id: &str,
        context: SubtaskContext,
        candidates: &[CandidateInfo],
    ) -> Result<Option<LearnedFactors>, EngineError> {
        let Some(prepared) = self.inner.prepare(subtask_id, context, candidates) else {
            return Ok(None);
        };
        let started = Instant::now();
        let predictions = if candidates.len() <= INLINE_CANDIDATES {
            let features = SubtaskFeatures::new(&prepared.context);
            Some(prepared.model.predict_encoding(&features, candidates))
        } else {
            let rows = encode_candidates(&prepared.context, candidates);
            self.inner.scorer.score_candidates(rows).await?
        };
        metrics::histogram!(names::SCORER_INFERENCE).record(started.elapsed().as_secs_f64());
        Ok(predictions.map(|predictions| self.inner.combine(&prepared, candidates, &predictions)))
    }

    /// `factors` for callers that may block (the simulator, tests): waits for the scorer thread.
    pub fn factors_blocking(
        &self,
        subtask_id: &str,
        context: SubtaskContext,
        candidates: &[CandidateInfo],
    ) -> Result<Option<LearnedFactors>, EngineError> {
        futures::executor::block_on(self.factors(subtask_id, context, candidates))
    }

    /// Offers a trained model: it serves only if it beat the incumbent on its hold-out.
    pub fn offer(&self, trained: Trained) -> Result<bool, EngineError> {
        self.inner.apply(trained)
    }

    /// The training window as it stands, oldest first.
    pub fn examples(&self) -> Vec<Example> {
        self.inner.examples()
    }

    /// The serving model, if one does.
    pub fn model(&self) -> Option<Arc<ScorerModel>> {
        self.inner.shared.lock().model.clone()
    }

    /// Takes a completion report (after the store accepted it) as a training example, and trains
    /// when due. Reports of subtasks the engine did not see submitted are skipped.
    pub fn observe(&self, report: &CompletionReport) {
        let job = {
            let mut shared = self.inner.shared.lock();
            let Some(context) = shared.pending.remove(&report.subtask_id) else {
                return;
            };
            let Some(known) = shared.specialists.get_mut(&report.specialist_id) else {
                return;
            };
            for capability in &context.required_capabilities {
                known.count_outcome(capability);
            }
            let specialist = known.info.clone();
            shared.examples.push_back(Example {
                row: encode(&context, &specialist),
                success: report.success,
                quality: report.quality_score as f32,
                rule_prior: specialist.rule_performance as f32,
            });
            while shared.examples.len() > self.inner.settings.trainer.window {
                shared.examples.pop_front();
            }
            shared.status.examples += 1;
            shared.reports_since_training += 1;
            if !self.inner.training_due(&shared) {
                return;
            }
            shared.reports_since_training = 0;
            shared.last_training = Instant::now();
            shared.training_running = true;
            (Vec::from(shared.examples.clone()), shared.model.clone())
        };
        let trainer = self.inner.trainer.lock().clone();
        match trainer {
            Some(trainer) => {
                if trainer.send(job).is_err() {
                    warn!("the trainer thread is gone; the serving model stays");
                }
            }
            None => {
                // Inline (simulator, tests): still on a one-thread rayon pool, see
                // `spawn_single_threaded`.
                let inner = &self.inner;
                match &inner.inline_pool {
                    Some(pool) => pool.install(|| inner.run_training(&job.0, job.1)),
                    None => inner.run_training(&job.0, job.1),
                }
            }
        }
    }
}

impl Inner {
    fn training_due(&self, shared: &Shared) -> bool {
        if shared.training_running || shared.reports_since_training == 0 {
            return false;
        }
        let by_count = self.settings.train_every_reports > 0
            && shared.reports_since_training >= self.settings.train_every_reports;
        let by_time = self
            .settings
            .train_every
            .is_some_and(|every| shared.last_training.elapsed() >= every);
        by_count || by_time
    }

    /// Weight of the learned factor: the rules' weight, growing to the maximum as the serving
    /// model's hold-out AUC goes from 0.5 (guessing) to 0.75.
    fn performance_weight(&self, holdout: &HoldoutMetrics) -> f64 {
        let trust = ((holdout.auc - 0.5) / 0.25).clamp(0.0, 1.0);
        let base = self.settings.base_performance_weight;
        base + (self.settings.max_performance_weight - base).max(0.0) * trust
    }

    /// Remembers the subtask and the candidates; when a model serves, returns it with what the
    /// factors need of the shared state.
    fn prepare(
        &self,
        subtask_id: &str,
        context: SubtaskContext,
        candidates: &[CandidateInfo],
    ) -> Option<Prepared> {
        let mut shared = self.shared.lock();
        let shared = &mut *shared;
        let required = &context.required_capabilities;
        let mut seen = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            let outcomes = match shared.specialists.get_mut(&candidate.specialist_id) {
                // Updated in place: an Assign over many candidates should not allocate for each.
                Some(known) => {
                    refresh(&mut known.info, candidate);
                    known.outcomes_on(required)
                }
                None => {
                    shared.specialists.insert(
                        candidate.specialist_id.clone(),
                        KnownSpecialist {
                            info: candidate.clone(),
                            outcomes: Vec::new(),
                        },
                    );
                    0
                }
            };
            seen.push(if required.is_empty() {
                candidate.recent_outcomes
            } else {
                outcomes
            });
        }
        if shared
            .pending
            .insert(subtask_id.to_string(), context.clone())
            .is_none()
        {
            shared.pending_order.push_back(subtask_id.to_string());
        }
        while shared.pending_order.len() > self.settings.pending_capacity {
            if let Some(oldest) = shared.pending_order.pop_front() {
                shared.pending.remove(&oldest);
            }
        }
        if candidates.is_empty() {
            return None;
        }
        // None while the rules serve.
        let model = shared.model.clone()?;
        Some(Prepared {
            context,
            model,
            seen,
            performance_weight: shared.status.performance_weight,
        })
    }

    /// Factor = 0.75 P(success) + 0.25 expected quality + the exploration bonus, in 0..1.
    fn combine(
        &self,
        prepared: &Prepared,
        candidates: &[CandidateInfo],
        predictions: &[Prediction],
    ) -> LearnedFactors {
        let performance = candidates
            .iter()
            .zip(predictions)
            .zip(&prepared.seen)
            .map(|((candidate, prediction), seen)| {
                let bonus = self.settings.exploration / (1.0 + f64::from(*seen)).sqrt();
                let value = 0.75 * f64::from(prediction.success_probability)
                    + 0.25 * f64::from(prediction.expected_quality)
                    + bonus;
                (candidate.specialist_id.clone(), value.clamp(0.0, 1.0))
            })
            .collect();
        LearnedFactors {
            performance_weight: prepared.performance_weight,
            performance,
        }
    }

    fn run_training(&self, examples: &[Example], current: Option<Arc<ScorerModel>>) {
        let result = train(
            current.as_deref(),
            current.as_deref(),
            examples,
            &self.settings.trainer,
        );
        let outcome = match result {
            Ok(Some(trained)) => self.apply(trained).map(|_| ()),
            Ok(None) => Ok(()),
            Err(error) => Err(error),
        };
        if let Err(error) = outcome {
            warn!(%error, "training failed; the serving model stays");
        }
        self.shared.lock().training_running = false;
    }

    /// The examples the engine holds now, oldest first.
    fn examples(&self) -> Vec<Example> {
        Vec::from(self.shared.lock().examples.clone())
    }

    /// Swaps the trained model in if it beat the incumbent; records the run either way. Returns
    /// whether it now serves.
    fn apply(&self, trained: Trained) -> Result<bool, EngineError> {
        let accepted = trained.accepted;
        metrics::counter!(names::SCORER_TRAININGS, "outcome" => if accepted { "accepted" } else { "rejected" })
            .increment(1);
        let version = {
            let mut shared = self.shared.lock();
            shared.status.trainings += 1;
            shared.status.incumbent_holdout = Some(trained.incumbent_metrics);
            if !accepted {
                shared.status.rejected += 1;
                shared.status.detail = format!(
                    "latest run rejected: hold-out log loss {:.4} did not beat {:.4}",
                    trained.metrics.log_loss, trained.incumbent_metrics.log_loss
                );
                return Ok(false);
            }
            shared.status.version + 1
        };
        let checkpoint = Checkpoint {
            version,
            created_at_ms: now_ms(),
            training_set_size: trained.training_set_size as u64,
            holdout: trained.metrics,
            weights: trained.model.to_safetensors()?,
        };
        self.checkpoints.save(&checkpoint)?;
        let model = Arc::new(trained.model);
        self.scorer.install(Some(model.clone()))?;
        let mut shared = self.shared.lock();
        shared.model = Some(model);
        let performance_weight = self.performance_weight(&trained.metrics);
        let status = &mut shared.status;
        status.scorer = "learned";
        status.version = version;
        status.training_set_size = checkpoint.training_set_size;
        status.holdout = Some(trained.metrics);
        status.last_trained_at_ms = Some(checkpoint.created_at_ms);
        status.performance_weight = performance_weight;
        status.detail = format!(
            "model version {version} serves: hold-out log loss {:.4} beat {:.4}",
            trained.metrics.log_loss, trained.incumbent_metrics.log_loss
        );
        record_model_metrics(version, &trained.metrics);
        info!(
            version,
            log_loss = trained.metrics.log_loss,
            auc = trained.metrics.auc,
            "learned scorer swapped in"
        );
        Ok(true)
    }
}

impl KnownSpecialist {
    fn count_outcome(&mut self, capability: &str) {
        match self.position(capability) {
            Ok(index) => self.outcomes[index].1 += 1,
            Err(index) => self.outcomes.insert(index, (capability.to_string(), 1)),
        }
    }

    /// Outcomes seen on `required`: their mean over the capabilities, rounded down (0 when
    /// nothing is required).
    fn outcomes_on(&self, required: &[String]) -> u32 {
        let total: u32 = required
            .iter()
            .map(|capability| {
                self.position(capability)
                    .map_or(0, |index| self.outcomes[index].1)
            })
            .sum();
        total / required.len().max(1) as u32
    }

    fn position(&self, capability: &str) -> Result<usize, usize> {
        self.outcomes
            .binary_search_by(|(name, _)| compare_names(name, capability))
    }
}

/// Copies a candidate snapshot over the one kept, reusing its allocations.
fn refresh(known: &mut CandidateInfo, candidate: &CandidateInfo) {
    if known.capabilities != candidate.capabilities {
        known.capabilities.clone_from(&candidate.capabilities);
    }
    if known.specialist_type != candidate.specialist_type {
        known.specialist_type.clone_from(&candidate.specialist_type);
    }
    known.active = candidate.active;
    known.max_concurrency = candidate.max_concurrency;
    known.availability = candidate.availability;
    known.recent_successes = candidate.recent_successes;
    known.recent_outcomes = candidate.recent_outcomes;
    known.rule_performance = candidate.rule_performance;
}

fn record_model_metrics(version: u64, holdout: &HoldoutMetrics) {
    metrics::gauge!(names::SCORER_MODEL_VERSION).set(version as f64);
    metrics::gauge!(names::SCORER_HOLDOUT_LOG_LOSS).set(holdout.log_loss);
    metrics::gauge!(names::SCORER_HOLDOUT_AUC).set(holdout.auc);
}
