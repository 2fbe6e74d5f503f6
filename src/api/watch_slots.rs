//! Bounds on the WatchAssignments streams one server keeps open, in all and per caller: each holds
//! a forwarder task and its buffer, so without a bound a caller could open them until memory runs
//! out, or take every place from the others.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

#[derive(Debug)]
pub struct WatchSlots {
    max: usize,
    per_caller: usize,
    open: Arc<Mutex<Open>>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    /// Streams per caller; a caller with none has no entry (the map is bounded by `max`).
    by_caller: HashMap<String, usize>,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Server(usize),
    Caller(usize),
}

/// One open stream; its slot frees when this drops (the stream's forwarder ended).
#[derive(Debug)]
pub struct WatchSlot {
    open: Arc<Mutex<Open>>,
    caller: String,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        open.total -= 1;
        if let Some(count) = open.by_caller.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                open.by_caller.remove(&self.caller);
            }
        }
    }
}

impl WatchSlots {
    pub fn new(max: usize, per_caller: usize) -> Self {
        Self {
            max,
            per_caller,
            open: Arc::default(),
        }
    }

    /// A slot for `caller`, or which bound is reached.
    pub fn take(&self, caller: &str) -> Result<WatchSlot, Full> {
        let mut open = self.open.lock();
        if open.total >= self.max {
            return Err(Full::Server(self.max));
        }
        let count = open.by_caller.get(caller).copied().unwrap_or(0);
        if count >= self.per_caller {
            return Err(Full::Caller(self.per_caller));
        }
        open.total += 1;
        open.by_caller.insert(caller.to_string(), count + 1);
        Ok(WatchSlot {
            open: Arc::clone(&self.open),
            caller: caller.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_free_when_dropped_in_all_and_per_caller() {
        let slots = WatchSlots::new(3, 2);
        let first = slots.take("a").expect("one");
        let _second = slots.take("a").expect("two");
        assert_eq!(slots.take("a").unwrap_err(), Full::Caller(2));
        let _third = slots.take("b").expect("b has its own");
        assert_eq!(slots.take("c").unwrap_err(), Full::Server(3));
        drop(first);
        assert!(slots.take("a").is_ok());
        assert!(slots.open.lock().by_caller.len() <= 2);
    }
}
