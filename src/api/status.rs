//! The one place errors become `tonic::Status`.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::store::StoreError;

/// What an API handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// One or more fields broke a rule: (field, description) pairs.
    #[error("invalid argument")]
    InvalidArgument(Vec<(String, String)>),
    /// Over a limit; the caller may retry after `retry_after` (sent as a `google.rpc.RetryInfo`
    /// detail).
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: std::time::Duration,
    },
    /// No valid token (authentication on).
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token that does not allow the call; says what is missing.
    #[error("{0}")]
    PermissionDenied(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        ApiError::InvalidArgument(vec![(field.into(), description.into())])
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidArgument(violations) => invalid_argument(violations),
            ApiError::RateLimited {
                message,
                retry_after,
            } => Status::with_error_details(
                Code::ResourceExhausted,
                message,
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            ApiError::Unauthenticated(message) => Status::unauthenticated(message),
            ApiError::PermissionDenied(message) => Status::permission_denied(message),
            ApiError::Store(store_error) => store_status(store_error),
        }
    }
}

fn invalid_argument(violations: Vec<(String, String)>) -> Status {
    let message = violations
        .iter()
        .map(|(field, description)| format!("{field}: {description}"))
        .collect::<Vec<_>>()
        .join("; ");
    let mut details = ErrorDetails::new();
    for (field, description) in violations {
        details.add_bad_request_violation(field, description);
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

fn store_status(error: StoreError) -> Status {
    match error {
        StoreError::NotFound { .. } => Status::not_found(error.to_string()),
        StoreError::InvalidArgument { field, message } => invalid_argument(vec![(field, message)]),
        StoreError::AlreadyExists { .. } | StoreError::SpecialistLive { .. } => {
            Status::already_exists(error.to_string())
        }
        StoreError::FailedPrecondition(precondition) => {
            Status::failed_precondition(precondition.to_string())
        }
        StoreError::Unavailable(message) => Status::unavailable(message),
        StoreError::ResourceExhausted(message) => Status::resource_exhausted(message),
        StoreError::Internal(message) => {
            // Logged in full here; the caller gets a short message.
            tracing::error!(error = %message, "internal store error");
            Status::internal("internal error")
        }
    }
}
