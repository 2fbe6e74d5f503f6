//! Authentication and authorization (--auth-key-file): the attacks an unauthenticated or
//! wrongly-scoped caller tried are refused with the right status, the legitimate agent and
//! orchestrator are unaffected, health stays open, and per-caller limits follow the token.

use std::path::PathBuf;

use switchboard::auth::keys::KeyFile;
use switchboard::auth::{token, Claims, Role};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;

use crate::support::*;

struct Keys {
    _dir: tempfile::TempDir,
    signing: KeyFile,
    public_path: PathBuf,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let signing = KeyFile::generate().unwrap();
    let public_path = dir.path().join("key.json.pub");
    signing.public_only().write(&public_path).unwrap();
    Keys {
        _dir: dir,
        signing,
        public_path,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(role: Role, sub: &str) -> Claims {
    Claims {
        kid: String::new(),
        role,
        sub: sub.into(),
        specialists: Vec::new(),
        tenant: None,
        types: Vec::new(),
        iat: now(),
        exp: now() + 3_600,
        jti: format!("jti-{sub}"),
    }
}

fn sign(key: &KeyFile, mut claims: Claims) -> String {
    claims.kid = key.kid.clone();
    token::issue(&claims, &key.signing_key().unwrap())
}

fn agent(key: &KeyFile, id: &str) -> String {
    let mut claims = claims(Role::Agent, id);
    claims.specialists = vec![id.into()];
    sign(key, claims)
}

fn orchestrator(key: &KeyFile, tenant: &str, types: &[&str]) -> String {
    let mut claims = claims(Role::Orchestrator, tenant);
    claims.tenant = Some(tenant.into());
    claims.types = strings(types);
    sign(key, claims)
}

fn with<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    request
}

fn register(id: &str) -> pb::RegisterRequest {
    pb::RegisterRequest {
        specialist_id: id.into(),
        specialist_type: "frontend".into(),
        capabilities: strings(&["react"]),
        ..Default::default()
    }
}

fn report(held: &pb::Assignment, success: bool) -> pb::ReportCompletionRequest {
    pb::ReportCompletionRequest {
        subtask_id: held.subtask_id.clone(),
        specialist_id: held.specialist_id.clone(),
        epoch: held.epoch,
        success,
        completion_time_ms: 5,
        quality_score: 0.5,
        ..Default::default()
    }
}

fn denied<T: std::fmt::Debug>(result: Result<T, tonic::Status>, naming: &str) {
    let status = assert_code(result, Code::PermissionDenied);
    assert!(
        status.message().contains(naming),
        "{naming:?} not in {:?}",
        status.message()
    );
}

#[tokio::test]
async fn without_a_valid_token_every_call_is_unauthenticated_but_health_is_open() {
    let keys = keys();
    let path = keys.public_path.to_str().unwrap();
    let server = TestServer::start_with(&["--auth-key-file", path]).await;
    let mut c = server.clients.clone();
    assert_code(
        c.register.register(register("fe-1")).await,
        Code::Unauthenticated,
    );
    assert_code(
        c.assign.assign(task("t", "frontend", &[])).await,
        Code::Unauthenticated,
    );
    let mut expired = claims(Role::Admin, "old");
    expired.exp = now() - 1;
    let other_key = KeyFile::generate().unwrap();
    for bad in [
        "garbage".to_string(),
        sign(&keys.signing, expired),
        sign(&other_key, claims(Role::Admin, "forged")),
    ] {
        let status = assert_code(
            c.register.register(with(&bad, register("fe-1"))).await,
            Code::Unauthenticated,
        );
        assert!(status.message().contains("token refused"), "{status:?}");
    }
    let health = c
        .health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health needs no token");
    assert_eq!(health.into_inner().status, 1);
}

#[tokio::test]
async fn an_attacker_cannot_act_for_another_agent_or_tenant() {
    let keys = keys();
    let path = keys.public_path.to_str().unwrap();
    let server = TestServer::start_with(&["--auth-key-file", path]).await;
    let mut c = server.clients.clone();
    let victim = agent(&keys.signing, "fe-1");
    let mallory = agent(&keys.signing, "mallory");
    let acme = orchestrator(&keys.signing, "acme", &["frontend"]);
    let rival = orchestrator(&keys.signing, "rival", &[]);

    let registered = c
        .register
        .register(with(&victim, register("fe-1")))
        .await
        .expect("the agent registers itself")
        .into_inner();
    let incarnation = registered.incarnation;
    let mut stream = c
        .assign
        .watch_assignments(with(
            &victim,
            pb::WatchAssignmentsRequest {
                specialist_id: "fe-1".into(),
                incarnation: incarnation.clone(),
            },
        ))
        .await
        .expect("the agent watches itself")
        .into_inner();
    let held = c
        .assign
        .assign(with(&acme, task("acme/t1", "frontend", &["react"])))
        .await
        .expect("acme submits in its tenant")
        .into_inner()
        .assignment
        .unwrap();
    assert_assigned_to(&held, "fe-1");

    // Another agent token: nothing of fe-1's.
    denied(
        c.assign
            .watch_assignments(with(
                &mallory,
                pb::WatchAssignmentsRequest {
                    specialist_id: "fe-1".into(),
                    incarnation: incarnation.clone(),
                },
            ))
            .await,
        "mallory",
    );
    denied(
        c.assign
            .get_assignment(with(
                &mallory,
                pb::GetAssignmentRequest {
                    subtask_id: "acme/t1".into(),
                },
            ))
            .await,
        "held by mallory",
    );
    denied(
        c.assign
            .get_assignment(with(
                &mallory,
                pb::GetAssignmentRequest {
                    subtask_id: "no-such-subtask".into(),
                },
            ))
            .await,
        "held by mallory",
    );
    denied(
        c.perf
            .report_completion(with(&mallory, report(&held, false)))
            .await,
        "not for specialist fe-1",
    );
    denied(
        c.register
            .heartbeat(with(
                &mallory,
                pb::HeartbeatRequest {
                    specialist_id: "fe-1".into(),
                    availability: Availability::Away as i32,
                    incarnation: incarnation.clone(),
                },
            ))
            .await,
        "fe-1",
    );
    let mut takeover = register("fe-1");
    takeover.max_concurrency = 1000;
    takeover.take_over = true;
    denied(c.register.register(with(&mallory, takeover)).await, "fe-1");
    denied(
        c.register
            .deregister(with(
                &mallory,
                pb::DeregisterRequest {
                    specialist_id: "fe-1".into(),
                },
            ))
            .await,
        "fe-1",
    );
    denied(
        c.assign
            .cancel(with(
                &mallory,
                pb::CancelRequest {
                    subtask_id: "acme/t1".into(),
                    reason: String::new(),
                },
            ))
            .await,
        "orchestrator",
    );
    denied(
        c.assign
            .assign(with(&mallory, task("mallory-t", "frontend", &[])))
            .await,
        "orchestrator",
    );
    denied(
        c.register
            .register(with(
                &mallory,
                pb::RegisterRequest {
                    specialist_id: String::new(),
                    ..register("")
                },
            ))
            .await,
        "specialist_id",
    );

    // Another tenant's orchestrator: nothing of acme's; acme itself stays in its types.
    denied(
        c.assign
            .cancel(with(
                &rival,
                pb::CancelRequest {
                    subtask_id: "acme/t1".into(),
                    reason: String::new(),
                },
            ))
            .await,
        "rival/",
    );
    denied(
        c.assign
            .get_assignment(with(
                &rival,
                pb::GetAssignmentRequest {
                    subtask_id: "acme/t1".into(),
                },
            ))
            .await,
        "rival/",
    );
    denied(
        c.assign
            .assign(with(&rival, task("acme/t2", "frontend", &[])))
            .await,
        "rival/",
    );
    denied(
        c.queue
            .list_queue(with(
                &rival,
                pb::ListQueueRequest {
                    specialist_type: "frontend".into(),
                    ..Default::default()
                },
            ))
            .await,
        "every tenant",
    );
    denied(
        c.assign
            .assign(with(&acme, task("acme/t3", "backend", &[])))
            .await,
        "frontend",
    );
    denied(
        c.register
            .heartbeat(with(
                &acme,
                pb::HeartbeatRequest {
                    specialist_id: "fe-1".into(),
                    availability: 0,
                    incarnation: incarnation.clone(),
                },
            ))
            .await,
        "agent token",
    );

    // The legitimate agent is unaffected: it got its work, reports it, reads it.
    let event = next_event(&mut stream).await;
    assert_eq!(event_assignment(&event).subtask_id, "acme/t1");
    let mut done = report(&held, true);
    done.incarnation = incarnation.clone();
    let finished = c
        .perf
        .report_completion(with(&victim, done))
        .await
        .expect("the agent reports its own work")
        .into_inner()
        .assignment
        .unwrap();
    assert_state(&finished, AssignmentState::Completed);
    for reader in [&victim, &acme] {
        let read = c
            .assign
            .get_assignment(with(
                reader,
                pb::GetAssignmentRequest {
                    subtask_id: "acme/t1".into(),
                },
            ))
            .await
            .expect("the holder and the submitter read it")
            .into_inner();
        assert_state(&read.assignment.unwrap(), AssignmentState::Completed);
    }

    // Admin may do what the others may not.
    let admin = sign(&keys.signing, claims(Role::Admin, "ops"));
    c.register
        .deregister(with(
            &admin,
            pb::DeregisterRequest {
                specialist_id: "fe-1".into(),
            },
        ))
        .await
        .expect("admin deregisters anyone");
}

/// With authentication on, the Assign budget follows the token: a new x-caller-id per call does
/// not buy more.
#[tokio::test]
async fn the_rate_limit_follows_the_token_not_the_caller_header() {
    let keys = keys();
    let path = keys.public_path.to_str().unwrap();
    let server =
        TestServer::start_with(&["--auth-key-file", path, "--assign-rate-limit", "2"]).await;
    let mut c = server.clients.clone();
    let acme = orchestrator(&keys.signing, "acme", &[]);
    let mut outcomes = Vec::new();
    for n in 0..3 {
        let mut request = with(&acme, task(&format!("acme/rl-{n}"), "frontend", &[]));
        request.metadata_mut().insert(
            "x-caller-id",
            MetadataValue::try_from(format!("fresh-{n}")).unwrap(),
        );
        outcomes.push(c.assign.assign(request).await.map(|_| ()));
    }
    assert!(outcomes[0].is_ok() && outcomes[1].is_ok(), "{outcomes:?}");
    let status = outcomes
        .pop()
        .unwrap()
        .expect_err("the third is over the budget");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("token:orchestrator:acme"),
        "{status:?}"
    );
}

/// Without --auth-key-file the server refuses to listen beyond loopback unless --insecure.
#[tokio::test]
async fn serving_beyond_loopback_needs_authentication_or_insecure() {
    let args = |extra: &[&str]| {
        let mut args = server_args(&["--listen", "0.0.0.0:0", "--no-metrics"]);
        args.extend(extra.iter().map(|arg| arg.to_string()));
        switchboard::config::ServeConfig::from_args(&args).unwrap()
    };
    let refused = switchboard::server::start(args(&[])).await;
    let message = format!("{:#}", refused.err().expect("refused"));
    assert!(message.contains("--insecure"), "{message}");
    let insecure = switchboard::server::start(args(&["--insecure"]))
        .await
        .expect("--insecure serves anyway");
    insecure.shutdown().await.unwrap();
}

/// The CLI: keygen writes a key and its .pub; issue signs with the key (not with the .pub); a
/// server trusting the .pub accepts the token.
#[tokio::test]
async fn tokens_from_the_cli_work_against_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing.json");
    let binary = env!("CARGO_BIN_EXE_switchboard");
    let keygen = std::process::Command::new(binary)
        .args(["token", "keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{keygen:?}");
    let public = dir.path().join("signing.json.pub");
    let issue = |key_file: &std::path::Path| {
        std::process::Command::new(binary)
            .args(["token", "issue", "--role", "agent", "--specialist", "cli-1"])
            .args(["--ttl", "1h", "--key-file"])
            .arg(key_file)
            .output()
            .unwrap()
    };
    let from_pub = issue(&public);
    assert!(!from_pub.status.success(), "a .pub file cannot issue");
    let issued = issue(&key);
    assert!(issued.status.success(), "{issued:?}");
    let token = String::from_utf8(issued.stdout).unwrap().trim().to_string();

    let server = TestServer::start_with(&["--auth-key-file", public.to_str().unwrap()]).await;
    let mut c = server.clients.clone();
    c.register
        .register(with(&token, register("cli-1")))
        .await
        .expect("the issued token registers its specialist");
    denied(
        c.register.register(with(&token, register("cli-2"))).await,
        "cli-1",
    );
}

/// Behind a mesh sidecar (a trusted proxy address) the identity it forwards is the caller for
/// per-caller limits; from any other peer the header is ignored.
#[tokio::test]
async fn a_trusted_proxy_names_the_caller() {
    let assign_as = |c: &mut Clients, n: usize, identity: &str| {
        let mut request = Request::new(task(&format!("mesh-{n}"), "frontend", &[]));
        request.metadata_mut().insert(
            "x-forwarded-client-cert",
            MetadataValue::try_from(format!("Hash=ab;URI=spiffe://mesh/{identity}")).unwrap(),
        );
        let mut c = c.clone();
        async move { c.assign.assign(request).await.map(|_| ()) }
    };
    let server =
        TestServer::start_with(&["--trusted-proxy", "127.0.0.1", "--assign-rate-limit", "1"]).await;
    let mut c = server.clients.clone();
    assign_as(&mut c, 0, "a").await.expect("a's first");
    assign_as(&mut c, 1, "b")
        .await
        .expect("b has its own budget");
    let status = assign_as(&mut c, 2, "a")
        .await
        .expect_err("a's second is over its budget");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("mesh:spiffe://mesh/a"),
        "{status:?}"
    );

    // Not a trusted proxy: the header names nobody, and both calls share the peer's budget.
    let untrusted = TestServer::start_with(&["--assign-rate-limit", "1"]).await;
    let mut c = untrusted.clients.clone();
    assign_as(&mut c, 0, "a").await.expect("the first");
    let status = assign_as(&mut c, 1, "b")
        .await
        .expect_err("the header buys nothing from an untrusted peer");
    assert!(status.message().contains("ip:127.0.0.1"), "{status:?}");
}
