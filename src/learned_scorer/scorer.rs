//! The inference thread: Assign handlers send the rows of one subtask's candidates over a channel
//! and await a oneshot reply, so a long forward pass never runs on a tokio worker. (The engine
//! scores small batches on the calling task, see `learned::INLINE_CANDIDATES`.)

use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::features::{CandidateRows, SparseRow};
use super::model::{Prediction, ScorerModel};
use super::{spawn_single_threaded, EngineError};

type Reply = oneshot::Sender<Result<Option<Vec<Prediction>>, EngineError>>;

enum Job {
    Score { rows: CandidateRows, reply: Reply },
    Install(Option<Arc<ScorerModel>>),
}

/// Handle to the inference thread; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Scorer {
    jobs: mpsc::Sender<Job>,
}

impl Scorer {
    pub fn spawn() -> Result<Self, EngineError> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        spawn_single_threaded("scorer", move || {
            let mut model: Option<Arc<ScorerModel>> = None;
            while let Ok(job) = inbox.recv() {
                match job {
                    Job::Install(new_model) => model = new_model,
                    Job::Score { rows, reply } => {
                        let result = match &model {
                            Some(model) => Ok(Some(model.predict_candidates(&rows))),
                            None => Ok(None),
                        };
                        // The caller may have given up (deadline): nothing to do then.
                        let _ = reply.send(result);
                    }
                }
            }
        })?;
        Ok(Self { jobs })
    }

    /// Makes `model` serve from the next request on (None: back to no model).
    pub fn install(&self, model: Option<Arc<ScorerModel>>) -> Result<(), EngineError> {
        self.jobs
            .send(Job::Install(model))
            .map_err(|_| EngineError::ScorerGone)
    }

    fn send(&self, rows: CandidateRows) -> Result<oneshot::Receiver<ScoreResult>, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Score { rows, reply })
            .map_err(|_| EngineError::ScorerGone)?;
        Ok(answer)
    }

    /// Predictions for one batch of rows, in order; None while no model serves.
    pub async fn score(&self, rows: Vec<SparseRow>) -> ScoreResult {
        self.score_candidates(CandidateRows {
            rows,
            shared_slots: 0,
        })
        .await
    }

    /// `score` for the rows of one subtask's candidates (their shared slots summed once).
    pub async fn score_candidates(&self, rows: CandidateRows) -> ScoreResult {
        self.send(rows)?
            .await
            .map_err(|_| EngineError::ScorerGone)?
    }
}

type ScoreResult = Result<Option<Vec<Prediction>>, EngineError>;
