//! The tonic server: tower layers, health, reflection, metrics, background work, graceful shutdown.

mod background;
pub mod call_layer;
mod health;
mod idle;
mod incoming;
mod metrics_http;
mod production;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::ServiceBuilder;
use tracing::{info, warn, Instrument};

use crate::api::assign::AssignApi;
use crate::api::performance::PerformanceApi;
use crate::api::queue::QueueApi;
use crate::api::rate_limit::RateLimiter;
use crate::api::register::RegisterApi;
use crate::api::ApiContext;
use crate::config::ServeConfig;
use crate::learned_scorer::checkpoints::{CheckpointStore, MemoryCheckpoints};
use crate::learned_scorer::LearnedEngine;
use crate::pb;
use crate::pb::assign_service_server::AssignServiceServer;
use crate::pb::performance_service_server::PerformanceServiceServer;
use crate::pb::queue_service_server::QueueServiceServer;
use crate::pb::register_service_server::RegisterServiceServer;
use crate::store::memory::MemoryStore;
use crate::store::Store;

use crate::api::auth::Authenticator;
use crate::auth::keys::VerifyingKeys;
use call_layer::{CallLayer, OpenCalls};
pub use health::Health;
use tonic::service::interceptor::InterceptedService;

/// Fully qualified names of the four services, as health checks and reflection know them.
pub const SERVICE_NAMES: [&str; 4] = [
    "switchboard.v1.RegisterService",
    "switchboard.v1.AssignService",
    "switchboard.v1.QueueService",
    "switchboard.v1.PerformanceService",
];

/// How often shutdown looks whether calls are still open.
const SHUTDOWN_POLL: Duration = Duration::from_millis(20);
/// How long shutdown leaves connections after the last call ended, for its reply to go out.
const LAST_REPLIES: Duration = Duration::from_millis(250);

/// How often the server pings a connection over HTTP/2, and how long it waits for the answer
/// before it closes the connection (a peer that vanished without a FIN).
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Largest gRPC message accepted: a 1 MiB payload plus the rest of the request.
const MAX_MESSAGE_BYTES: usize = 2 * 1024 * 1024;

/// A server that is listening; dropping it does not stop it, `shutdown` does.
pub struct RunningServer {
    grpc_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    health: Health,
    serving: JoinHandle<Result<(), tonic::transport::Error>>,
    grace: Duration,
    open_calls: OpenCalls,
}

impl RunningServer {
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Cancelled when the server shuts down: background work tied to it stops then.
    pub fn stop_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The health statuses, for whatever watches the store's reachability.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Health NOT_SERVING, watch streams end, calls in progress finish (up to the grace period).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        info!("shutting down: health NOT_SERVING, draining streams");
        self.health.stop().await;
        self.shutdown.cancel();
        let mut serving = self.serving;
        let deadline = tokio::time::Instant::now() + self.grace;
        let mut idle_since = None;
        loop {
            tokio::select! {
                joined = &mut serving => {
                    joined
                        .context("server task panicked")?
                        .context("server failed")?;
                    info!("shut down cleanly");
                    return Ok(());
                }
                () = tokio::time::sleep(SHUTDOWN_POLL) => {}
            }
            let now = tokio::time::Instant::now();
            let open = self.open_calls.count();
            if open == 0 {
                // Connections with no call open (idle clients, a silent TCP peer) need not hold
                // the exit: after a moment for the last replies to go out, they are closed.
                if now.duration_since(*idle_since.get_or_insert(now)) >= LAST_REPLIES {
                    serving.abort();
                    info!("shut down cleanly; idle connections closed");
                    return Ok(());
                }
            } else {
                idle_since = None;
            }
            if now >= deadline {
                warn!(
                    grace_ms = self.grace.as_millis() as u64,
                    open_calls = open,
                    "calls still open after the grace period; closing them"
                );
                serving.abort();
                return Ok(());
            }
        }
    }
}

/// Starts a server on the store the configuration selects: Redis (+ Postgres) or embedded.
pub async fn start(config: ServeConfig) -> anyhow::Result<RunningServer> {
    let policy = config.routing_policy()?;
    match config.redis_store_config() {
        Some(redis_config) => production::start(config, redis_config, policy).await,
        None => start_with_store(config, Arc::new(MemoryStore::new(policy))).await,
    }
}

/// Starts a server on the given store (model checkpoints, if learning, kept in memory).
pub async fn start_with_store(
    config: ServeConfig,
    store: Arc<dyn Store>,
) -> anyhow::Result<RunningServer> {
    start_with_store_and_checkpoints(config, store, Arc::new(MemoryCheckpoints::default())).await
}

/// Starts a server on the given store, keeping the learned scorer's checkpoints in `checkpoints`.
pub async fn start_with_store_and_checkpoints(
    config: ServeConfig,
    store: Arc<dyn Store>,
    checkpoints: Arc<dyn CheckpointStore>,
) -> anyhow::Result<RunningServer> {
    let policy = config.routing_policy()?;
    config.check_exposure()?;
    let authenticator = authenticator(&config)?;
    let engine = match config.engine_settings()? {
        None => None,
        Some(settings) => {
            let engine = LearnedEngine::start(settings, checkpoints)
                .context("starting the learned scorer")?;
            info!(scorer = engine.status().scorer, "learned scoring on");
            Some(engine)
        }
    };
    let shutdown = CancellationToken::new();
    let factors = engine
        .clone()
        .map(|engine| Arc::new(engine) as Arc<dyn crate::service::FactorSource>);
    let context = ApiContext {
        assigner: crate::service::Assigner::new(store.clone(), factors),
        engine,
        store: store.clone(),
        policy: Arc::new(policy),
        heartbeat_interval_ms: config.heartbeat_interval_ms() as i64,
        assign_limiter: Arc::new(RateLimiter::new(config.assign_rate_limit)),
        shutdown: shutdown.clone(),
        watch_slots: Arc::new(crate::api::watch_slots::WatchSlots::new(
            config.max_watch_streams.max(1),
            config.max_watch_streams_per_caller.max(1),
        )),
    };

    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health = Health::start(reporter).await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building reflection v1")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building reflection v1alpha")?;

    let metrics_handle = if config.no_metrics {
        None
    } else {
        Some(
            metrics_http::recorder()
                .map_err(|error| anyhow::anyhow!("installing the metrics recorder: {error}"))?,
        )
    };
    let metrics_addr = match &metrics_handle {
        None => None,
        Some(handle) => {
            let listener = TcpListener::bind(config.metrics_listen)
                .await
                .with_context(|| {
                    format!("binding the metrics endpoint on {}", config.metrics_listen)
                })?;
            let addr = listener.local_addr()?;
            tokio::spawn(
                metrics_http::serve(listener, handle.clone(), shutdown.clone())
                    .instrument(tracing::info_span!("metrics")),
            );
            Some(addr)
        }
    };

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the gRPC listener on {}", config.listen))?;
    let grpc_addr = listener.local_addr()?;
    let activity = Arc::new(idle::Activity::default());
    let idle_timeout =
        (config.idle_timeout_ms > 0).then(|| Duration::from_millis(config.idle_timeout_ms));
    let incoming = incoming::connections(
        listener,
        config.max_connections.max(1),
        idle_timeout,
        activity.clone(),
    );

    let open_calls = OpenCalls::default();
    let layers = ServiceBuilder::new()
        .layer(CallLayer::new(
            Duration::from_millis(config.request_timeout_ms),
            open_calls.clone(),
            activity,
        ))
        .layer(LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::new(
            config.max_concurrent_requests.max(1),
        ))
        .into_inner();
    let server_tls = tls::ServerTls::from_config(&config)?;
    let builder = Server::builder()
        .max_concurrent_streams(Some(config.max_concurrent_streams.max(1)))
        .http2_max_header_list_size(Some(config.max_header_list_bytes.max(1024)))
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT));
    let router = builder
        .layer(layers)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(
            RegisterServiceServer::new(RegisterApi::new(context.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            authenticator.clone(),
        ))
        .add_service(InterceptedService::new(
            AssignServiceServer::new(AssignApi::new(context.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            authenticator.clone(),
        ))
        .add_service(InterceptedService::new(
            QueueServiceServer::new(QueueApi::new(context.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            authenticator.clone(),
        ))
        .add_service(InterceptedService::new(
            PerformanceServiceServer::new(PerformanceApi::new(context.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            authenticator.clone(),
        ));
    let stop_serving = shutdown.clone();
    let stopped = async move { stop_serving.cancelled().await };
    let serving = match &server_tls {
        None => tokio::spawn(
            router
                .serve_with_incoming_shutdown(incoming, stopped)
                .instrument(tracing::info_span!("grpc")),
        ),
        Some(server_tls) => {
            tokio::spawn(server_tls.clone().watch(
                Duration::from_millis(config.tls_reload_check_ms),
                shutdown.clone(),
            ));
            let secured = incoming::handshakes(incoming, server_tls.clone());
            tokio::spawn(
                router
                    .serve_with_incoming_shutdown(secured, stopped)
                    .instrument(tracing::info_span!("grpc")),
            )
        }
    };

    tokio::spawn(
        background::sweep_leases(
            store.clone(),
            Duration::from_millis(config.sweep_interval_ms.max(1)),
            shutdown.clone(),
        )
        .instrument(tracing::info_span!("lease_sweeper")),
    );
    tokio::spawn(
        background::refresh_gauges(store, metrics_handle, shutdown.clone())
            .instrument(tracing::info_span!("gauges")),
    );

    info!(
        grpc_addr = %grpc_addr,
        metrics_addr = %metrics_addr.map_or_else(|| "off".to_string(), |addr| addr.to_string()),
        tls = match (&config.tls_cert, &config.tls_client_ca) {
            (None, _) => "off",
            (Some(_), None) => "on",
            (Some(_), Some(_)) => "mutual",
        },
        "serving"
    );
    Ok(RunningServer {
        grpc_addr,
        metrics_addr,
        shutdown,
        health,
        serving,
        grace: Duration::from_millis(config.shutdown_grace_ms),
        open_calls,
    })
}

/// The token check of the four services: on with `--auth-key-file`, else off (and the server says
/// where it listens and why that is allowed).
fn authenticator(config: &ServeConfig) -> anyhow::Result<Authenticator> {
    if config.auth_key_files.is_empty() {
        if config.listen.ip().is_loopback() {
            info!(listen = %config.listen, "authentication off: serving on loopback only (give --auth-key-file to serve beyond it)");
        } else {
            warn!(listen = %config.listen, "authentication off and --insecure: anyone who can connect can act for any agent");
        }
        return Ok(Authenticator::new(None, mesh(config)));
    }
    let keys = VerifyingKeys::load(&config.auth_key_files, config.auth_revoked_file.as_deref())
        .context("--auth-key-file")?;
    info!(
        keys = keys.len(),
        "authentication on: bearer tokens required"
    );
    Ok(Authenticator::new(Some(keys), mesh(config)))
}

fn mesh(config: &ServeConfig) -> crate::api::auth::Mesh {
    crate::api::auth::Mesh {
        trusted_proxies: config.trusted_proxies.clone(),
        identity_header: config.identity_header.to_ascii_lowercase(),
    }
}
