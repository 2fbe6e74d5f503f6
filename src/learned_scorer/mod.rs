//! Scoring beyond the rules: a candle model trained online from completion reports, which gives
//! the store a learned performance factor per candidate. Pure of tonic, Redis and Postgres.
//!
//! - `features`: a (subtask, specialist) pair as a hashed sparse row
//! - `names`: capability names compared cheaply (the overlap feature, outcomes per capability)
//! - `model`: the network, its forward pass and its safetensors checkpoint format
//! - `trainer`: training on the recent window, hold-out validation
//! - `scorer`: the dedicated inference thread (channel in, oneshot replies out)
//! - `checkpoints`: where accepted models are kept (in memory for the embedded store)
//! - `learned`: the engine that ties them together for Assign, ReportCompletion and GetModelStatus

pub mod checkpoints;
pub mod features;
pub mod learned;
pub mod model;
mod names;
pub mod scorer;
pub mod trainer;

pub use learned::{EngineSettings, LearnedEngine, ModelStatus};

/// What the learned scorer can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("model checkpoint rejected: {0}")]
    Checkpoint(String),
    #[error("checkpoint storage: {0}")]
    Storage(String),
    #[error("the scorer thread is gone")]
    ScorerGone,
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, String),
}

/// Runs `body` on a new thread that is the only worker of its own rayon pool, so that candle's
/// parallel kernels run inline on it: for batches this small, handing work to other threads
/// costs more than it saves, and the two engine threads do not fight over the cores.
fn spawn_single_threaded(
    name: &'static str,
    body: impl FnOnce() + Send + 'static,
) -> Result<(), EngineError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .thread_name(move |_| format!("switchboard-{name}"))
        .build()
        .map_err(|error| EngineError::Thread(name, error.to_string()))?;
    // The pool's thread lives until `body` returns, even though the pool handle is dropped here.
    pool.spawn(body);
    Ok(())
}

#[cfg(test)]
mod tests;
