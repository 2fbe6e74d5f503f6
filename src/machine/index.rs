//! Indexes that keep an Assign from scanning every specialist of a type: who has room, ordered by
//! the best score they could reach, and who has which capability.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use crate::domain::scoring::score_upper_bound;
use crate::domain::specialist::Availability;

use super::state::Machine;

/// A specialist with room, in pick order: best possible score first (non-negative, so its bits sort
/// like it), then the tie-break of `Rank`: fewer active, assigned longest ago, smaller id.
pub(super) type FreeKey = (Reverse<u64>, u32, u64, String);

#[derive(Debug, Default)]
pub(super) struct SpecialistIndex {
    /// Type -> specialists not OFFLINE and below max_concurrency, best possible score first.
    /// Lapsed leases stay listed until the sweep; the pick checks the lease itself.
    pub free: HashMap<String, BTreeSet<FreeKey>>,
    /// Specialist id -> its type and current entry in `free`.
    free_keys: HashMap<String, (String, FreeKey)>,
    /// Type -> capability -> specialists of that type that have it.
    by_capability: HashMap<String, HashMap<String, BTreeSet<String>>>,
}

impl Machine {
    /// Re-files a specialist in the free index after its load, availability or limit changed (or it left).
    pub(super) fn reindex_free(&mut self, specialist_id: &str) {
        if let Some((specialist_type, key)) = self.index.free_keys.remove(specialist_id) {
            if let Some(free) = self.index.free.get_mut(&specialist_type) {
                free.remove(&key);
            }
        }
        let Some(specialist) = self.specialists.get(specialist_id) else {
            return;
        };
        let has_room = specialist.availability != Availability::Offline
            && specialist.active.len() < specialist.max_concurrency as usize;
        if !has_room {
            return;
        }
        let active = specialist.active.len() as u32;
        let bound = score_upper_bound(
            &self.policy.weights,
            active,
            specialist.availability,
            self.performance_factor(specialist_id),
        );
        debug_assert!(bound >= 0.0);
        let key: FreeKey = (
            Reverse(bound.to_bits()),
            active,
            specialist.last_assigned_seq,
            specialist_id.to_string(),
        );
        let specialist_type = specialist.specialist_type.clone();
        self.index
            .free
            .entry(specialist_type.clone())
            .or_default()
            .insert(key.clone());
        self.index
            .free_keys
            .insert(specialist_id.to_string(), (specialist_type, key));
    }

    /// Moves a specialist's capabilities in the capability index from `old` to `new`.
    pub(super) fn reindex_capabilities(
        &mut self,
        specialist_type: &str,
        specialist_id: &str,
        old: &[String],
        new: &[String],
    ) {
        let by_capability = self
            .index
            .by_capability
            .entry(specialist_type.to_string())
            .or_default();
        for capability in old {
            if let Some(holders) = by_capability.get_mut(capability) {
                holders.remove(specialist_id);
                if holders.is_empty() {
                    by_capability.remove(capability);
                }
            }
        }
        for capability in new {
            by_capability
                .entry(capability.clone())
                .or_default()
                .insert(specialist_id.to_string());
        }
    }

    /// Whether any registered specialist of the type (whatever its availability) could serve
    /// a subtask needing `required`.
    pub(super) fn any_capable(
        &self,
        specialist_type: &str,
        required: &[String],
        require_all: bool,
    ) -> bool {
        let registered = self
            .specialists_by_type
            .get(specialist_type)
            .is_some_and(|ids| !ids.is_empty());
        if required.is_empty() || !registered {
            return registered;
        }
        let Some(by_capability) = self.index.by_capability.get(specialist_type) else {
            return false;
        };
        if !require_all {
            return required
                .iter()
                .any(|capability| by_capability.contains_key(capability));
        }
        // Every holder of all of them is among the holders of the rarest one.
        let mut rarest: Option<&BTreeSet<String>> = None;
        for capability in required {
            let Some(holders) = by_capability.get(capability) else {
                return false;
            };
            if rarest.is_none_or(|current| holders.len() < current.len()) {
                rarest = Some(holders);
            }
        }
        rarest.into_iter().flatten().any(|specialist_id| {
            self.specialists
                .get(specialist_id)
                .is_some_and(|specialist| {
                    required
                        .iter()
                        .all(|capability| specialist.capabilities.binary_search(capability).is_ok())
                })
        })
    }

    /// Free slots of a type's specialists that can take work now.
    pub(super) fn free_slots_of_type(&self, specialist_type: &str, now_ms: i64) -> u64 {
        self.index
            .free
            .get(specialist_type)
            .into_iter()
            .flatten()
            .filter_map(|(_, _, _, specialist_id)| self.specialists.get(specialist_id))
            .map(|specialist| specialist.free_slots(now_ms))
            .sum()
    }
}
