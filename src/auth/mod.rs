//! Who is calling and what they may do: signed bearer tokens (`token.rs`) checked against the
//! deployment's verification keys (`keys.rs`), and the rules of each role (`access.rs`). No gRPC
//! here: `api/auth.rs` reads the `authorization` header and maps refusals to statuses.

pub mod access;
pub mod cli;
pub mod keys;
pub mod token;

use serde::{Deserialize, Serialize};

/// What a token lets its holder be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Acts for its specialist ids: registers them, heartbeats, watches, reports, releases.
    Agent,
    /// Submits subtasks and cancels and reads those of its tenant (or every tenant's, without
    /// one), limited to some types if the token says so.
    Orchestrator,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Orchestrator => "orchestrator",
            Role::Admin => "admin",
        }
    }
}

/// What a token says, once its signature and expiry are checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The signing key's id.
    pub kid: String,
    pub role: Role,
    /// Who holds it (for logs and per-caller limits).
    pub sub: String,
    /// Agent: the specialist ids it may act for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub specialists: Vec<String>,
    /// Orchestrator: its subtask ids start with `<tenant>/`; none means every subtask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Orchestrator: the specialist types it may submit to; empty means every type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Issued and expires at, seconds since the Unix epoch.
    pub iat: i64,
    pub exp: i64,
    /// The token's own id, for revocation.
    pub jti: String,
}

/// The caller as the API sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Authentication is off (`--auth-key-file` not given): every call is allowed.
    Anyone,
    /// A valid token.
    Token(Claims),
}
