//! Postgres down for a minute under the fault scenario's mixed load (two replicas, a private
//! Redis): assignment goes on from Redis, the history waits in the outbox, and once Postgres is
//! back the relay writes it all. Every acknowledged subtask must finish, the history in Postgres
//! must catch up and hold no anomaly. SWITCHBOARD_FAULT_SEED picks another seed.

use std::time::Duration;

use crate::fault_scenario::{check_load, conclude, recovered, start_load};
use crate::net::CuttableProxy;
use crate::pg::TestDb;
use crate::support;
use support::redis_server::PrivateRedis;
use support::*;

const POSTGRES_ADDR: &str = "127.0.0.1:5432";
const OUTAGE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_without_postgres_loses_no_history() {
    let redis = PrivateRedis::start().await;
    let db = TestDb::create().await;
    let postgres_proxy = CuttableProxy::start(POSTGRES_ADDR.parse().unwrap()).await;
    let database_url = db
        .url()
        .replace(POSTGRES_ADDR, &postgres_proxy.addr.to_string());
    let namespace = unique_namespace("postgres-outage");
    let redis_url = redis.url();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut flags = vec![
            "--redis-url",
            &redis_url,
            "--redis-namespace",
            &namespace,
            "--database-url",
            &database_url,
            "--lease-ttl-ms",
            "3000",
        ];
        flags.extend(crate::OUTAGE_FLAGS);
        replicas.push(TestServer::start_with(&flags).await);
    }
    let addrs: Vec<_> = replicas.iter().map(|replica| replica.addr).collect();
    // 30 submissions per caller, one every 2 s: the load spans the outage.
    let load = start_load(&addrs, Duration::from_secs(2)).await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    postgres_proxy.cut();
    tokio::time::sleep(OUTAGE).await;
    postgres_proxy.restore();
    // Redis was there all along: calls never stopped.
    let recoveries = [recovered(&addrs).await];

    conclude(check_load(load, &db).await, &recoveries);
}
