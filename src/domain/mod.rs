//! Pure types and rules of assignment: no transport, no storage, no I/O.

pub mod error;
pub mod history;
pub mod learned;
pub mod limits;
pub mod performance;
pub mod policy;
pub mod reads;
pub mod rules;
pub mod scoring;
pub mod specialist;
pub mod subtask;
