//! When the lease sweep may lapse leases. An agent whose heartbeats failed because Redis was
//! unreachable did nothing wrong, so an outage must not cost it its lease:
//! - a replica that lost Redis since its last sweep first sets the deployment's lapse hold (a key
//!   that expires a lease TTL later, in Redis time), and no replica lapses a lease while it exists:
//!   every agent gets a full lease to heartbeat again once Redis is back;
//! - each sweep reads Redis `TIME` first and tells `expire` to lapse nothing if Redis runs it more
//!   than the call timeout after that: a sweep Redis held while it was stalled (SIGSTOP, a long
//!   fork), and ran after the replica gave up on it, lapses nothing.
//!
//! The cost: an agent that really died during an outage is noticed a lease TTL later.

use std::sync::atomic::Ordering;

use redis::Value;
use tracing::info;

use crate::store::StoreResult;

use super::directory::command;
use super::replies::malformed;
use super::RedisStore;

impl RedisStore {
    /// Called wherever a Redis call failed for want of Redis (not for a refusal).
    pub(super) fn note_outage(&self) {
        self.outage_seen.store(true, Ordering::SeqCst);
    }

    /// The Redis time (ms) after which this sweep's `expire` calls lapse nothing; 0 while the
    /// lapse hold is in force.
    pub(super) async fn lapse_deadline(&self) -> StoreResult<i64> {
        let hold = self.keys.lapse_hold();
        if self.outage_seen.swap(false, Ordering::SeqCst) {
            let ttl = self.lease_ttl_ms.max(1).to_string();
            let set: StoreResult<Value> =
                self.query(&command(&["SET", &hold, "1", "PX", &ttl])).await;
            if let Err(error) = set {
                self.note_outage();
                return Err(error);
            }
            info!(
                hold_ms = self.lease_ttl_ms,
                "redis was unreachable: no lease lapses for one lease TTL, so agents can heartbeat again"
            );
        }
        let held: i64 = self.query(&command(&["EXISTS", &hold])).await?;
        if held > 0 {
            return Ok(0);
        }
        let now_ms = match &self.clock {
            Some(clock) => clock.now_ms(),
            None => {
                let (seconds, micros): (i64, i64) = self.query(&command(&["TIME"])).await?;
                if seconds <= 0 {
                    return Err(malformed("TIME"));
                }
                seconds * 1000 + micros / 1000
            }
        };
        Ok(now_ms + self.command_timeout.as_millis() as i64)
    }
}
