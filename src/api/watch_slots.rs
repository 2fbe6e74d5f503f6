//! A bound on the WatchAssignments streams one server keeps open: each holds a forwarder task and
//! its buffer, so without a bound a caller could open them until memory runs out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct WatchSlots {
    max: usize,
    open: Arc<AtomicUsize>,
}

/// One open stream; its slot frees when this drops (the stream's forwarder ended).
#[derive(Debug)]
pub struct WatchSlot(Arc<AtomicUsize>);

impl Drop for WatchSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WatchSlots {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A slot, or None when `max` streams are open.
    pub fn take(&self) -> Option<WatchSlot> {
        let taken = self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| {
                (open < self.max).then_some(open + 1)
            })
            .is_ok();
        taken.then(|| WatchSlot(self.open.clone()))
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_free_when_dropped() {
        let slots = WatchSlots::new(2);
        let first = slots.take().expect("one");
        let _second = slots.take().expect("two");
        assert!(slots.take().is_none());
        drop(first);
        assert!(slots.take().is_some());
    }
}
