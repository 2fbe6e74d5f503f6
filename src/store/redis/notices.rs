//! Dependents in other slots. A function that finishes a subtask settles its dependents in its own
//! slot and appends "<type> <dependent> <dependency> <state>" for each one elsewhere to its slot's
//! `notify` list; the store then delivers each entry (`settle` in the dependent's slot, which may
//! leave notices of its own) and removes it. Delivering twice does nothing more, so a replica that
//! dies between the two steps loses nothing: the lease sweeper delivers what is left.

use std::collections::VecDeque;

use tracing::{error, warn};

use crate::store::{StoreError, StoreResult};

use super::call::{About, Args, Target};
use super::directory::command;
use super::library::Function;
use super::RedisStore;

/// Notices read per round trip.
const NOTICE_BATCH: &str = "99";

impl RedisStore {
    /// Delivers the notices waiting in a slot (and those their delivery leaves). A failure is
    /// logged: the notices stay listed for the next sweep.
    pub(super) async fn deliver_notices(&self, slot: &str) {
        if let Err(failure) = self.try_deliver_notices(slot).await {
            warn!(%failure, slot, "dependency notices left for the next sweep");
        }
    }

    /// After a call by id on one Redis (the store does not know its slot): every type's notices.
    pub(super) async fn deliver_all_notices(&self) {
        for slot in &self.types {
            self.deliver_notices(slot).await;
        }
    }

    /// The same, failing on the first Redis failure (the notices stay listed).
    pub(super) async fn try_deliver_notices(&self, first: &str) -> StoreResult<()> {
        let mut slots = VecDeque::from([first.to_string()]);
        while let Some(slot) = slots.pop_front() {
            let list = self.keys.type_key(&slot, super::keys::slot::NOTIFY);
            loop {
                let entries: Vec<String> = self
                    .query(&command(&["LRANGE", &list, "0", NOTICE_BATCH]))
                    .await?;
                if entries.is_empty() {
                    break;
                }
                for entry in entries {
                    let parts: Vec<&str> = entry.split(' ').collect();
                    if let [target, dependent, dependency, state] = parts[..] {
                        let reply = self
                            .fcall_raw(
                                Function::Settle,
                                Target::Slot(target),
                                &Args::new().text(dependent).text(dependency).text(state),
                                About::default(),
                            )
                            .await;
                        match reply {
                            Ok(reply) => {
                                if reply.notices && !slots.iter().any(|known| known == target) {
                                    slots.push_back(target.to_string());
                                }
                            }
                            Err(StoreError::Unavailable(message)) => {
                                return Err(StoreError::Unavailable(message));
                            }
                            Err(failure) => {
                                error!(%failure, %entry, "dependency notice refused; dropped");
                            }
                        }
                    } else {
                        error!(%entry, "dependency notice unreadable; dropped");
                    }
                    let _: i64 = self.query(&command(&["LREM", &list, "1", &entry])).await?;
                }
            }
        }
        Ok(())
    }
}
