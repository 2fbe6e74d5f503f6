//! What only the production store (Redis + Postgres) has, where the two meet:
//! - `relay`: moves the Lua scripts' history events from each type's Redis outbox to Postgres.
//! - `pending`: subtasks accepted into Postgres while Redis is unreachable, moved into Redis later.
//! - `rebuild`: an empty (fresh or flushed) Redis rebuilt from Postgres at start.
//!
//! The SQL these run lives in `store/postgres/`; the Redis calls in `store/redis/`.

pub mod pending;
pub mod rebuild;
pub mod relay;

pub use pending::PendingStore;
