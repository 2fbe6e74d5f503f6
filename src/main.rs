//! The `switchboard` binary: parse configuration, start logging, run the chosen command.

use anyhow::Context;
use clap::Parser;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use switchboard::config::{
    BenchConfig, Cli, Command, LogFormat, MigrateConfig, ServeConfig, SimulateConfig,
};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Before the runtime starts any thread: the environment is only safe to change now.
    switchboard::config::configure_model_threads();
    keep_large_allocations();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(run(cli))
}

/// The trainer allocates and frees gradient buffers of a few hundred KiB every step; above glibc's
/// default mmap threshold each one is a fresh mapping, zeroed page by page by the kernel. Serving
/// them from the heap instead makes training several times faster.
fn keep_large_allocations() {
    // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(config) => serve(config).await,
        Command::Bench(config) => bench(config).await,
        Command::Migrate(config) => migrate(config).await,
        Command::Simulate(config) => simulate(config).await,
        Command::Token(config) => switchboard::auth::cli::run(config),
    }
}

/// The simulator trains models inline, so it runs on a blocking thread with its own runtime.
async fn simulate(config: SimulateConfig) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the simulator runtime")?;
        runtime
            .block_on(switchboard::simulate::main(config))
            .context("simulation failed")
    })
    .await
    .context("simulator thread panicked")?
}

/// Applies pending migrations and says what it did on stdout.
async fn migrate(config: MigrateConfig) -> anyhow::Result<()> {
    let mut client = switchboard::store::postgres::connect(&config.database_url)
        .await
        .context("connecting to --database-url")?;
    let report = switchboard::store::postgres::migrate(&mut client).await?;
    for applied in &report.applied {
        println!(
            "applied {:04}_{} in {} ms (sha256 {})",
            applied.version, applied.name, applied.elapsed_ms, applied.checksum
        );
    }
    println!(
        "schema up to date: {} migration(s) applied now, {} already applied",
        report.applied.len(),
        report.already_applied
    );
    Ok(())
}

/// The load generator logs to stderr: stdout carries only the report.
async fn bench(config: BenchConfig) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log_filter)
        .with_context(|| format!("--log-filter {:?}", config.log_filter))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    switchboard::bench::main(config).await
}

fn init_logging(config: &ServeConfig) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log_filter)
        .with_context(|| format!("--log-filter {:?}", config.log_filter))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(ansi);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    init_logging(&config)?;
    info!(store = %config.store_description(), "switchboard starting");
    if config.dev {
        warn!(
            lease_ttl_ms = config.lease_ttl_ms(),
            heartbeat_interval_ms = config.heartbeat_interval_ms(),
            "development profile (--dev): leases last {} minutes, so the README walk-through works by hand; not for production",
            config.lease_ttl_ms() / 60_000
        );
    }
    // Handlers go in before the server says it is ready, so an early SIGTERM still shuts down cleanly.
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing the SIGINT handler")?;
    let running = switchboard::server::start(config).await?;
    wait_for_signal(terminate, interrupt).await;
    running.shutdown().await
}

async fn wait_for_signal(
    mut terminate: tokio::signal::unix::Signal,
    mut interrupt: tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    info!("signal received");
}
