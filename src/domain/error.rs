//! Errors every store (and the rules' machine) reports, typed by cause; the API maps them to gRPC
//! status codes in one place.

use crate::domain::subtask::SubtaskState;

/// What every store step answers.
pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("subtask {subtask_id} exists with different content")]
    AlreadyExists { subtask_id: String },
    /// Register without take_over while another incarnation of the id is live.
    #[error("specialist {specialist_id} is registered by a live process (its lease lapses in {lease_left_ms} ms unless it heartbeats); register with take_over to replace it, or with its incarnation to update it")]
    SpecialistLive {
        specialist_id: String,
        lease_left_ms: i64,
    },
    #[error("{0}")]
    FailedPrecondition(Precondition),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("internal store error: {0}")]
    Internal(String),
}

/// Why a call cannot be applied to the state it finds.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Precondition {
    #[error("subtask {subtask_id} is {}, not assigned", state.as_str())]
    NotAssigned {
        subtask_id: String,
        state: SubtaskState,
    },
    #[error("subtask {subtask_id} is not held by specialist {specialist_id}")]
    WrongHolder {
        subtask_id: String,
        specialist_id: String,
    },
    #[error("epoch {epoch} of subtask {subtask_id} is stale; the current epoch is {current}")]
    StaleEpoch {
        subtask_id: String,
        epoch: u64,
        current: u64,
    },
    #[error("subtask {subtask_id} is {}, not queued", state.as_str())]
    NotQueued {
        subtask_id: String,
        state: SubtaskState,
    },
    #[error("subtask {subtask_id} is {} and cannot be cancelled", state.as_str())]
    CannotCancel {
        subtask_id: String,
        state: SubtaskState,
    },
    #[error("depends_on: subtask {dependency_id} is unknown")]
    UnknownDependency { dependency_id: String },
    #[error("specialist {specialist_id} is registered as type {registered}; deregister it before registering it as {requested}")]
    TypeMismatch {
        specialist_id: String,
        registered: String,
        requested: String,
    },
    /// The call names an incarnation of the specialist that another Register ended (or never was).
    #[error("incarnation {incarnation} of specialist {specialist_id} has ended: another process registered the id")]
    IncarnationEnded {
        specialist_id: String,
        incarnation: String,
    },
    /// Concurrent calls kept changing what this one depends on; retrying is expected to work.
    #[error("{0}")]
    Contended(String),
}

impl StoreError {
    pub fn specialist_not_found(specialist_id: &str) -> Self {
        StoreError::NotFound {
            kind: "specialist",
            id: specialist_id.to_string(),
        }
    }

    pub fn subtask_not_found(subtask_id: &str) -> Self {
        StoreError::NotFound {
            kind: "subtask",
            id: subtask_id.to_string(),
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        StoreError::InvalidArgument {
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub fn already_exists(subtask_id: &str) -> Self {
        StoreError::AlreadyExists {
            subtask_id: subtask_id.to_string(),
        }
    }
}

impl From<Precondition> for StoreError {
    fn from(precondition: Precondition) -> Self {
        StoreError::FailedPrecondition(precondition)
    }
}
