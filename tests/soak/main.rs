//! Soak and fault tests: long runs under load and servers stopped, killed or emptied under a
//! deployment, each on its own Redis (and Postgres database). They run one at a time
//! (`make test-soak`, part of `make test`).

#[path = "../net/mod.rs"]
mod net;
#[path = "../pg/mod.rs"]
mod pg;
#[path = "../support/mod.rs"]
mod support;

mod abuse_memory;
mod agent_faults;
mod cluster_faults;
mod fault_scenario;
mod postgres_outage;
mod process_faults;
mod redis_durability;
mod redis_faults;
mod redis_replicas;
mod redis_stall;

/// Flags of a deployment that notices an outage quickly: heartbeats every second, a sweep every
/// 200 ms, a 500 ms store timeout, a breaker that opens after 3 failures and stays open 30 s (the
/// probe, not the open time, must bring calls back).
const OUTAGE_FLAGS: [&str; 10] = [
    "--heartbeat-interval-ms",
    "1000",
    "--sweep-interval-ms",
    "200",
    "--store-timeout-ms",
    "500",
    "--breaker-threshold",
    "3",
    "--breaker-open-ms",
    "30000",
];
