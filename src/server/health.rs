//! The gRPC health service's statuses, changed in one place: SERVING once started; per service
//! NOT_SERVING while the production store cannot serve it (Redis unreachable), back on recovery;
//! NOT_SERVING for good once shutdown begins (a late recovery cannot undo that).

use std::sync::Arc;

use tokio::sync::Mutex;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use super::SERVICE_NAMES;

/// AssignService: it accepts subtasks into Postgres while Redis is unreachable, when configured.
const ASSIGN_SERVICE: &str = "switchboard.v1.AssignService";

#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    /// True once shutdown began; held while statuses change so the two never interleave.
    stopping: Arc<Mutex<bool>>,
}

impl Health {
    /// Everything SERVING.
    pub async fn start(reporter: HealthReporter) -> Self {
        let health = Self {
            reporter,
            stopping: Arc::new(Mutex::new(false)),
        };
        health.set_all(ServingStatus::Serving).await;
        health
    }

    async fn set_all(&self, status: ServingStatus) {
        self.reporter.set_service_status("", status).await;
        for service in SERVICE_NAMES {
            self.reporter.set_service_status(service, status).await;
        }
    }

    /// NOT_SERVING everywhere, for good.
    pub async fn stop(&self) {
        let mut stopping = self.stopping.lock().await;
        *stopping = true;
        self.set_all(ServingStatus::NotServing).await;
    }

    /// The store became reachable (everything SERVING) or unreachable: every service NOT_SERVING,
    /// except AssignService when `assign_accepts` (subtasks go to Postgres meanwhile). The overall
    /// status ("") follows the services: NOT_SERVING while any of them is.
    pub async fn store_reachable(&self, reachable: bool, assign_accepts: bool) {
        let stopping = self.stopping.lock().await;
        if *stopping {
            return;
        }
        let status = |on: bool| {
            if on {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            }
        };
        self.reporter
            .set_service_status("", status(reachable))
            .await;
        for service in SERVICE_NAMES {
            let serving = reachable || (service == ASSIGN_SERVICE && assign_accepts);
            self.reporter
                .set_service_status(service, status(serving))
                .await;
        }
    }
}
