//! TLS for the gRPC listener (rustls through tonic): the certificate and key from --tls-cert and
//! --tls-key, and with --tls-client-ca mutual TLS (a client must present a certificate that CA
//! signed). The files are read once, at start. The metrics endpoint stays plain HTTP.

use anyhow::Context as _;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::ServeConfig;

/// The TLS settings the flags ask for, or None for plaintext.
pub fn server_tls(config: &ServeConfig) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (Some(cert_path), Some(key_path)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let read = |path: &std::path::Path, flag: &str| {
        std::fs::read(path).with_context(|| format!("reading {flag} {}", path.display()))
    };
    let cert = read(cert_path, "--tls-cert")?;
    let key = read(key_path, "--tls-key")?;
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca_path) = &config.tls_client_ca {
        let ca = read(ca_path, "--tls-client-ca")?;
        tls = tls.client_ca_root(Certificate::from_pem(ca));
    }
    Ok(Some(tls))
}
