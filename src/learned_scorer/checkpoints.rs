//! Where accepted models are kept, so that every replica loads the same one at start. The embedded
//! store keeps them in memory; a Postgres implementation writes the `model_checkpoints` table.

use parking_lot::Mutex;
use serde::Serialize;

use super::trainer::HoldoutMetrics;
use super::EngineError;

/// One accepted model: its safetensors bytes and what it was judged on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checkpoint {
    pub version: u64,
    pub created_at_ms: i64,
    pub training_set_size: u64,
    pub holdout: HoldoutMetrics,
    #[serde(skip)]
    pub weights: Vec<u8>,
}

/// Checkpoint storage. Calls come from the trainer thread (never a tokio worker), so they block.
pub trait CheckpointStore: Send + Sync + 'static {
    /// Stores an accepted model as the active one.
    fn save(&self, checkpoint: &Checkpoint) -> Result<(), EngineError>;
    /// The active model, if any.
    fn load_active(&self) -> Result<Option<Checkpoint>, EngineError>;
}

/// Checkpoints of the embedded store: the active one and the ones before it, in memory.
#[derive(Debug, Default)]
pub struct MemoryCheckpoints {
    saved: Mutex<Vec<Checkpoint>>,
}

impl MemoryCheckpoints {
    pub fn versions(&self) -> Vec<u64> {
        self.saved
            .lock()
            .iter()
            .map(|checkpoint| checkpoint.version)
            .collect()
    }
}

impl CheckpointStore for MemoryCheckpoints {
    fn save(&self, checkpoint: &Checkpoint) -> Result<(), EngineError> {
        self.saved.lock().push(checkpoint.clone());
        Ok(())
    }

    fn load_active(&self) -> Result<Option<Checkpoint>, EngineError> {
        Ok(self.saved.lock().last().cloned())
    }
}
