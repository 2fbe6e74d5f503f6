//! One type's queue on the embedded store: the order (priority, then arrival) with ranks that need
//! no walk, the same entries by what can serve them (nothing required, or each required
//! capability), so a freed specialist looks only at entries it could take, and the enqueue times
//! for the oldest wait. The production store keeps the same indexes in Redis (lua/includes/queue.lua).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::ranked::RankedSet;
use super::state::QueueKey;

#[derive(Debug, Default)]
pub(super) struct TypeQueue {
    order: RankedSet<QueueKey, String>,
    /// Entries that need no capability.
    any: BTreeMap<QueueKey, String>,
    /// Capability -> the entries that need it.
    by_capability: HashMap<String, BTreeMap<QueueKey, String>>,
    /// (enqueued at, key): the oldest wait.
    by_age: BTreeSet<(i64, QueueKey)>,
}

impl TypeQueue {
    pub fn insert(&mut self, key: QueueKey, subtask_id: &str, required: &[String], enqueued: i64) {
        self.order.insert(key, subtask_id.to_string());
        if required.is_empty() {
            self.any.insert(key, subtask_id.to_string());
        }
        for capability in required {
            self.by_capability
                .entry(capability.clone())
                .or_default()
                .insert(key, subtask_id.to_string());
        }
        self.by_age.insert((enqueued, key));
    }

    pub fn remove(&mut self, key: QueueKey, required: &[String], enqueued: i64) {
        self.order.remove(&key);
        self.any.remove(&key);
        for capability in required {
            if let Some(entries) = self.by_capability.get_mut(capability) {
                entries.remove(&key);
                if entries.is_empty() {
                    self.by_capability.remove(capability);
                }
            }
        }
        self.by_age.remove(&(enqueued, key));
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// 1-based position of a queued entry.
    pub fn position(&self, key: QueueKey) -> u64 {
        self.order.rank(&key) as u64 + 1
    }

    /// Entries in queue order after `after` (from the head for None).
    pub fn iter_after<'a>(
        &'a self,
        after: Option<&QueueKey>,
    ) -> impl Iterator<Item = &'a (QueueKey, String)> + 'a {
        self.order.iter_after(after)
    }

    pub fn get(&self, key: QueueKey) -> Option<&String> {
        self.order.get(&key)
    }

    pub fn oldest_enqueued(&self) -> Option<i64> {
        self.by_age.first().map(|(enqueued, _)| *enqueued)
    }

    /// The entries a specialist with `capabilities` could possibly serve, as the indexes to walk:
    /// those that need nothing, and those that need one of its capabilities.
    pub fn indexes_for<'a>(
        &'a self,
        capabilities: &[String],
    ) -> Vec<&'a BTreeMap<QueueKey, String>> {
        let mut indexes = vec![&self.any];
        for capability in capabilities {
            if let Some(entries) = self.by_capability.get(capability) {
                indexes.push(entries);
            }
        }
        indexes
    }
}
