//! The rules a deployment's slots run under. Each type's `meta` hash holds the routing policy as
//! flat fields and a fingerprint of policy and library; every function call carries this
//! replica's fingerprint and is refused when the slot's differs, so replicas with other rules (or
//! another build) never mix silently. A slot never set up takes this replica's rules on first use.
//! At start a replica also checks the deployment's live replicas (`sb:{<namespace>}:replicas`,
//! refreshed every few seconds): if the slots run other rules and no replica running them is
//! alive, it takes them over and refiles every specialist under its weights; if one is alive,
//! it refuses to start.

use std::time::Duration;

use redis::Value;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::domain::policy::RoutingPolicy;
use crate::store::clock::{Clock, SystemClock};
use crate::store::{StoreError, StoreResult};

use super::directory::command;
use super::library::{Function, Library};
use super::replies::text;
use super::RedisStore;

/// How long a replica counts as alive after its last refresh.
pub const LIVENESS_TTL: Duration = Duration::from_secs(10);
/// How often a running replica refreshes its liveness.
pub const LIVENESS_EVERY: Duration = Duration::from_secs(2);

/// The policy fields every slot's meta holds (besides `fp` and `type`), and their fingerprint.
#[derive(Debug, Clone)]
pub struct SlotPolicy {
    fields: Vec<(&'static str, String)>,
    pub fingerprint: String,
}

impl SlotPolicy {
    /// `outbox_bound` 0: no outbox (no Postgres).
    pub fn new(
        policy: &RoutingPolicy,
        library: &Library,
        outbox_bound: u64,
        channel: &str,
        namespace: &str,
    ) -> Self {
        let weights = policy.weights;
        let fields = vec![
            ("fb", policy.fallback_type.clone().unwrap_or_default()),
            ("wc", weights.capability.to_string()),
            ("wl", weights.load.to_string()),
            ("wa", weights.availability.to_string()),
            ("wp", weights.performance.to_string()),
            ("dmc", policy.default_max_concurrency.to_string()),
            ("ttl", policy.lease_ttl_ms.to_string()),
            ("ma", policy.max_attempts.to_string()),
            ("ob", outbox_bound.to_string()),
            ("ch", channel.to_string()),
            ("ret", policy.retention_ms.to_string()),
            ("ns", namespace.to_string()),
        ];
        let mut hasher = Sha256::new();
        hasher.update(library.hash.as_bytes());
        for (name, value) in &fields {
            hasher.update(b"\n");
            hasher.update(name.as_bytes());
            hasher.update(b"=");
            hasher.update(value.as_bytes());
        }
        let digest = hasher.finalize();
        let fingerprint = digest[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Self {
            fields,
            fingerprint,
        }
    }
}

/// What setting up a slot found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adoption {
    /// The slot runs these rules already.
    Same,
    /// The slot was new; it runs these rules now.
    New,
    /// The slot runs other rules (this fingerprint); nothing was written.
    Other(String),
    /// The slot ran other rules (this fingerprint) and now runs these, its specialists refiled.
    Replaced(String),
}

impl RedisStore {
    /// Sets up one type's slot with this replica's rules; `replace` takes over other rules.
    pub(super) async fn adopt_slot(&self, slot: &str, replace: bool) -> StoreResult<Adoption> {
        self.adopt_meta(&self.keys.type_meta(slot), slot, replace)
            .await
    }

    /// `adopt_slot` for the slot of a meta key a function named.
    pub(super) async fn adopt_slot_meta(&self, meta: &str, replace: bool) -> StoreResult<()> {
        let slot = self
            .keys
            .type_of_meta(meta)
            .ok_or_else(|| StoreError::Internal(format!("not a slot's meta key: {meta}")))?;
        match self.adopt_meta(meta, &slot, replace).await? {
            Adoption::Other(found) => Err(self.policy_conflict(&found)),
            _ => Ok(()),
        }
    }

    async fn adopt_meta(&self, meta: &str, slot: &str, replace: bool) -> StoreResult<Adoption> {
        let mut adopt = redis::cmd("FCALL");
        adopt
            .arg(self.library.function(Function::Adopt))
            .arg(1)
            .arg(meta)
            .arg(&self.slot_policy.fingerprint)
            .arg(slot);
        for (_, value) in &self.slot_policy.fields {
            adopt.arg(value);
        }
        adopt.arg(if replace { "1" } else { "0" });
        let mut loaded = false;
        let reply: Value = loop {
            match self.roundtrip(&adopt).await {
                Err(StoreError::Internal(message))
                    if message.contains("Function not found") && !loaded =>
                {
                    self.load_library().await?;
                    loaded = true;
                }
                other => break other?,
            }
        };
        let items = super::replies::items(&reply)?;
        let outcome = items.get(1).map(text).transpose()?.unwrap_or_default();
        let found = items.get(2).map(text).transpose()?.unwrap_or_default();
        Ok(match outcome.as_str() {
            "same" => Adoption::Same,
            "new" => Adoption::New,
            "other" => Adoption::Other(found),
            "adopted" => Adoption::Replaced(found),
            _ => return Err(super::replies::malformed("adopt")),
        })
    }

    pub(super) fn policy_conflict(&self, found: &str) -> StoreError {
        StoreError::Unavailable(format!(
            "redis namespace {} runs other rules (fingerprint {found}, this replica's is {}): \
             another policy or another build serves it; give every replica the same flags and \
             build, or use another --redis-namespace",
            self.keys.namespace(),
            self.slot_policy.fingerprint
        ))
    }

    /// Start-up: the library loaded, this replica counted alive, every configured type's slot
    /// running this replica's rules. Slots running other rules are taken over only when no
    /// replica running them is alive (waiting up to the liveness TTL for a stopped one to
    /// expire); otherwise start-up fails with a message naming both fingerprints.
    pub async fn prepare(&self) -> StoreResult<()> {
        self.load_library().await?;
        self.keep_alive().await?;
        for slot in &self.types {
            let found = match self.adopt_slot(slot, false).await? {
                Adoption::Other(found) => found,
                _ => continue,
            };
            let deadline = tokio::time::Instant::now() + LIVENESS_TTL + Duration::from_secs(1);
            while self.others_alive(&found).await? {
                if tokio::time::Instant::now() >= deadline {
                    return Err(self.policy_conflict(&found));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if let Adoption::Replaced(previous) = self.adopt_slot(slot, true).await? {
                warn!(
                    specialist_type = %slot,
                    previous = %previous,
                    current = %self.slot_policy.fingerprint,
                    "no replica runs the slot's earlier rules any more: took it over and refiled its specialists"
                );
            }
        }
        info!(fingerprint = %self.slot_policy.fingerprint, library = %self.library.name, "redis slots set up");
        Ok(())
    }

    /// Counts this replica alive for `LIVENESS_TTL` more (and forgets replicas that expired).
    pub async fn keep_alive(&self) -> StoreResult<()> {
        let now = SystemClock.now_ms();
        let key = self.keys.replicas();
        let expires = now + LIVENESS_TTL.as_millis() as i64;
        let _: i64 = self
            .query(&command(&[
                "ZADD",
                &key,
                &expires.to_string(),
                &self.replica_member(),
            ]))
            .await?;
        let _: i64 = self
            .query(&command(&[
                "ZREMRANGEBYSCORE",
                &key,
                "-inf",
                &format!("({now}"),
            ]))
            .await?;
        Ok(())
    }

    /// This replica stops counting as alive (a clean shutdown).
    pub async fn leave(&self) -> StoreResult<()> {
        let _: i64 = self
            .query(&command(&[
                "ZREM",
                &self.keys.replicas(),
                &self.replica_member(),
            ]))
            .await?;
        Ok(())
    }

    fn replica_member(&self) -> String {
        format!("{} {}", self.slot_policy.fingerprint, self.replica_id)
    }

    /// Whether a live replica runs under `fingerprint`.
    async fn others_alive(&self, fingerprint: &str) -> StoreResult<bool> {
        let now = SystemClock.now_ms();
        let live: Vec<String> = self
            .query(&command(&[
                "ZRANGE",
                &self.keys.replicas(),
                &format!("({now}"),
                "+inf",
                "BYSCORE",
            ]))
            .await?;
        Ok(live
            .iter()
            .any(|member| member.split(' ').next() == Some(fingerprint)))
    }
}
