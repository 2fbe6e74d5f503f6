//! The conformance suite: the API's behaviour, one module per area, through a real tonic server
//! and generated clients. It runs against the store `SWITCHBOARD_TEST_STORE` names: the embedded
//! store by default (`cargo test`), the shared Redis with `redis` (a namespace per test, removed
//! when the test ends), and a private Redis Cluster under `scripts/with-cluster.sh`.

#[path = "../support/mod.rs"]
mod support;

mod auth;
mod concurrency;
mod dependencies;
mod fencing;
mod incarnations;
mod queue;
mod registration;
mod scoring;
mod server;
mod tls;
mod validation;
mod watch;
