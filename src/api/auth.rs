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

/// Puts the caller in each request's extensions, or refuses the call UNAUTHENTICATED; from a
/// trusted mesh proxy, also the identity it forwards (`MeshIdentity`).
#[derive(Clone)]
pub struct Authenticator {
    /// None: authentication is off and every caller is `Caller::Anyone`.
    keys: Option<Arc<VerifyingKeys>>,
    mesh: Arc<Mesh>,
}

/// Sidecars whose identity header is believed.
#[derive(Debug, Default)]
pub struct Mesh {
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub identity_header: String,
}

/// The caller's identity as a trusted mesh proxy forwarded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshIdentity(pub String);

impl Authenticator {
    pub fn new(keys: Option<VerifyingKeys>, mesh: Mesh) -> Self {
        Self {
            keys: keys.map(Arc::new),
            mesh: Arc::new(mesh),
        }
    }

    /// The identity a trusted proxy forwards in its header (None from anyone else, or without
    /// a usable one).
    fn mesh_identity(&self, request: &Request<()>) -> Option<MeshIdentity> {
        let peer = request.remote_addr()?.ip();
        if !self.mesh.trusted_proxies.contains(&peer) {
            return None;
        }
        let value = request
            .metadata()
            .get(self.mesh.identity_header.as_str())?
            .to_str()
            .ok()?;
        forwarded_identity(value).map(MeshIdentity)
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
        if let Some(identity) = self.mesh_identity(&request) {
            request.extensions_mut().insert(identity);
        }
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

/// The caller in a forwarded-identity header: Envoy's `x-forwarded-client-cert` elements
/// (`Key=value;...`, the first element's URI=, else DNS=), else the value itself; an id (at most
/// 128 printable bytes) or nothing.
fn forwarded_identity(value: &str) -> Option<String> {
    let first = value.split(',').next().unwrap_or_default();
    let field = |key: &str| {
        first.split(';').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case(key)
                .then(|| value.trim().trim_matches('"').to_string())
        })
    };
    let identity = if first.contains('=') {
        field("URI").or_else(|| field("DNS"))?
    } else {
        first.trim().to_string()
    };
    let usable = !identity.is_empty()
        && identity.len() <= crate::domain::limits::MAX_ID_BYTES
        && crate::domain::limits::is_printable_token(&identity);
    usable.then_some(identity)
}

#[cfg(test)]
mod tests {
    use super::forwarded_identity;

    #[test]
    fn identities_from_a_forwarded_header() {
        assert_eq!(
            forwarded_identity(
                "By=spiffe://mesh/sb;Hash=ab12;URI=spiffe://mesh/ns/a/sa/agent;DNS=agent.a"
            )
            .as_deref(),
            Some("spiffe://mesh/ns/a/sa/agent")
        );
        assert_eq!(
            forwarded_identity("Hash=ab;DNS=agent.example").as_deref(),
            Some("agent.example")
        );
        assert_eq!(forwarded_identity("agent-7").as_deref(), Some("agent-7"));
        assert_eq!(forwarded_identity("Hash=ab12"), None);
        assert_eq!(forwarded_identity(""), None);
        assert_eq!(forwarded_identity("two words"), None);
    }
}
