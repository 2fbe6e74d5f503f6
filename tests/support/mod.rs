//! Shared test harness: an in-process server on 127.0.0.1:0 per test, typed clients, small helpers
//! for the common calls, eventual-condition polling with a deadline, and the real binary as a child
//! process. Every test binary includes this module; not every binary uses every helper.
#![allow(dead_code)]

pub mod redis_server;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

pub use switchboard::pb;
use switchboard::pb::assign_service_client::AssignServiceClient;
use switchboard::pb::performance_service_client::PerformanceServiceClient;
use switchboard::pb::queue_service_client::QueueServiceClient;
use switchboard::pb::register_service_client::RegisterServiceClient;
pub use switchboard::pb::{AssignmentState, Availability, WatchEventKind};
use tonic_health::pb::health_client::HealthClient;

/// How long any eventual condition may take before the test fails.
pub const EVENTUALLY: Duration = Duration::from_secs(10);
/// How often an eventual condition is re-checked.
pub const POLL_EVERY: Duration = Duration::from_millis(20);

/// Flags every test server gets unless the test overrides them.
const DEFAULT_FLAGS: &[(&str, &str)] = &[
    ("--listen", "127.0.0.1:0"),
    ("--metrics-listen", "127.0.0.1:0"),
    ("--assign-rate-limit", "0"),
    ("--log-filter", "warn"),
];

/// Lease settings short enough for expiry tests to finish in about a second, with room for a
/// loaded machine (heartbeats every 100 ms keep a specialist alive).
pub const FAST_LEASES: &[&str] = &[
    "--lease-ttl-ms",
    "600",
    "--heartbeat-interval-ms",
    "100",
    "--sweep-interval-ms",
    "50",
];

/// The default flags with `extra` added; a default whose flag `extra` names is dropped.
pub fn server_args(extra: &[&str]) -> Vec<String> {
    let mut args = Vec::new();
    for (flag, value) in DEFAULT_FLAGS {
        if !extra.contains(flag) {
            args.push(flag.to_string());
            args.push(value.to_string());
        }
    }
    args.extend(extra.iter().map(|arg| arg.to_string()));
    args
}

/// Which store the conformance suite runs against this time.
pub fn test_store() -> String {
    std::env::var("SWITCHBOARD_TEST_STORE").unwrap_or_else(|_| "embedded".into())
}

pub fn test_redis_url() -> String {
    std::env::var("SWITCHBOARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A namespace no other test (or earlier run) uses.
pub fn unique_namespace(label: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{label}-{}-{nanos}-{count}", std::process::id())
}

/// Flags selecting the store under test, unless the test chose one itself, and the guard that
/// removes the test's namespace from the shared Redis (a cluster is private to the run).
fn store_flags(extra: &[&str]) -> (Vec<String>, Option<NamespaceCleanup>) {
    if test_store() != "redis" || extra.contains(&"--redis-url") {
        return (Vec::new(), None);
    }
    let namespace = unique_namespace("test");
    let mut flags = vec![
        "--redis-url".into(),
        test_redis_url(),
        "--redis-namespace".into(),
        namespace.clone(),
    ];
    if test_redis_cluster() {
        flags.push("--redis-cluster".into());
        return (flags, None);
    }
    (
        flags,
        Some(NamespaceCleanup::new(&test_redis_url(), &namespace)),
    )
}

/// Whether SWITCHBOARD_TEST_REDIS_URL names the nodes of a Redis Cluster (scripts/with-cluster.sh).
pub fn test_redis_cluster() -> bool {
    std::env::var("SWITCHBOARD_TEST_REDIS_CLUSTER").is_ok_and(|value| value == "1")
}

/// One in-process server and clients connected to it.
pub struct TestServer {
    server: Option<switchboard::server::RunningServer>,
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub clients: Clients,
    /// Dropped after the server: its Redis namespace goes when the test ends.
    _namespace: Option<NamespaceCleanup>,
}

impl TestServer {
    /// A server with the default test flags.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A server with the default test flags plus `extra` (which win over the defaults), on the
    /// store `SWITCHBOARD_TEST_STORE` names: `embedded` (default) or `redis` (the shared Redis at
    /// `SWITCHBOARD_TEST_REDIS_URL`, default redis://127.0.0.1:6379, in a namespace of its own).
    pub async fn start_with(extra: &[&str]) -> Self {
        // The servers' warnings go to the test's captured output: a failing test shows them.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                std::env::var("RUST_LOG").unwrap_or_else(|_| "switchboard=warn".into()),
            )
            .with_test_writer()
            .try_init();
        let mut args = server_args(extra);
        let (flags, namespace) = store_flags(extra);
        args.extend(flags);
        let config = switchboard::config::ServeConfig::from_args(&args)
            .unwrap_or_else(|error| panic!("bad test flags {args:?}: {error}"));
        let server = switchboard::server::start(config)
            .await
            .expect("the server starts");
        let addr = server.grpc_addr();
        let metrics_addr = server.metrics_addr();
        let clients = Clients::connect(addr).await;
        Self {
            server: Some(server),
            addr,
            metrics_addr,
            clients,
            _namespace: namespace,
        }
    }

    /// A fresh set of clients on their own connection (sharing the incarnations).
    pub async fn connect(&self) -> Clients {
        Clients::connect_sharing(self.addr, self.clients.incarnations.clone()).await
    }

    /// Graceful shutdown: health NOT_SERVING, watch streams end.
    pub async fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
    }
}

/// Typed clients for the four services and health, sharing one channel.
#[derive(Clone)]
pub struct Clients {
    pub register: RegisterServiceClient<Channel>,
    pub assign: AssignServiceClient<Channel>,
    pub queue: QueueServiceClient<Channel>,
    pub perf: PerformanceServiceClient<Channel>,
    pub health: HealthClient<Channel>,
    /// Specialist id -> the incarnation its last Register through these clients (or others
    /// sharing the map) started: the helpers carry it, as an agent does.
    pub incarnations: Incarnations,
}

/// Incarnations by specialist id, shared by clones and by the clients of one test server.
#[derive(Clone, Default, Debug)]
pub struct Incarnations(Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>);

impl Incarnations {
    pub fn get(&self, specialist_id: &str) -> String {
        self.0
            .lock()
            .unwrap()
            .get(specialist_id)
            .cloned()
            .unwrap_or_default()
    }

    pub fn forget(&self, specialist_id: &str) {
        self.0.lock().unwrap().remove(specialist_id);
    }

    pub fn set(&self, specialist_id: &str, incarnation: &str) {
        self.0
            .lock()
            .unwrap()
            .insert(specialist_id.to_string(), incarnation.to_string());
    }
}

pub async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid endpoint")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap_or_else(|error| panic!("connecting to {addr}: {error}"))
}

impl Clients {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::connect_sharing(addr, Incarnations::default()).await
    }

    /// Clients whose helpers carry the incarnations in `incarnations` (another replica's, say).
    pub async fn connect_sharing(addr: SocketAddr, incarnations: Incarnations) -> Self {
        Self::on_channel(channel(addr).await, incarnations)
    }

    /// Clients that connect on first use and reconnect after a failure (a server that is down
    /// for now answers UNAVAILABLE): for a replica the test kills and starts again on its port.
    pub fn lazy(addr: SocketAddr, incarnations: Incarnations) -> Self {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("valid endpoint")
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy();
        Self::on_channel(channel, incarnations)
    }

    fn on_channel(channel: Channel, incarnations: Incarnations) -> Self {
        let limit = 4 * 1024 * 1024;
        Self {
            register: RegisterServiceClient::new(channel.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            assign: AssignServiceClient::new(channel.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            queue: QueueServiceClient::new(channel.clone()),
            perf: PerformanceServiceClient::new(channel.clone()),
            health: HealthClient::new(channel),
            incarnations,
        }
    }

    // ---- RegisterService -------------------------------------------------------------------

    /// Registers (or updates) `id` of `specialist_type` with `capabilities`, ONLINE, default
    /// concurrency. An id these clients registered before is updated under its incarnation;
    /// another starts a new incarnation.
    pub async fn register(
        &mut self,
        id: &str,
        specialist_type: &str,
        capabilities: &[&str],
    ) -> pb::Specialist {
        self.register_full(
            id,
            specialist_type,
            capabilities,
            0,
            Availability::Unspecified,
        )
        .await
    }

    pub async fn register_full(
        &mut self,
        id: &str,
        specialist_type: &str,
        capabilities: &[&str],
        max_concurrency: u32,
        availability: Availability,
    ) -> pb::Specialist {
        let reply = self
            .register
            .register(pb::RegisterRequest {
                specialist_id: id.to_string(),
                specialist_type: specialist_type.to_string(),
                capabilities: strings(capabilities),
                max_concurrency,
                labels: Default::default(),
                availability: availability as i32,
                incarnation: self.incarnations.get(id),
                take_over: false,
            })
            .await
            .unwrap_or_else(|status| panic!("register {id}: {status:?}"))
            .into_inner();
        let specialist = reply.specialist.expect("register returns the specialist");
        self.incarnations
            .set(&specialist.specialist_id, &reply.incarnation);
        specialist
    }

    pub async fn heartbeat(
        &mut self,
        id: &str,
        availability: Availability,
    ) -> pb::HeartbeatResponse {
        self.register
            .heartbeat(pb::HeartbeatRequest {
                specialist_id: id.to_string(),
                availability: availability as i32,
                incarnation: self.incarnations.get(id),
            })
            .await
            .unwrap_or_else(|status| panic!("heartbeat {id}: {status:?}"))
            .into_inner()
    }

    pub async fn specialist(&mut self, id: &str) -> pb::Specialist {
        self.register
            .get_specialist(pb::GetSpecialistRequest {
                specialist_id: id.to_string(),
            })
            .await
            .unwrap_or_else(|status| panic!("get specialist {id}: {status:?}"))
            .into_inner()
            .specialist
            .expect("get specialist returns it")
    }

    pub async fn deregister(&mut self, id: &str) -> Vec<String> {
        let requeued = self
            .register
            .deregister(pb::DeregisterRequest {
                specialist_id: id.to_string(),
            })
            .await
            .unwrap_or_else(|status| panic!("deregister {id}: {status:?}"))
            .into_inner();
        self.incarnations.forget(id);
        requeued.requeued_subtask_ids
    }

    // ---- AssignService ---------------------------------------------------------------------

    /// Assigns and returns the assignment; panics on error.
    pub async fn assign(&mut self, request: pb::AssignRequest) -> pb::Assignment {
        let id = request.subtask_id.clone();
        let response = self
            .assign
            .assign(request)
            .await
            .unwrap_or_else(|status| panic!("assign {id}: {status:?}"))
            .into_inner();
        assert_eq!(response.subtask_id, id, "AssignResponse.subtask_id");
        response.assignment.expect("assign returns an assignment")
    }

    /// Assigns `id` of `specialist_type` requiring `capabilities` (priority 0, no dependencies).
    pub async fn assign_simple(
        &mut self,
        id: &str,
        specialist_type: &str,
        capabilities: &[&str],
    ) -> pb::Assignment {
        self.assign(task(id, specialist_type, capabilities)).await
    }

    pub async fn try_assign(
        &mut self,
        request: pb::AssignRequest,
    ) -> Result<pb::Assignment, Status> {
        self.assign
            .assign(request)
            .await
            .map(|response| response.into_inner().assignment.expect("assignment"))
    }

    pub async fn get(&mut self, subtask_id: &str) -> pb::Assignment {
        self.get_full(subtask_id).await.0
    }

    pub async fn get_full(&mut self, subtask_id: &str) -> (pb::Assignment, pb::Subtask) {
        let response = self
            .assign
            .get_assignment(pb::GetAssignmentRequest {
                subtask_id: subtask_id.to_string(),
            })
            .await
            .unwrap_or_else(|status| panic!("get assignment {subtask_id}: {status:?}"))
            .into_inner();
        (
            response.assignment.expect("assignment"),
            response.subtask.expect("subtask"),
        )
    }

    pub async fn try_release(
        &mut self,
        subtask_id: &str,
        specialist_id: &str,
        epoch: u64,
    ) -> Result<pb::Assignment, Status> {
        self.assign
            .release(pb::ReleaseRequest {
                subtask_id: subtask_id.to_string(),
                specialist_id: specialist_id.to_string(),
                epoch,
                reason: "test release".to_string(),
                incarnation: self.incarnations.get(specialist_id),
            })
            .await
            .map(|response| response.into_inner().assignment.expect("assignment"))
    }

    /// Releases the subtask held per `assignment`; panics on error.
    pub async fn release(&mut self, assignment: &pb::Assignment) -> pb::Assignment {
        self.try_release(
            &assignment.subtask_id,
            &assignment.specialist_id,
            assignment.epoch,
        )
        .await
        .unwrap_or_else(|status| panic!("release {}: {status:?}", assignment.subtask_id))
    }

    pub async fn try_cancel(&mut self, subtask_id: &str) -> Result<pb::Assignment, Status> {
        self.assign
            .cancel(pb::CancelRequest {
                subtask_id: subtask_id.to_string(),
                reason: "test cancel".to_string(),
            })
            .await
            .map(|response| response.into_inner().assignment.expect("assignment"))
    }

    pub async fn cancel(&mut self, subtask_id: &str) -> pb::Assignment {
        self.try_cancel(subtask_id)
            .await
            .unwrap_or_else(|status| panic!("cancel {subtask_id}: {status:?}"))
    }

    /// Opens a watch stream (the server has subscribed once this returns).
    pub async fn watch(&mut self, specialist_id: &str) -> Streaming<pb::WatchAssignmentsResponse> {
        self.assign
            .watch_assignments(pb::WatchAssignmentsRequest {
                specialist_id: specialist_id.to_string(),
                incarnation: self.incarnations.get(specialist_id),
            })
            .await
            .unwrap_or_else(|status| panic!("watch {specialist_id}: {status:?}"))
            .into_inner()
    }

    // ---- PerformanceService ----------------------------------------------------------------

    pub async fn try_report(
        &mut self,
        subtask_id: &str,
        specialist_id: &str,
        epoch: u64,
        success: bool,
    ) -> Result<pb::Assignment, Status> {
        self.perf
            .report_completion(pb::ReportCompletionRequest {
                subtask_id: subtask_id.to_string(),
                specialist_id: specialist_id.to_string(),
                epoch,
                success,
                completion_time_ms: 10,
                quality_score: if success { 0.9 } else { 0.1 },
                detail: String::new(),
                incarnation: self.incarnations.get(specialist_id),
            })
            .await
            .map(|response| response.into_inner().assignment.expect("assignment"))
    }

    /// Reports the outcome of the subtask held per `assignment`; panics on error.
    pub async fn report(&mut self, assignment: &pb::Assignment, success: bool) -> pb::Assignment {
        self.try_report(
            &assignment.subtask_id,
            &assignment.specialist_id,
            assignment.epoch,
            success,
        )
        .await
        .unwrap_or_else(|status| panic!("report {}: {status:?}", assignment.subtask_id))
    }

    pub async fn model_status(&mut self) -> pb::GetModelStatusResponse {
        self.perf
            .get_model_status(pb::GetModelStatusRequest {})
            .await
            .unwrap_or_else(|status| panic!("get model status: {status:?}"))
            .into_inner()
    }

    // ---- QueueService ----------------------------------------------------------------------

    pub async fn queue_stats(&mut self, specialist_type: &str) -> pb::TypeQueueStats {
        let mut types = self
            .queue
            .get_queue_stats(pb::GetQueueStatsRequest {
                specialist_type: specialist_type.to_string(),
            })
            .await
            .unwrap_or_else(|status| panic!("queue stats {specialist_type}: {status:?}"))
            .into_inner()
            .types;
        assert_eq!(
            types.len(),
            1,
            "one entry for type {specialist_type}: {types:?}"
        );
        types.remove(0)
    }

    pub async fn queue_position(&mut self, subtask_id: &str) -> pb::GetQueuePositionResponse {
        self.queue
            .get_queue_position(pb::GetQueuePositionRequest {
                subtask_id: subtask_id.to_string(),
            })
            .await
            .unwrap_or_else(|status| panic!("queue position {subtask_id}: {status:?}"))
            .into_inner()
    }

    /// Every queued subtask id of `specialist_type`, in queue order (walks every page).
    pub async fn queued_ids(&mut self, specialist_type: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .queue
                .list_queue(pb::ListQueueRequest {
                    specialist_type: specialist_type.to_string(),
                    page_size: 100,
                    page_token: token.clone(),
                })
                .await
                .unwrap_or_else(|status| panic!("list queue {specialist_type}: {status:?}"))
                .into_inner();
            ids.extend(page.subtasks.into_iter().map(|entry| entry.subtask_id));
            if page.next_page_token.is_empty() {
                return ids;
            }
            token = page.next_page_token;
        }
    }
}

// ---- request builders ------------------------------------------------------------------------

pub fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

/// A subtask request with priority 0 and no dependencies.
pub fn task(id: &str, specialist_type: &str, capabilities: &[&str]) -> pb::AssignRequest {
    pb::AssignRequest {
        subtask_id: id.to_string(),
        specialist_type: specialist_type.to_string(),
        required_capabilities: strings(capabilities),
        priority: 0,
        parent_id: String::new(),
        depends_on: Vec::new(),
        payload: Vec::new(),
        require_all_capabilities: false,
        description: String::new(),
        estimated_duration_ms: None,
    }
}

// ---- assertions ------------------------------------------------------------------------------

pub fn state_of(assignment: &pb::Assignment) -> AssignmentState {
    AssignmentState::try_from(assignment.state).expect("known assignment state")
}

#[track_caller]
pub fn assert_state(assignment: &pb::Assignment, expected: AssignmentState) {
    assert_eq!(
        state_of(assignment),
        expected,
        "state of {}: {assignment:#?}",
        assignment.subtask_id
    );
}

#[track_caller]
pub fn assert_assigned_to(assignment: &pb::Assignment, specialist_id: &str) {
    assert_state(assignment, AssignmentState::Assigned);
    assert_eq!(
        assignment.specialist_id, specialist_id,
        "holder of {}: {assignment:#?}",
        assignment.subtask_id
    );
    assert!(
        assignment.epoch > 0,
        "an assignment has an epoch: {assignment:#?}"
    );
}

#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got Ok({value:#?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}

#[track_caller]
pub fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() < 1e-9,
        "{what}: expected {expected}, got {actual}"
    );
}

/// The field names of the bad-request violations in an INVALID_ARGUMENT status.
pub fn violated_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .into_iter()
                .map(|violation| violation.field)
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts `result` is INVALID_ARGUMENT with a bad-request violation naming `field`.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) {
    let status = assert_code(result, Code::InvalidArgument);
    let fields = violated_fields(&status);
    assert!(
        fields.iter().any(|violated| violated == field),
        "expected a bad-request violation for {field:?}, got {fields:?} ({status:?})"
    );
}

// ---- waiting ---------------------------------------------------------------------------------

/// Re-runs `check` every POLL_EVERY until it returns Some, failing after `timeout`.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut interval = tokio::time::interval(POLL_EVERY);
    loop {
        interval.tick().await;
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
    }
}

/// Polls GetAssignment until the subtask satisfies `accept`; returns that assignment.
pub async fn eventually_assignment<F>(
    clients: &Clients,
    subtask_id: &str,
    what: &str,
    accept: F,
) -> pb::Assignment
where
    F: Fn(&pb::Assignment) -> bool,
{
    let accept = &accept;
    poll_until(&format!("{subtask_id}: {what}"), EVENTUALLY, || {
        let mut clients = clients.clone();
        let subtask_id = subtask_id.to_string();
        async move {
            let assignment = clients.get(&subtask_id).await;
            accept(&assignment).then_some(assignment)
        }
    })
    .await
}

/// The next message of a watch stream, within `EVENTUALLY`.
pub async fn next_event(
    stream: &mut Streaming<pb::WatchAssignmentsResponse>,
) -> pb::WatchAssignmentsResponse {
    match tokio::time::timeout(EVENTUALLY, stream.message()).await {
        Err(_) => panic!("no watch event within {EVENTUALLY:?}"),
        Ok(Err(status)) => panic!("watch stream failed: {status:?}"),
        Ok(Ok(None)) => panic!("watch stream ended"),
        Ok(Ok(Some(event))) => event,
    }
}

/// Asserts nothing arrives on the stream for `quiet`.
pub async fn assert_no_event(
    stream: &mut Streaming<pb::WatchAssignmentsResponse>,
    quiet: Duration,
) {
    if let Ok(message) = tokio::time::timeout(quiet, stream.message()).await {
        panic!("expected no watch event, got {message:?}");
    }
}

pub fn event_kind(event: &pb::WatchAssignmentsResponse) -> WatchEventKind {
    WatchEventKind::try_from(event.kind).expect("known watch event kind")
}

pub fn event_assignment(event: &pb::WatchAssignmentsResponse) -> &pb::Assignment {
    event
        .assignment
        .as_ref()
        .expect("watch event carries the assignment")
}

// ---- metrics ---------------------------------------------------------------------------------

/// GET /metrics over plain HTTP/1.0; returns (status line, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|error| panic!("connecting to {addr}: {error}"));
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("send request");
    let mut raw = Vec::new();
    tokio::time::timeout(EVENTUALLY, stream.read_to_end(&mut raw))
        .await
        .expect("the metrics endpoint answers in time")
        .expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("malformed HTTP response: {text:?}"));
    let status_line = head.lines().next().unwrap_or_default().to_string();
    (status_line, body.to_string())
}

// ---- the binary as a child process -----------------------------------------------------------

/// `switchboard serve` as a child process, killed on drop; its stdout lines are collected.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    lines: Arc<Mutex<Vec<String>>>,
}

fn field_after(line: &str, key: &str) -> Option<String> {
    let start = line.find(key)? + key.len();
    let rest = &line[start..];
    let value: String = rest
        .chars()
        .take_while(|character| {
            !character.is_whitespace() && *character != '"' && *character != ','
        })
        .collect();
    (!value.is_empty()).then_some(value)
}

impl ServerProcess {
    /// Starts the binary with the default test flags plus `extra`; waits for `grpc_addr=` on stdout.
    pub fn spawn(extra: &[&str]) -> Self {
        let mut args = vec!["serve".to_string()];
        let mut flags = server_args(extra);
        // The subprocess logs at info so that its listening line is printed.
        if let Some(index) = flags.iter().position(|arg| arg == "--log-filter") {
            if !extra.contains(&"--log-filter") {
                flags[index + 1] = "info".to_string();
            }
        }
        args.extend(flags);
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(&args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning the switchboard binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                let mut sent = false;
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if !sent {
                        if let Some(addr) = field_after(&line, "grpc_addr=") {
                            let metrics = field_after(&line, "metrics_addr=");
                            let _ = addr_tx.send((addr, metrics));
                            sent = true;
                        }
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let received = addr_rx.recv_timeout(EVENTUALLY);
        let (addr, metrics) = match received {
            Ok(found) => found,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the binary printed no grpc_addr= within {EVENTUALLY:?}; stdout: {:#?}",
                    lines.lock().unwrap()
                );
            }
        };
        let addr: SocketAddr = addr
            .parse()
            .unwrap_or_else(|error| panic!("grpc_addr {addr:?}: {error}"));
        let metrics_addr = metrics.and_then(|value| value.parse().ok());
        Self {
            child,
            addr,
            metrics_addr,
            lines,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stdout lines printed so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Sends a signal with the `kill` command (e.g. "TERM", "INT").
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Waits for the process to exit, up to `timeout`; None if it is still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A test-local id prefix, so ids read well in failure messages.
pub fn ids(prefix: &str, count: usize) -> Vec<String> {
    (1..=count).map(|n| format!("{prefix}-{n}")).collect()
}

/// Removes the namespace's keys from the shared Redis when the test ends (also on a panic).
pub struct NamespaceCleanup {
    redis_url: String,
    namespace: String,
}

impl NamespaceCleanup {
    pub fn new(redis_url: &str, namespace: &str) -> Self {
        Self {
            redis_url: redis_url.to_string(),
            namespace: namespace.to_string(),
        }
    }
}

impl Drop for NamespaceCleanup {
    fn drop(&mut self) {
        let patterns =
            switchboard::store::redis::keys::Keys::new(self.namespace.clone()).patterns();
        let pattern = patterns.join(" ");
        use redis::Commands;
        let cleaned = redis::Client::open(self.redis_url.as_str())
            .and_then(|client| client.get_connection())
            .and_then(|mut connection| {
                let mut keys = Vec::new();
                for pattern in &patterns {
                    keys.extend(
                        connection
                            .scan_match(pattern)?
                            .collect::<redis::RedisResult<Vec<String>>>()?,
                    );
                }
                for batch in keys.chunks(500) {
                    redis::cmd("UNLINK")
                        .arg(batch)
                        .query::<()>(&mut connection)?;
                }
                Ok(())
            });
        if let Err(error) = cleaned {
            eprintln!("could not remove the keys {pattern}: {error}");
        }
    }
}
