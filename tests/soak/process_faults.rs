//! Process faults under the history checker: two replica processes of one deployment (the
//! switchboard binary) on a Redis that has every write on disk before it answers (`appendfsync
//! always`), with the fault scenario's mixed load on both, while one replica is SIGKILLed and
//! started again on its port three times and Redis is SIGKILLed and restarted twice. Every
//! acknowledged subtask must finish, calls must succeed within 2 s of each process's return, and
//! the Postgres history must hold no anomaly. SWITCHBOARD_FAULT_SEED picks another seed.

use std::time::Duration;

use crate::fault_scenario::{check_load, conclude, recovered, start_load};
use crate::pg::TestDb;
use crate::support;
use support::redis_server::PrivateRedis;
use support::*;

/// A port nobody listens on now, for a replica that must come back where it was.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replicas_and_a_killed_redis_leave_a_sound_history() {
    let mut redis = PrivateRedis::start_persistent().await;
    let db = TestDb::create().await;
    let namespace = unique_namespace("process");
    let redis_url = redis.url();
    let database_url = db.url();
    let replica_at = |listen: &str| {
        let mut flags = vec![
            "--listen",
            listen,
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
        ServerProcess::spawn(&flags)
    };
    let stable = replica_at("127.0.0.1:0");
    let killed_listen = format!("127.0.0.1:{}", free_port());
    let mut killed = replica_at(&killed_listen);
    let addrs = [stable.addr, killed.addr];
    // Submissions spread over the whole run (about 7 s), so every fault meets traffic.
    let load = start_load(&addrs, Duration::from_millis(250)).await;

    let mut recoveries = Vec::new();
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        killed.signal("KILL");
        killed
            .wait_exit(Duration::from_secs(5))
            .await
            .expect("SIGKILL ends the replica");
        tokio::time::sleep(Duration::from_millis(500)).await;
        killed = replica_at(&killed_listen);
        recoveries.push(recovered(&addrs[1..]).await);
        if round < 2 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            redis.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            redis.restart().await;
            recoveries.push(recovered(&addrs).await);
        }
    }
    conclude(check_load(load, &db).await, &recoveries);
    drop(killed);
    drop(stable);
}
