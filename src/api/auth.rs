//! Authentication at the door of the four services: the `authorization: Bearer <token>` header
//! checked against the trusted keys (an interceptor, so a refused call never reaches a handler),
//! and the handlers' question "may this caller do that?" (auth::access).

use std::sync::Arc;

use tonic::{Request, Status};

use crate::auth::access::{self, Need};
use crate::auth::keys::VerifyingKeys;
use crate::auth::token::{self, TokenError};
use crate::auth::Caller;

use super::status::ApiError;

/// The header's scheme.
const BEARER: &str = "Bearer ";

/// Puts the caller in each request's extensions, or refuses the call UNAUTHENTICATED.
#[derive(Clone)]
pub struct Authenticator {
    /// None: authentication is off and every caller is `Caller::Anyone`.
    keys: Option<Arc<VerifyingKeys>>,
}

impl Authenticator {
    pub fn new(keys: Option<VerifyingKeys>) -> Self {
        Self {
            keys: keys.map(Arc::new),
        }
    }

    fn caller(
        &self,
        header: Option<&tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    ) -> Result<Caller, ApiError> {
        let Some(keys) = &self.keys else {
            return Ok(Caller::Anyone);
        };
        let Some(header) = header else {
            return Err(ApiError::Unauthenticated(
                "this server requires `authorization: Bearer <token>` (see `switchboard token issue`)"
                    .into(),
            ));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix(BEARER))
            .ok_or_else(|| {
                ApiError::Unauthenticated(
                    "the authorization header must be `Bearer <token>`".into(),
                )
            })?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() as i64);
        token::verify(token.trim(), keys, now)
            .map(Caller::Token)
            .map_err(|error: TokenError| {
                ApiError::Unauthenticated(format!("token refused: {error}"))
            })
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.caller(request.metadata().get("authorization"))?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// The caller the interceptor found (anyone when the request did not pass it: a unit test).
pub fn caller<T>(request: &Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Anyone)
}

/// PERMISSION_DENIED unless the caller may do what `need` says.
pub fn allow(caller: &Caller, need: Need<'_>) -> Result<(), ApiError> {
    access::check(caller, need).map_err(|denied| ApiError::PermissionDenied(denied.0))
}

/// Whether the caller holds an agent token.
pub fn is_agent(caller: &Caller) -> bool {
    matches!(caller, Caller::Token(claims) if claims.role == crate::auth::Role::Agent)
}
