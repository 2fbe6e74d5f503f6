//! Soak and fault tests: long runs under load and servers stopped, killed or emptied under a
//! deployment, each on its own Redis (and Postgres database). They run one at a time
//! (`make test-soak`, part of `make test`).

#[path = "../net/mod.rs"]
mod net;
#[path = "../pg/mod.rs"]
mod pg;
#[path = "../support/mod.rs"]
mod support;

mod fault_scenario;
mod redis_durability;
mod redis_faults;
mod redis_replicas;
mod redis_stall;
