//! Where subtasks this replica has seen live: subtask id -> the type whose slot holds its record.
//! A record never changes slot once it exists (a forward to the fallback type happens before the
//! record is written, and a stale claim is only taken over when no record exists), so a remembered
//! placement never goes stale and saves the directory read on a report, release or cancel. Bounded:
//! when full it is emptied and fills again from the directory.

use std::collections::HashMap;

use parking_lot::Mutex;

/// Placements kept at most (about 100 bytes each).
const CAPACITY: usize = 200_000;

#[derive(Default)]
pub struct Placements {
    known: Mutex<HashMap<String, String>>,
}

impl Placements {
    pub fn get(&self, subtask_id: &str) -> Option<String> {
        self.known.lock().get(subtask_id).cloned()
    }

    pub fn forget(&self, subtask_id: &str) {
        self.known.lock().remove(subtask_id);
    }

    /// Call only once the record was found in (or written to) that slot.
    pub fn remember(&self, subtask_id: &str, slot: &str) {
        let mut known = self.known.lock();
        if known.len() >= CAPACITY {
            known.clear();
        }
        known.insert(subtask_id.to_string(), slot.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_stays_bounded() {
        let placements = Placements::default();
        placements.remember("t1", "backend");
        assert_eq!(placements.get("t1").as_deref(), Some("backend"));
        assert_eq!(placements.get("t2"), None);
        for index in 0..CAPACITY + 10 {
            placements.remember(&format!("x{index}"), "general");
        }
        assert!(placements.known.lock().len() <= CAPACITY);
    }
}
