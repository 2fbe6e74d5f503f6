//! The fault scenario on the three-node Redis Cluster: two replicas of one deployment on a
//! private cluster (each type's keys in one slot, spread over the nodes), the mixed load, while
//! one node and then another are stopped (SIGSTOP) for 2 s and Postgres is cut for 3 s. Every
//! acknowledged subtask must finish, calls must succeed within 2 s of each fault's end, and the
//! Postgres history must hold no anomaly. SWITCHBOARD_FAULT_SEED picks another seed.

use std::time::Duration;

use crate::fault_scenario::{check_load, conclude, recovered, start_load};
use crate::net::CuttableProxy;
use crate::pg::TestDb;
use crate::support;
use support::redis_server::PrivateCluster;
use support::*;

const POSTGRES_ADDR: &str = "127.0.0.1:5432";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nodes_stopped_and_postgres_cut_leave_a_sound_history() {
    let cluster = PrivateCluster::start().await;
    let db = TestDb::create().await;
    let postgres_proxy = CuttableProxy::start(POSTGRES_ADDR.parse().unwrap()).await;
    let database_url = db
        .url()
        .replace(POSTGRES_ADDR, &postgres_proxy.addr.to_string());
    let namespace = unique_namespace("cluster-fault");
    let urls = cluster.urls();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut flags = vec![
            "--redis-url",
            &urls,
            "--redis-cluster",
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
    let load = start_load(&addrs, Duration::from_millis(40)).await;

    let mut recoveries = Vec::new();
    for node in [0, 2] {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.node(node).pause();
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.node(node).resume();
        recoveries.push(recovered(&addrs).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    postgres_proxy.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    postgres_proxy.restore();

    conclude(check_load(load, &db).await, &recoveries);
}
