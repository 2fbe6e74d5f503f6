//! The production store's own tests, against the shared Redis (127.0.0.1:6379, a namespace per
//! test) and Postgres (127.0.0.1:5432, a database per test): the Lua library piece by piece, Redis
//! Cluster slots, the write-behind to Postgres and its outages, migrations, the history tables,
//! and the store model (random call sequences on both stores, compared). `make test-services`.

#[path = "../net/mod.rs"]
mod net;
#[path = "../pg/mod.rs"]
mod pg;
#[path = "../support/mod.rs"]
mod support;

mod postgres;
mod postgres_batches;
mod postgres_checkpoints;
mod postgres_history;
mod postgres_ordering;
mod redis_library;
mod redis_postgres;
mod redis_slots;
mod store_model;
