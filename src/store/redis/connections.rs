//! Connections for script calls. deadpool-redis hands out multiplexed connections, but checks each
//! one with UNWATCH + PING on every checkout: one extra round trip per call. A multiplexed
//! connection pipelines concurrent requests by itself, so the store checks out a few connections
//! once, keeps them in slots, and gives every call a clone of one (round robin). After a failure
//! the slots are emptied and filled again from the pool (which checks them) on next use.

use std::sync::atomic::{AtomicUsize, Ordering};

use deadpool_redis::{Connection, Pool};
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

pub struct Connections {
    pool: Pool,
    slots: Vec<Mutex<Option<Connection>>>,
    next: AtomicUsize,
}

/// A connection for one call.
pub struct Lease {
    pub connection: MultiplexedConnection,
}

impl Connections {
    pub fn new(pool: Pool, slots: usize) -> Self {
        Self {
            pool,
            slots: (0..slots.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub async fn get(&self) -> Result<Lease, String> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut held = self.slots[slot].lock().await;
        if held.is_none() {
            *held = Some(self.pool.get().await.map_err(|error| error.to_string())?);
        }
        let connection: &MultiplexedConnection = held.as_ref().expect("filled above");
        Ok(Lease {
            connection: connection.clone(),
        })
    }

    /// Forgets every slot's connection after a connection-level failure or a call that got no
    /// reply in time: when one connection breaks, Redis most likely went away for all of them
    /// (restart, failover), and a connection that did not answer may never answer.
    pub async fn reset(&self) {
        for slot in &self.slots {
            if let Some(connection) = slot.lock().await.take() {
                // Out of the pool too: it may be broken, and the pool would hand it out again.
                let _ = deadpool_redis::Connection::take(connection);
            }
        }
    }
}
