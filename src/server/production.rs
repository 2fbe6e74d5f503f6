//! Starting on the production store: Redis for live state; with Postgres, migrations at start, the
//! outbox relay, and the mover of subtasks accepted while Redis was down.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::config::ServeConfig;
use crate::domain::policy::RoutingPolicy;
use crate::store::postgres;
use crate::store::production::{
    rebuild,
    relay::{self, RelayConfig},
    PendingStore,
};
use crate::store::redis::{RedisStore, RedisStoreConfig};

use crate::learned_scorer::checkpoints::{CheckpointStore, MemoryCheckpoints};
use crate::store::postgres::checkpoints::PgCheckpoints;

use super::{start_with_store_and_checkpoints, Health, RunningServer};

/// Postgres connections per replica (relay, pending subtasks).
const POSTGRES_POOL_SIZE: usize = 8;
/// How often a replica looks for subtasks accepted while Redis was down.
const PENDING_EVERY: Duration = Duration::from_millis(500);

pub async fn start(
    config: ServeConfig,
    redis_config: RedisStoreConfig,
    policy: RoutingPolicy,
) -> anyhow::Result<RunningServer> {
    let mut store =
        RedisStore::connect(&redis_config, &policy).context("configuring the redis store")?;
    let mut postgres_pool = None;
    if let Some(database_url) = &config.database_url {
        let mut client = postgres::connect(database_url)
            .await
            .context("connecting to --database-url")?;
        let report = postgres::migrate(&mut client)
            .await
            .context("applying migrations")?;
        info!(
            applied = report.applied.len(),
            already_applied = report.already_applied,
            "postgres schema up to date"
        );
        let pool = postgres::pool(database_url, POSTGRES_POOL_SIZE)?;
        store = store.with_pending(PendingStore::new(
            pool.clone(),
            redis_config.breaker,
            redis_config.command_timeout,
        ));
        postgres_pool = Some(pool);
    }
    if let Some(pool) = &postgres_pool {
        if let Some(summary) = rebuild::rebuild_if_empty(&store, pool)
            .await
            .context("rebuilding redis from postgres")?
        {
            info!(
                specialists = summary.specialists,
                held_subtasks = summary.held_subtasks,
                unfinished_subtasks = summary.unfinished_subtasks,
                "redis was empty: rebuilt from postgres"
            );
        }
    }
    store
        .prepare()
        .await
        .context("setting up the redis slots")?;
    let policy_weights = policy.weights;
    let store = Arc::new(store);
    let checkpoints: Arc<dyn CheckpointStore> = match &config.database_url {
        Some(database_url) => Arc::new(PgCheckpoints::new(database_url.clone())),
        None => Arc::new(MemoryCheckpoints::default()),
    };
    let running = start_with_store_and_checkpoints(config, store.clone(), checkpoints).await?;
    if let Some(pool) = postgres_pool {
        let endpoint = redis_config.endpoint();
        let stop = running.stop_token();
        // One relay per type: each type's slot has its own outbox stream.
        let keys = redis_config.keys();
        for specialist_type in store.types() {
            tokio::spawn(
                relay::run(
                    endpoint.clone(),
                    pool.clone(),
                    RelayConfig::new(
                        keys.type_prefix(specialist_type),
                        specialist_type.clone(),
                        policy_weights,
                    ),
                    stop.clone(),
                )
                .instrument(tracing::info_span!("outbox_relay", %specialist_type)),
            );
        }
        tokio::spawn(
            move_pending(store.clone(), stop).instrument(tracing::info_span!("pending_mover")),
        );
    }
    tokio::spawn(
        watch_stores(store.clone(), running.health(), running.stop_token())
            .instrument(tracing::info_span!("store_probe")),
    );
    tokio::spawn(
        keep_alive(store, running.stop_token()).instrument(tracing::info_span!("liveness")),
    );
    Ok(running)
}

/// How often the stores are probed.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// Probes Redis (and Postgres, past an open breaker) every PROBE_EVERY: an answer closes an open
/// breaker at once; health says NOT_SERVING while Redis does not answer (two probes in a row, or
/// an open breaker) and SERVING again when it does.
async fn watch_stores(store: Arc<RedisStore>, health: Health, stop: CancellationToken) {
    let mut reachable = true;
    let mut missed = 0u32;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PROBE_EVERY) => {}
        }
        store.probe_pending().await;
        let answered = store.probe().await;
        missed = if answered { 0 } else { missed + 1 };
        let now_reachable = answered || (missed < 2 && !store.breaker_open());
        if now_reachable != reachable {
            reachable = now_reachable;
            if reachable {
                info!("redis reachable: health SERVING");
            } else {
                warn!(
                    assign_accepts_into_postgres = store.accepts_while_down(),
                    "redis unreachable: health NOT_SERVING"
                );
            }
            health
                .store_reachable(reachable, store.accepts_while_down())
                .await;
        }
    }
}

/// Counts this replica among the deployment's live ones until it stops (redis/policy.rs).
async fn keep_alive(store: Arc<RedisStore>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                if let Err(error) = store.leave().await {
                    debug!(%error, "could not leave the live replicas; it expires by itself");
                }
                return;
            }
            () = tokio::time::sleep(crate::store::redis::policy::LIVENESS_EVERY) => {}
        }
        if let Err(error) = store.keep_alive().await {
            debug!(%error, "liveness not refreshed");
        }
    }
}

async fn move_pending(store: Arc<RedisStore>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PENDING_EVERY) => {}
        }
        match store.move_pending().await {
            Ok(0) => {}
            Ok(moved) => info!(moved, "pending subtasks moved into redis"),
            Err(error) => debug!(%error, "pending subtasks stay in postgres for now"),
        }
    }
}
