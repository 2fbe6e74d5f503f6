//! The rules as one state machine over plain data: registration, the pick, queues, drains,
//! leases, fencing, dependencies and retention. No I/O, no async, no clock of its own (every step
//! takes the time), and nothing sent: a step's watch events are kept for the caller to take
//! (`take_events`). The embedded store is this machine behind a lock plus the fan-out of its
//! events (store/memory.rs); the simulator drives it through that store. The production store
//! applies the same rules in Lua (lua/), and tests/production/store_model.rs holds the two to each other.
//! The rules themselves: docs/rules.md.

mod commands;
mod index;
#[cfg(test)]
mod invariants;
mod queries;
mod queue;
mod ranked;
mod routing;
mod state;

pub use state::{Machine, MachineEvent};
