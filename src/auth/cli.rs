//! `switchboard token keygen` and `switchboard token issue`.

use anyhow::Context;

use crate::config::{IssueConfig, TokenCommand, TokenConfig};

use super::keys::KeyFile;
use super::{token, Claims, Role};

pub fn run(config: TokenConfig) -> anyhow::Result<()> {
    match config.command {
        TokenCommand::Keygen { out } => keygen(&out),
        TokenCommand::Issue(issue) => {
            let (token, claims) = issued(&issue)?;
            // The token alone on stdout (for scripts); what revocation needs on stderr.
            println!("{token}");
            eprintln!(
                "token {} for {} {}, key {}, expires at {} (Unix seconds)",
                claims.jti,
                claims.role.as_str(),
                claims.sub,
                claims.kid,
                claims.exp
            );
            Ok(())
        }
    }
}

fn keygen(out: &std::path::Path) -> anyhow::Result<()> {
    let key = KeyFile::generate()?;
    let mut public_path = out.as_os_str().to_owned();
    public_path.push(".pub");
    let public_path = std::path::PathBuf::from(public_path);
    key.write(out)?;
    key.public_only().write(&public_path)?;
    println!(
        "key {} written to {} (keep it secret: it issues tokens) and {} (give this to the servers: --auth-key-file)",
        key.kid,
        out.display(),
        public_path.display()
    );
    Ok(())
}

/// One token for `issue`, signed now, and its claims.
pub fn issued(issue: &IssueConfig) -> anyhow::Result<(String, Claims)> {
    issue.check()?;
    let key = KeyFile::read(&issue.key_file)?.signing_key()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs() as i64;
    let subject = issue.subject.clone().unwrap_or_else(|| match issue.role {
        Role::Agent => issue.specialists[0].clone(),
        Role::Orchestrator => issue
            .tenant
            .clone()
            .unwrap_or_else(|| "orchestrator".into()),
        Role::Admin => "admin".into(),
    });
    let claims = Claims {
        kid: key.kid.clone(),
        role: issue.role,
        sub: subject,
        specialists: issue.specialists.clone(),
        tenant: issue.tenant.clone(),
        types: issue.types.clone(),
        iat: now,
        exp: now + issue.ttl.as_secs() as i64,
        jti: crate::domain::specialist::Incarnation::mint().map_err(anyhow::Error::msg)?,
    };
    Ok((token::issue(&claims, &key), claims))
}
