//! `switchboard token`: make a signing key, issue tokens.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::auth::Role;

#[derive(Debug, Args)]
pub struct TokenConfig {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Write a new Ed25519 signing key to FILE (mode 0600) and its public part to FILE.pub (what
    /// servers need: `serve --auth-key-file FILE.pub`); prints the key id.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print one token signed with the key in --key-file.
    Issue(IssueConfig),
}

#[derive(Debug, Args)]
pub struct IssueConfig {
    /// The signing key (from `token keygen`; a .pub file cannot issue).
    #[arg(long)]
    pub key_file: PathBuf,

    #[arg(long, value_enum)]
    pub role: Role,

    /// Agent: a specialist id it may act for (repeat for several).
    #[arg(long = "specialist")]
    pub specialists: Vec<String>,

    /// Orchestrator: its subtask ids must start with `<tenant>/` (none: every subtask).
    #[arg(long)]
    pub tenant: Option<String>,

    /// Orchestrator: a specialist type it may submit to (repeat; none: every type).
    #[arg(long = "type")]
    pub types: Vec<String>,

    /// Who holds the token (logs, per-caller limits) [default: the first specialist, the tenant,
    /// or the role].
    #[arg(long)]
    pub subject: Option<String>,

    /// How long it is valid: a number with s, m, h or d (at most 365d).
    #[arg(long, value_parser = parse_ttl)]
    pub ttl: std::time::Duration,
}

/// "90s", "30m", "24h", "7d".
pub fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let count: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number with s, m, h or d, such as 24h"))?;
    let seconds = match unit {
        "s" => count,
        "m" => count.saturating_mul(60),
        "h" => count.saturating_mul(3_600),
        "d" => count.saturating_mul(86_400),
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    if seconds == 0 || seconds > 365 * 86_400 {
        return Err(format!("{text:?}: must be between 1s and 365d"));
    }
    Ok(std::time::Duration::from_secs(seconds))
}

impl IssueConfig {
    /// The role's requirements: an agent names its specialists, only an orchestrator has a
    /// tenant or types.
    pub fn check(&self) -> Result<(), super::ConfigError> {
        let fail = |message: &str| Err(super::ConfigError(message.into()));
        match self.role {
            Role::Agent if self.specialists.is_empty() => {
                fail("--role agent needs --specialist (the ids it may act for)")
            }
            Role::Agent if self.tenant.is_some() || !self.types.is_empty() => {
                fail("--tenant and --type are for --role orchestrator")
            }
            Role::Orchestrator | Role::Admin if !self.specialists.is_empty() => {
                fail("--specialist is for --role agent")
            }
            Role::Admin if self.tenant.is_some() || !self.types.is_empty() => {
                fail("--role admin may do everything: --tenant and --type do not apply")
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("24h").unwrap().as_secs(), 86_400);
        assert_eq!(parse_ttl("90s").unwrap().as_secs(), 90);
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("366d").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("10w").is_err());
        assert!(parse_ttl("").is_err());
    }
}
