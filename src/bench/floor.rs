//! The transport floor: the same callers on the same connections, flat out, calling
//! `grpc.health.v1.Health/Check`, the cheapest call the server has. No store is involved, so the
//! rate it reaches bounds what any Assign can reach on this machine with this load generator.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Health checks answered per second by `callers` flat-out callers over `duration`.
pub async fn health_checks_per_s(
    channels: &[Channel],
    callers: u32,
    duration: Duration,
    timeout: Duration,
) -> f64 {
    let answered = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..callers as usize)
        .map(|caller| {
            let mut client = HealthClient::new(channels[caller % channels.len()].clone());
            let answered = answered.clone();
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let mut request = tonic::Request::new(HealthCheckRequest {
                        service: String::new(),
                    });
                    request.set_timeout(timeout);
                    if client.check(request).await.is_ok() {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    answered.load(Ordering::Relaxed) as f64 / seconds.max(f64::EPSILON)
}
