//! The server under load: a running one on loopback (`--addr`), or one started in this process (on
//! the store its `--embedded-flag`s choose: the embedded store unless they name a Redis), on a
//! runtime of its own whose threads are named so their CPU can be told apart.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use crate::config::ServeConfig;
use crate::server::RunningServer;

/// Thread name of the embedded server's runtime (at most 15 bytes: Linux keeps no more in `comm`).
pub const SERVER_THREAD_NAME: &str = "sb-bench-server";

/// Worker threads of the embedded server's runtime.
const SERVER_WORKERS: usize = 2;

/// `serve` flags of the embedded server before the user's `--embedded-flag`s (which win).
const EMBEDDED_FLAGS: &[&str] = &[
    "--listen",
    "127.0.0.1:0",
    "--metrics-listen",
    "127.0.0.1:0",
    "--assign-rate-limit",
    "0",
];

/// Where the load goes (one per run: the size of its larger variant costs nothing).
#[allow(clippy::large_enum_variant)]
pub enum Target {
    /// A server some other process runs.
    External { addr: SocketAddr },
    /// A server in this process, on its own runtime.
    Embedded {
        addr: SocketAddr,
        server: EmbeddedServer,
        /// The store its flags chose (ServeConfig::store_description).
        store: String,
    },
}

/// The embedded server and its runtime; dropped without `close`, the runtime stops in the background.
pub struct EmbeddedServer {
    runtime: Option<tokio::runtime::Runtime>,
    server: Option<RunningServer>,
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        // A plain drop would block, which panics inside the generator's runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Target {
    pub fn addr(&self) -> SocketAddr {
        match self {
            Target::External { addr } | Target::Embedded { addr, .. } => *addr,
        }
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self, Target::Embedded { .. })
    }

    /// What the report says the load went to: the in-process server with its store, or the
    /// external server (whose store this process cannot see).
    pub fn describe(&self) -> String {
        match self {
            Target::External { .. } => "external server".into(),
            Target::Embedded { store, .. } => format!("in-process server, {store}"),
        }
    }

    /// Resolves `--addr` (loopback only) or starts the embedded server.
    pub async fn open(addr: Option<&str>, embedded_flags: &[String]) -> anyhow::Result<Self> {
        match addr {
            Some(addr) => Ok(Target::External {
                addr: resolve_loopback(addr).await?,
            }),
            None => start_embedded(embedded_flags).await,
        }
    }

    /// Shuts the embedded server down (a no-op for an external one).
    pub async fn close(self) -> anyhow::Result<()> {
        let Target::Embedded { mut server, .. } = self else {
            return Ok(());
        };
        let (Some(runtime), Some(running)) = (server.runtime.as_ref(), server.server.take()) else {
            return Ok(());
        };
        runtime
            .spawn(running.shutdown())
            .await
            .context("embedded server shutdown task")?
    }
}

/// The address `addr` names, refused unless every address it resolves to is loopback.
pub async fn resolve_loopback(addr: &str) -> anyhow::Result<SocketAddr> {
    let resolved: Vec<SocketAddr> =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host(addr))
            .await
            .with_context(|| format!("--addr {addr}: name lookup timed out"))?
            .with_context(|| format!("--addr {addr}: expected host:port"))?
            .collect();
    let Some(first) = resolved.first().copied() else {
        bail!("--addr {addr} resolves to no address");
    };
    if let Some(remote) = resolved.iter().find(|found| !found.ip().is_loopback()) {
        bail!(
            "--addr {addr} resolves to {remote}, which is not loopback: switchboard bench only \
             drives a server on this machine (127.0.0.1, ::1 or localhost)"
        );
    }
    Ok(first)
}

async fn start_embedded(extra: &[String]) -> anyhow::Result<Target> {
    let mut args: Vec<String> = EMBEDDED_FLAGS.iter().map(|flag| flag.to_string()).collect();
    args.extend(extra.iter().cloned());
    let config = ServeConfig::from_args(&args)
        .map_err(|error| anyhow::anyhow!("--embedded-flag: {error}"))?;
    if !config.listen.ip().is_loopback() {
        bail!(
            "the embedded server must listen on loopback, not {}",
            config.listen
        );
    }
    if config.assign_rate_limit != 0 {
        warn!(
            limit = config.assign_rate_limit,
            "embedded server has a per-caller Assign rate limit; expect RESOURCE_EXHAUSTED"
        );
    }
    let store = config.store_description();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(SERVER_WORKERS)
        .thread_name(SERVER_THREAD_NAME)
        .enable_all()
        .build()
        .context("building the embedded server's runtime")?;
    let started = runtime.spawn(crate::server::start(config)).await;
    let server = match started {
        Ok(Ok(server)) => server,
        Ok(Err(error)) => {
            runtime.shutdown_background();
            return Err(error.context("starting the embedded server"));
        }
        Err(error) => {
            runtime.shutdown_background();
            bail!("embedded server start task: {error}");
        }
    };
    let addr = server.grpc_addr();
    info!(%addr, %store, "server started in this process");
    Ok(Target::Embedded {
        addr,
        store,
        server: EmbeddedServer {
            runtime: Some(runtime),
            server: Some(server),
        },
    })
}

/// `count` HTTP/2 connections to `addr` (each made eagerly, so a dead address fails here).
pub async fn connect(addr: SocketAddr, count: u32) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::new();
    for _ in 0..count.max(1) {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .context("endpoint")?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_adaptive_window(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        channels.push(channel);
    }
    Ok(channels)
}
