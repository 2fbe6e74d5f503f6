//! TLS on the gRPC listener (rustls): `--tls-cert` and `--tls-key` (PEM), and with
//! `--tls-client-ca` mutual TLS (only clients holding a certificate that CA signed get in). The
//! files are read again on SIGHUP and when they change (checked every `--tls-reload-check-ms`):
//! new connections get the new certificate, open ones keep theirs, and files that do not load
//! leave the current ones in place (logged).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::ServeConfig;

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

impl Files {
    fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.cert, &self.key].into_iter().chain(&self.client_ca)
    }

    /// When each file last changed (None: unreadable now).
    fn stamps(&self) -> Vec<Option<SystemTime>> {
        self.paths()
            .map(|path| {
                std::fs::metadata(path)
                    .and_then(|meta| meta.modified())
                    .ok()
            })
            .collect()
    }

    fn load(&self) -> anyhow::Result<Arc<ServerConfig>> {
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("--tls-cert {}", self.cert.display()))?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .with_context(|| format!("--tls-key {}", self.key.display()))?;
        let builder = ServerConfig::builder();
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for ca in CertificateDer::pem_file_iter(path)
                    .with_context(|| format!("--tls-client-ca {}", path.display()))?
                {
                    roots
                        .add(ca.with_context(|| format!("--tls-client-ca {}", path.display()))?)
                        .with_context(|| format!("--tls-client-ca {}", path.display()))?;
                }
                let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .context("--tls-client-ca")?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .context("--tls-cert and --tls-key do not make a usable pair")?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The TLS settings new connections get, reloadable.
pub struct ServerTls {
    files: Files,
    current: RwLock<(Arc<ServerConfig>, Vec<Option<SystemTime>>)>,
}

impl ServerTls {
    /// None without --tls-cert; an error when the files do not load.
    pub fn from_config(config: &ServeConfig) -> anyhow::Result<Option<Arc<Self>>> {
        let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
            return Ok(None);
        };
        let files = Files {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: config.tls_client_ca.clone(),
        };
        let stamps = files.stamps();
        let loaded = files.load()?;
        Ok(Some(Arc::new(Self {
            files,
            current: RwLock::new((loaded, stamps)),
        })))
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().0.clone())
    }

    /// Reads the files again; keeps the current settings if they do not load.
    pub fn reload(&self, why: &str) {
        let stamps = self.files.stamps();
        match self.files.load() {
            Ok(loaded) => {
                *self.current.write() = (loaded, stamps);
                info!(why, "TLS certificate reloaded");
            }
            Err(error) => {
                // Remember the stamps: the same broken files are not retried every check.
                self.current.write().1 = stamps;
                warn!(
                    why,
                    error = format!("{error:#}"),
                    "TLS files did not load; keeping the current ones"
                );
            }
        }
    }

    fn changed(&self) -> bool {
        self.files.stamps() != self.current.read().1
    }

    /// Reloads on SIGHUP and when a file changes, until `stop`. Listens to SIGHUP from the moment
    /// it is called (before the returned future runs), so a signal sent once the server says it
    /// serves never meets the default action (which ends the process).
    pub fn watch(
        self: Arc<Self>,
        check_every: Duration,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send {
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        self.watch_with(hangups, check_every, stop)
    }

    async fn watch_with(
        self: Arc<Self>,
        mut hangups: Option<tokio::signal::unix::Signal>,
        check_every: Duration,
        stop: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(check_every.max(Duration::from_millis(10)));
        loop {
            let hangup = async {
                match hangups.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = hangup => self.reload("SIGHUP"),
                _ = ticks.tick() => {
                    if self.changed() {
                        self.reload("a file changed");
                    }
                }
            }
        }
    }
}
