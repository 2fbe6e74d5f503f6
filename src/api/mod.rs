//! gRPC adapters: one file per proto service over the `Store` trait, plus conversion and status mapping.

pub mod assign;
pub mod auth;
pub mod convert;
mod identity;
pub mod performance;
pub mod queue;
pub mod rate_limit;
pub mod register;
pub mod status;
pub mod watch;
pub mod watch_slots;

use crate::api::status::ApiError;
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
    /// The bound on open WatchAssignments streams.
    pub watch_slots: Arc<watch_slots::WatchSlots>,
}

/// Metadata key naming the caller for per-caller rate limits.
pub const CALLER_ID_METADATA: &str = "x-caller-id";

/// The caller's identity for per-caller limits: its token's role and subject (authentication on),
/// else the identity a trusted mesh proxy forwards (`--trusted-proxy`), else the identity in its
/// TLS client certificate (mutual TLS), else the `x-caller-id` metadata
/// (an id: printable, at most 128 bytes), else the peer IP address.
pub fn caller_of<T>(request: &tonic::Request<T>) -> Result<String, ApiError> {
    if let crate::auth::Caller::Token(claims) = auth::caller(request) {
        return Ok(format!("token:{}:{}", claims.role.as_str(), claims.sub));
    }
    if let Some(auth::MeshIdentity(identity)) = request.extensions().get::<auth::MeshIdentity>() {
        return Ok(format!("mesh:{identity}"));
    }
    if let Some(certificates) = request.peer_certs() {
        if let Some(identity) = certificates
            .first()
            .and_then(|leaf| identity::from_certificate(leaf))
        {
            return Ok(format!("cert:{identity}"));
        }
    }
    if let Some(value) = request.metadata().get(CALLER_ID_METADATA) {
        let caller = value.to_str().unwrap_or_default();
        if caller.is_empty()
            || caller.len() > crate::domain::limits::MAX_ID_BYTES
            || !crate::domain::limits::is_printable_token(caller)
        {
            return Err(ApiError::invalid(
                CALLER_ID_METADATA,
                "must be 1..=128 printable bytes without whitespace",
            ));
        }
        return Ok(format!("id:{caller}"));
    }
    Ok(request
        .remote_addr()
        .map_or_else(|| "unknown".to_string(), |addr| format!("ip:{}", addr.ip())))
}
