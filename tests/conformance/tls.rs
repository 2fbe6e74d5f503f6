//! TLS on the gRPC listener (--tls-cert, --tls-key) and mutual TLS (--tls-client-ca), with
//! certificates made for the test (rcgen): a client trusting the CA talks to the server, a
//! plaintext one does not; with mutual TLS only a client holding a certificate that CA signed
//! gets in, and its certificate is its identity (the per-caller Assign budget follows it).

use std::path::Path;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use switchboard::pb;
use switchboard::pb::assign_service_client::AssignServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client_cert: String,
    client_key: String,
}

/// A CA, a server certificate for localhost signed by it, and a client certificate signed by it.
fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["agent-1.example".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    std::fs::write(dir.path().join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    Pki {
        ca_pem: ca.pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
        dir,
    }
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

async fn start(flags: &[&str]) -> switchboard::server::RunningServer {
    let mut args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".to_string(),
        "--no-metrics".to_string(),
    ];
    args.extend(flags.iter().map(|flag| flag.to_string()));
    let config = switchboard::config::ServeConfig::from_args(&args).expect("flags");
    switchboard::server::start(config)
        .await
        .expect("the server starts")
}

async fn health(channel: Result<Channel, tonic::transport::Error>) -> Result<i32, String> {
    let channel = channel.map_err(|error| format!("connect: {error:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|reply| reply.into_inner().status)
        .map_err(|status| format!("{status:?}"))
}

fn endpoint(url: String) -> Endpoint {
    Endpoint::from_shared(url)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn tls_serves_clients_that_trust_the_ca_and_refuses_plaintext() {
    let pki = pki();
    let dir = pki.dir.path();
    let server = start(&[
        "--tls-cert",
        &path(dir, "server.pem"),
        "--tls-key",
        &path(dir, "server.key"),
    ])
    .await;
    let port = server.grpc_addr().port();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    let secure = endpoint(format!("https://localhost:{port}"))
        .tls_config(tls)
        .unwrap()
        .connect()
        .await;
    assert_eq!(health(secure).await, Ok(1), "SERVING over TLS");
    let plain = endpoint(format!("http://127.0.0.1:{port}")).connect().await;
    assert!(
        health(plain).await.is_err(),
        "a plaintext client is refused"
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let pki = pki();
    let dir = pki.dir.path();
    let server = start(&[
        "--tls-cert",
        &path(dir, "server.pem"),
        "--tls-key",
        &path(dir, "server.key"),
        "--tls-client-ca",
        &path(dir, "ca.pem"),
        "--assign-rate-limit",
        "1",
    ])
    .await;
    let port = server.grpc_addr().port();
    let trust = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pki.ca_pem))
            .domain_name("localhost")
    };
    let anonymous = endpoint(format!("https://localhost:{port}"))
        .tls_config(trust())
        .unwrap()
        .connect()
        .await;
    assert!(
        health(anonymous).await.is_err(),
        "a client without a certificate is refused"
    );
    let with_identity = endpoint(format!("https://localhost:{port}"))
        .tls_config(trust().identity(Identity::from_pem(&pki.client_cert, &pki.client_key)))
        .unwrap()
        .connect()
        .await;
    let channel = with_identity.expect("connected with a certificate");
    assert_eq!(
        health(Ok(channel.clone())).await,
        Ok(1),
        "SERVING to a known client"
    );

    // The certificate is the caller: a made-up x-caller-id does not buy another Assign budget.
    let mut assign = AssignServiceClient::new(channel);
    let mut calls = Vec::new();
    for (n, caller) in ["a", "b"].into_iter().enumerate() {
        let mut request = tonic::Request::new(pb::AssignRequest {
            subtask_id: format!("mtls-{n}"),
            specialist_type: "backend".into(),
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("x-caller-id", caller.parse().unwrap());
        calls.push(assign.assign(request).await);
    }
    assert!(calls[0].is_ok(), "{:?}", calls[0]);
    let refused = calls[1]
        .as_ref()
        .expect_err("the second Assign is over the limit");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("cert:agent-1.example"),
        "{refused:?}"
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_key_without_a_certificate_is_refused_at_start() {
    let refused = switchboard::config::ServeConfig::from_args(["--tls-key", "server.key"]);
    let error = refused.expect_err("--tls-key alone is refused");
    assert!(error.to_string().contains("--tls-cert"), "{error}");
}

/// A certificate and key signed by a new CA, written over the server's files.
fn replace_server_certificate(dir: &Path) -> String {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let certificate = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    // The key first: a check between the two writes sees a mismatched pair and keeps the old one.
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("server.pem"), certificate.pem()).unwrap();
    ca.pem()
}

async fn health_trusting(port: u16, ca_pem: &str) -> Result<i32, String> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    let channel = endpoint(format!("https://localhost:{port}"))
        .tls_config(tls)
        .unwrap()
        .connect()
        .await;
    health(channel).await
}

/// New certificate files are picked up without a restart: new connections get them.
#[tokio::test]
async fn a_changed_certificate_is_served_without_a_restart() {
    let pki = pki();
    let dir = pki.dir.path();
    let server = start(&[
        "--tls-cert",
        &path(dir, "server.pem"),
        "--tls-key",
        &path(dir, "server.key"),
        "--tls-reload-check-ms",
        "50",
    ])
    .await;
    let port = server.grpc_addr().port();
    assert_eq!(health_trusting(port, &pki.ca_pem).await, Ok(1));
    let new_ca = replace_server_certificate(dir);
    crate::support::poll_until(
        "the new certificate is served",
        crate::support::EVENTUALLY,
        || {
            let new_ca = new_ca.clone();
            async move { health_trusting(port, &new_ca).await.ok() }
        },
    )
    .await;
    assert!(
        health_trusting(port, &pki.ca_pem).await.is_err(),
        "the old CA no longer verifies the server"
    );
    server.shutdown().await.expect("shutdown");
}

/// SIGHUP reads the files again at once (a process of its own: the signal goes to it alone).
#[tokio::test]
async fn sighup_reloads_the_certificate() {
    let pki = pki();
    let dir = pki.dir.path();
    let process = crate::support::ServerProcess::spawn(&[
        "--tls-cert",
        &path(dir, "server.pem"),
        "--tls-key",
        &path(dir, "server.key"),
        // Only the signal reloads within this test's time.
        "--tls-reload-check-ms",
        "3600000",
    ]);
    let port = process.addr.port();
    assert_eq!(health_trusting(port, &pki.ca_pem).await, Ok(1));
    let new_ca = replace_server_certificate(dir);
    assert!(health_trusting(port, &new_ca).await.is_err(), "not yet");
    process.signal("HUP");
    crate::support::poll_until("SIGHUP reloads", crate::support::EVENTUALLY, || {
        let new_ca = new_ca.clone();
        async move { health_trusting(port, &new_ca).await.ok() }
    })
    .await;
}
