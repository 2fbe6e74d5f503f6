//! Specialists: what they register, what they say in heartbeats, what the store knows of them.

use std::collections::BTreeMap;

/// What a specialist says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Availability {
    Online,
    Idle,
    Busy,
    Away,
    Offline,
}

impl Availability {
    pub const ALL: [Availability; 5] = [
        Availability::Online,
        Availability::Idle,
        Availability::Busy,
        Availability::Away,
        Availability::Offline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Online => "online",
            Availability::Idle => "idle",
            Availability::Busy => "busy",
            Availability::Away => "away",
            Availability::Offline => "offline",
        }
    }

    /// The availability `as_str` names.
    pub fn parse(text: &str) -> Option<Availability> {
        Availability::ALL
            .into_iter()
            .find(|availability| availability.as_str() == text)
    }
}

/// What Register asks for, validated and normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// None: the store mints one.
    pub specialist_id: Option<String>,
    pub specialist_type: String,
    /// Sorted, without duplicates.
    pub capabilities: Vec<String>,
    /// None: the policy's default.
    pub max_concurrency: Option<u32>,
    pub labels: BTreeMap<String, String>,
    pub availability: Availability,
    /// Which incarnation the call is for (see `Incarnation`).
    pub incarnation: Incarnation,
}

/// What a Register says about the process's session with the id.
#[derive(Debug, Clone, PartialEq)]
pub enum Incarnation {
    /// The caller's live incarnation: update the registration, keep the incarnation and its work.
    Keep(String),
    /// Start this new incarnation (minted by the caller of the store). With `take_over`, even
    /// while another incarnation's lease is live.
    Start {
        incarnation: String,
        take_over: bool,
    },
}

/// Bytes of randomness in an incarnation (written as hex).
const INCARNATION_BYTES: usize = 12;

impl Incarnation {
    /// A new incarnation id: random, so no other process can guess or reuse one.
    pub fn mint() -> Result<String, String> {
        let mut bytes = [0u8; INCARNATION_BYTES];
        getrandom::fill(&mut bytes)
            .map_err(|error| format!("no randomness for an incarnation: {error}"))?;
        Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
    }
}

/// A specialist as the store knows it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Specialist {
    pub specialist_id: String,
    pub specialist_type: String,
    pub capabilities: Vec<String>,
    pub max_concurrency: u32,
    pub labels: BTreeMap<String, String>,
    pub availability: Availability,
    pub active_assignments: u32,
    pub registered_at_ms: i64,
    pub last_heartbeat_at_ms: i64,
    pub lease_expires_at_ms: i64,
    pub performance: f64,
}

/// How many of `required` a specialist with `capabilities` (sorted) has.
pub fn matched_capabilities(capabilities: &[String], required: &[String]) -> usize {
    required
        .iter()
        .filter(|wanted| capabilities.binary_search(wanted).is_ok())
        .count()
}

/// Whether a specialist with `capabilities` (sorted) could ever serve a subtask needing `required`.
pub fn capabilities_suffice(
    capabilities: &[String],
    required: &[String],
    require_all: bool,
) -> bool {
    if required.is_empty() {
        return true;
    }
    let matched = matched_capabilities(capabilities, required);
    if require_all {
        matched == required.len()
    } else {
        matched > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn any_or_all_capabilities() {
        let have = caps(&["css", "react"]);
        assert!(capabilities_suffice(&have, &caps(&["react", "vue"]), false));
        assert!(!capabilities_suffice(&have, &caps(&["react", "vue"]), true));
        assert!(capabilities_suffice(&have, &caps(&["css", "react"]), true));
        assert!(!capabilities_suffice(&have, &caps(&["go"]), false));
        assert!(capabilities_suffice(&have, &[], true));
    }
}
