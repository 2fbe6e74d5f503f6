//! gRPC adapters: one file per proto service over the `Store` trait, plus conversion and status mapping.

pub mod assign;
pub mod convert;
pub mod performance;
pub mod queue;
pub mod rate_limit;
pub mod register;
pub mod status;
pub mod watch;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::domain::policy::RoutingPolicy;
use crate::learned_scorer::LearnedEngine;
use crate::store::Store;

/// What every service handler shares.
#[derive(Clone)]
pub struct ApiContext {
    pub store: Arc<dyn Store>,
    pub policy: Arc<RoutingPolicy>,
    pub heartbeat_interval_ms: i64,
    pub assign_limiter: Arc<rate_limit::RateLimiter>,
    /// The learned scorer, when `--scorer learned`.
    pub engine: Option<LearnedEngine>,
    /// Assigning and reporting (service/), with the learned scorer as its factor source.
    pub assigner: crate::service::Assigner,
    /// Cancelled when the server starts shutting down: watch streams end.
    pub shutdown: CancellationToken,
}

/// Metadata key naming the caller for per-caller rate limits.
pub const CALLER_ID_METADATA: &str = "x-caller-id";

/// The caller's identity: the `x-caller-id` metadata, else the peer IP address.
pub fn caller_of<T>(request: &tonic::Request<T>) -> String {
    if let Some(caller) = request
        .metadata()
        .get(CALLER_ID_METADATA)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
    {
        return format!("id:{caller}");
    }
    request
        .remote_addr()
        .map_or_else(|| "unknown".to_string(), |addr| format!("ip:{}", addr.ip()))
}
