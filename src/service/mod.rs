//! The application layer: what one call does around the store's single step, shared by the gRPC
//! handlers (which only validate, convert and authorize) and the simulator.
//!
//! - `assigner`: a new subtask (candidates -> learned factors -> the atomic pick) and a completion
//!   report (the store's step, then what the learned scorer learns from it).

pub mod assigner;

pub use assigner::{Assigner, FactorSource};
