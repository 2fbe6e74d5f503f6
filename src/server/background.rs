//! Background work of a server: the lease sweeper and the gauges refreshed from the store.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::domain::specialist::Availability;
use crate::metrics as names;
use crate::store::Store;

/// Expires lapsed leases every `interval` until shutdown. Running it on several replicas is harmless.
pub async fn sweep_leases(store: Arc<dyn Store>, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match store.expire_leases().await {
            Ok(summary) if !summary.expired_specialists.is_empty() => {
                metrics::counter!(names::LEASES_EXPIRED)
                    .increment(summary.expired_specialists.len() as u64);
                info!(
                    specialists = ?summary.expired_specialists,
                    requeued = summary.requeued_subtasks,
                    failed = summary.failed_subtasks,
                    "leases lapsed"
                );
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "lease sweep failed"),
        }
    }
}

/// Refreshes queue depth, specialists per availability and active assignments once a second.
pub async fn refresh_gauges(
    store: Arc<dyn Store>,
    handle: Option<PrometheusHandle>,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Some(handle) = &handle {
            handle.run_upkeep();
        }
        let stats = match store.queue_stats(None).await {
            Ok(stats) => stats,
            Err(error) => {
                warn!(%error, "reading queue stats for metrics failed");
                continue;
            }
        };
        let mut by_availability = [0u64; Availability::ALL.len()];
        for type_stats in &stats {
            let specialist_type = type_stats.specialist_type.clone();
            metrics::gauge!(names::QUEUE_DEPTH, "specialist_type" => specialist_type.clone())
                .set(type_stats.depth as f64);
            metrics::gauge!(names::ACTIVE_ASSIGNMENTS, "specialist_type" => specialist_type)
                .set(type_stats.active_assignments as f64);
            for (index, availability) in Availability::ALL.iter().enumerate() {
                by_availability[index] += u64::from(type_stats.specialists.get(*availability));
            }
        }
        for (index, availability) in Availability::ALL.iter().enumerate() {
            metrics::gauge!(names::SPECIALISTS, "availability" => availability.as_str())
                .set(by_availability[index] as f64);
        }
    }
}
