//! Connections for the store's calls, to one Redis or to a Redis Cluster.
//!
//! One Redis: deadpool-redis hands out multiplexed connections, but checks each one with
//! UNWATCH + PING on every checkout: one extra round trip per call. A multiplexed connection
//! pipelines concurrent requests by itself, so the store checks out a few connections once, keeps
//! them in slots, and gives every call a clone of one (round robin). After a failure the slots are
//! emptied and filled again from the pool (which checks them) on next use.
//!
//! A Redis Cluster: one cluster connection (multiplexed to every node, cloned per call) routes
//! each command by its first key, so a script goes to the node serving its type's slot, and
//! follows MOVED/ASK when slots move. After a failure it is dropped and made again.

use std::sync::atomic::{AtomicUsize, Ordering};

use deadpool_redis::{Config as PoolConfig, Pool, Runtime};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::Mutex;

/// Where the store's Redis is: one server, or a cluster given by some of its nodes.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Single(String),
    Cluster(Vec<String>),
}

impl Endpoint {
    /// `url`: `redis://host:port/db`; with `cluster`, a comma-separated list of node URLs.
    pub fn parse(url: &str, cluster: bool) -> Self {
        if cluster {
            Endpoint::Cluster(
                url.split(',')
                    .map(str::trim)
                    .filter(|node| !node.is_empty())
                    .map(String::from)
                    .collect(),
            )
        } else {
            Endpoint::Single(url.to_string())
        }
    }

    /// A plain client of one server (for pub/sub: a cluster delivers PUBLISH on every node).
    pub fn first_node_client(&self) -> redis::RedisResult<redis::Client> {
        match self {
            Endpoint::Single(url) => redis::Client::open(url.as_str()),
            Endpoint::Cluster(nodes) => match nodes.first() {
                Some(node) => redis::Client::open(node.as_str()),
                None => Err(redis::RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "--redis-url names no cluster node",
                ))),
            },
        }
    }

    /// Makes a connection of its own (the outbox relays' blocking reads).
    pub async fn connect(&self) -> redis::RedisResult<Connection> {
        match self {
            Endpoint::Single(url) => Ok(Connection::Single(
                redis::Client::open(url.as_str())?
                    .get_multiplexed_async_connection()
                    .await?,
            )),
            Endpoint::Cluster(nodes) => Ok(Connection::Cluster(
                ClusterClient::new(nodes.clone())?
                    .get_async_connection()
                    .await?,
            )),
        }
    }
}

/// A connection for one call: to the server, or to the cluster (routed per command).
#[derive(Clone)]
pub enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            Connection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}

enum Backend {
    Pool {
        pool: Pool,
        slots: Vec<Mutex<Option<deadpool_redis::Connection>>>,
        next: AtomicUsize,
    },
    Cluster {
        client: Box<ClusterClient>,
        connection: Mutex<Option<ClusterConnection>>,
    },
}

pub struct Connections {
    backend: Backend,
}

/// A connection for one call.
pub struct Lease {
    pub connection: Connection,
}

impl Connections {
    /// `pool_size`: most pooled connections to one server (a quarter are kept in slots).
    pub fn new(endpoint: &Endpoint, pool_size: usize) -> Result<Self, String> {
        let backend = match endpoint {
            Endpoint::Single(url) => {
                let mut config = PoolConfig::from_url(url.clone());
                config.pool = Some(deadpool_redis::PoolConfig::new(pool_size));
                let pool = config
                    .create_pool(Some(Runtime::Tokio1))
                    .map_err(|error| error.to_string())?;
                Backend::Pool {
                    pool,
                    slots: (0..pool_size.div_ceil(4).max(1))
                        .map(|_| Mutex::new(None))
                        .collect(),
                    next: AtomicUsize::new(0),
                }
            }
            Endpoint::Cluster(nodes) => Backend::Cluster {
                client: Box::new(
                    ClusterClient::new(nodes.clone()).map_err(|error| error.to_string())?,
                ),
                connection: Mutex::new(None),
            },
        };
        Ok(Self { backend })
    }

    pub async fn get(&self) -> Result<Lease, String> {
        match &self.backend {
            Backend::Pool { pool, slots, next } => {
                let slot = next.fetch_add(1, Ordering::Relaxed) % slots.len();
                let mut held = slots[slot].lock().await;
                if held.is_none() {
                    *held = Some(pool.get().await.map_err(|error| error.to_string())?);
                }
                let connection: &MultiplexedConnection = held.as_ref().expect("filled above");
                Ok(Lease {
                    connection: Connection::Single(connection.clone()),
                })
            }
            Backend::Cluster { client, connection } => {
                let mut held = connection.lock().await;
                if held.is_none() {
                    *held = Some(
                        client
                            .get_async_connection()
                            .await
                            .map_err(|error| error.to_string())?,
                    );
                }
                Ok(Lease {
                    connection: Connection::Cluster(held.as_ref().expect("filled above").clone()),
                })
            }
        }
    }

    /// Forgets every kept connection after a connection-level failure or a call that got no
    /// reply in time: when one connection breaks, Redis most likely went away for all of them
    /// (restart, failover), and a connection that did not answer may never answer.
    pub async fn reset(&self) {
        match &self.backend {
            Backend::Pool { slots, .. } => {
                for slot in slots {
                    if let Some(connection) = slot.lock().await.take() {
                        // Out of the pool too: it may be broken, and the pool would hand it out
                        // again.
                        let _ = deadpool_redis::Connection::take(connection);
                    }
                }
            }
            Backend::Cluster { connection, .. } => {
                connection.lock().await.take();
            }
        }
    }
}
