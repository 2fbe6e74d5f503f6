//! Errors every store reports; the API maps them to gRPC status codes in one place.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("internal store error: {0}")]
    Internal(String),
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
}
