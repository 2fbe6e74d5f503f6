//! Fuzzing every request's decode and validation path through a real server: random bytes,
//! structured garbage and gRPC framing for each RPC of the four services. Every answer is a
//! documented status (a body that is not a valid message of its type is INVALID_ARGUMENT), no
//! thread of the server panics, the server stays up and shuts down cleanly, and what a call stored
//! reads back.
//!
//! `SWITCHBOARD_FUZZ_CASES` cases per property and RPC (64 by default: the short run of `cargo
//! test`; `make fuzz` runs thousands), seeded from `SWITCHBOARD_FUZZ_SEED` (else the clock; a
//! failure prints the seed). `SWITCHBOARD_TEST_STORE=redis` runs it on the shared Redis.

#[path = "fuzz/framing.rs"]
mod framing;
#[path = "fuzz/strategies.rs"]
mod strategies;
mod support;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use proptest::prelude::*;
use proptest::test_runner::{
    Config as ProptestConfig, RngSeed, TestCaseResult, TestError, TestRunner,
};
use prost::Message;
use tokio::runtime::Runtime;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::HealthCheckRequest;

use support::{pb, Clients, TestServer};
use switchboard::api::CALLER_ID_METADATA;
use switchboard::domain::limits::MAX_PRIORITY;
use switchboard::learned_scorer::features::{SubtaskContext, SubtaskFeatures};

// ---- what an answer may be ------------------------------------------------------------------

/// The statuses the API documents. Never INTERNAL, UNKNOWN, OUT_OF_RANGE, UNIMPLEMENTED (the
/// methods exist) or DEADLINE_EXCEEDED (no call here comes near the deadline).
const DOCUMENTED: [Code; 9] = [
    Code::Ok,
    Code::InvalidArgument,
    Code::NotFound,
    Code::FailedPrecondition,
    Code::AlreadyExists,
    Code::ResourceExhausted,
    Code::Unavailable,
    Code::PermissionDenied,
    Code::Unauthenticated,
];

/// The server's message size limit (src/server: a 1 MiB payload plus the rest of the request).
const MAX_MESSAGE_BYTES: usize = 2 * 1024 * 1024;
/// Longer than this, a call counts as a hang.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an opened WatchAssignments stream is read (its replay arrives at once).
const STREAM_LOOK: Duration = Duration::from_millis(5);
/// The configured specialist types (the test servers' default).
const TYPES: [&str; 5] = ["frontend", "backend", "testing", "docs", "general"];

/// One RPC: its path, how to tell its request and response types from garbage, and where its
/// request keeps strings.
#[derive(Clone, Copy)]
struct Rpc {
    service: &'static str,
    method: &'static str,
    server_streaming: bool,
    /// Field numbers of the request's string fields (a map<string, string> counts).
    string_fields: &'static [u64],
    request_decodes: fn(&[u8]) -> bool,
    response_decodes: fn(&[u8]) -> bool,
}

impl Rpc {
    fn path(&self) -> String {
        format!("/switchboard.v1.{}/{}", self.service, self.method)
    }
}

impl fmt::Display for Rpc {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.service, self.method)
    }
}

fn decodes<M: Message + Default>(bytes: &[u8]) -> bool {
    M::decode(bytes).is_ok()
}

fn rpc<Request: Message + Default, Response: Message + Default>(
    service: &'static str,
    method: &'static str,
    string_fields: &'static [u64],
) -> Rpc {
    Rpc {
        service,
        method,
        server_streaming: false,
        string_fields,
        request_decodes: decodes::<Request>,
        response_decodes: decodes::<Response>,
    }
}

fn register_service() -> Vec<Rpc> {
    let service = "RegisterService";
    vec![
        rpc::<pb::RegisterRequest, pb::RegisterResponse>(service, "Register", &[1, 2, 3, 5, 7]),
        rpc::<pb::HeartbeatRequest, pb::HeartbeatResponse>(service, "Heartbeat", &[1, 3]),
        rpc::<pb::DeregisterRequest, pb::DeregisterResponse>(service, "Deregister", &[1]),
        rpc::<pb::GetSpecialistRequest, pb::GetSpecialistResponse>(service, "GetSpecialist", &[1]),
        rpc::<pb::ListSpecialistsRequest, pb::ListSpecialistsResponse>(
            service,
            "ListSpecialists",
            &[1, 3],
        ),
    ]
}

fn assign_service() -> Vec<Rpc> {
    let service = "AssignService";
    vec![
        rpc::<pb::AssignRequest, pb::AssignResponse>(service, "Assign", &[1, 2, 3, 5, 6, 9]),
        rpc::<pb::GetAssignmentRequest, pb::GetAssignmentResponse>(service, "GetAssignment", &[1]),
        rpc::<pb::ReleaseRequest, pb::ReleaseResponse>(service, "Release", &[1, 2, 4, 5]),
        rpc::<pb::CancelRequest, pb::CancelResponse>(service, "Cancel", &[1, 2]),
        Rpc {
            server_streaming: true,
            ..rpc::<pb::WatchAssignmentsRequest, pb::WatchAssignmentsResponse>(
                service,
                "WatchAssignments",
                &[1, 2],
            )
        },
    ]
}

fn queue_and_performance_services() -> Vec<Rpc> {
    vec![
        rpc::<pb::GetQueuePositionRequest, pb::GetQueuePositionResponse>(
            "QueueService",
            "GetQueuePosition",
            &[1],
        ),
        rpc::<pb::ListQueueRequest, pb::ListQueueResponse>("QueueService", "ListQueue", &[1, 3]),
        rpc::<pb::GetQueueStatsRequest, pb::GetQueueStatsResponse>(
            "QueueService",
            "GetQueueStats",
            &[1],
        ),
        rpc::<pb::ReportCompletionRequest, pb::ReportCompletionResponse>(
            "PerformanceService",
            "ReportCompletion",
            &[1, 2, 7, 8],
        ),
        rpc::<pb::GetPerformanceRequest, pb::GetPerformanceResponse>(
            "PerformanceService",
            "GetPerformance",
            &[1],
        ),
        rpc::<pb::GetModelStatusRequest, pb::GetModelStatusResponse>(
            "PerformanceService",
            "GetModelStatus",
            &[],
        ),
    ]
}

fn every_rpc() -> Vec<Rpc> {
    let mut rpcs = register_service();
    rpcs.extend(assign_service());
    rpcs.extend(queue_and_performance_services());
    rpcs
}

/// One request: the message bytes as sent, and an `x-caller-id` (Assign's rate limit reads it).
#[derive(Clone)]
struct Case {
    body: Bytes,
    caller_id: Option<String>,
}

/// Enough of a case to reproduce it: the caller id and the body (its first 2 KiB past that).
impl fmt::Debug for Case {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.body[..self.body.len().min(2048)];
        write!(
            formatter,
            "Case {{ caller_id: {:?}, body ({} bytes): {:?}{} }}",
            self.caller_id,
            self.body.len(),
            Bytes::copy_from_slice(shown),
            if shown.len() < self.body.len() {
                "..."
            } else {
                ""
            }
        )
    }
}

/// What the server answered: the reply messages (a stream's first ones), or a status.
type Answer = Result<Vec<Bytes>, Status>;

/// A documented status; for a body that is not the method's request type, INVALID_ARGUMENT.
fn check_code(
    rpc: &Rpc,
    code: Code,
    body_decodes: bool,
    detail: &dyn fmt::Debug,
) -> TestCaseResult {
    prop_assert!(
        DOCUMENTED.contains(&code),
        "{rpc}: {code:?} is not a documented status: {detail:?}"
    );
    if !body_decodes {
        prop_assert_eq!(
            code,
            Code::InvalidArgument,
            "{}: a body that is not a valid message must be INVALID_ARGUMENT: {:?}",
            rpc,
            detail
        );
    }
    Ok(())
}

/// Every answer is a documented status; an OK one carries the method's response type.
fn check_answer(rpc: &Rpc, case: &Case, answer: &Answer) -> TestCaseResult {
    let body_decodes = (rpc.request_decodes)(&case.body);
    match answer {
        Ok(replies) => {
            check_code(rpc, Code::Ok, body_decodes, &"OK")?;
            for reply in replies {
                prop_assert!(
                    (rpc.response_decodes)(reply),
                    "{rpc}: an OK reply that is not its response type: {reply:?}"
                );
            }
            Ok(())
        }
        Err(status) => check_code(rpc, status.code(), body_decodes, status),
    }
}

// ---- a raw gRPC client ----------------------------------------------------------------------

/// Sends and receives message bytes as they are: the server alone decodes them.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, destination: &mut EncodeBuf<'_>) -> Result<(), Status> {
        destination.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, source: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(source.copy_to_bytes(source.remaining())))
    }
}

async fn call(channel: &Channel, rpc: &Rpc, case: &Case) -> Answer {
    let mut grpc = tonic::client::Grpc::new(channel.clone()).max_decoding_message_size(usize::MAX);
    // A channel that cannot get ready means the server went away: UNKNOWN fails the check.
    grpc.ready()
        .await
        .map_err(|error| Status::unknown(format!("the channel is not ready: {error}")))?;
    let mut request = tonic::Request::new(case.body.clone());
    if let Some(caller_id) = &case.caller_id {
        if let Ok(value) = MetadataValue::try_from(caller_id.as_str()) {
            request.metadata_mut().insert(CALLER_ID_METADATA, value);
        }
    }
    let path: PathAndQuery = rpc.path().parse().expect("a valid path");
    if !rpc.server_streaming {
        let reply = grpc.unary(request, path, RawCodec).await?;
        return Ok(vec![reply.into_inner()]);
    }
    let mut stream = grpc
        .server_streaming(request, path, RawCodec)
        .await?
        .into_inner();
    let mut replies = Vec::new();
    loop {
        match tokio::time::timeout(STREAM_LOOK, stream.message()).await {
            // Open and quiet after its replay: dropping the stream frees its place.
            Err(_) | Ok(Ok(None)) => return Ok(replies),
            Ok(Ok(Some(reply))) => replies.push(reply),
            Ok(Err(status)) => return Err(status),
        }
    }
}

async fn call_within_timeout(channel: &Channel, rpc: &Rpc, case: &Case) -> Answer {
    match tokio::time::timeout(CALL_TIMEOUT, call(channel, rpc, case)).await {
        Ok(answer) => answer,
        Err(_) => Err(Status::unknown(format!(
            "no answer within {CALL_TIMEOUT:?} (a hang)"
        ))),
    }
}

/// A channel that takes answers with headers of any size: the properties look at status codes,
/// `errors_fit_a_stock_client` at how large an error gets.
async fn roomy_channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid endpoint")
        .http2_max_header_list_size(u32::MAX)
        .connect()
        .await
        .unwrap_or_else(|error| panic!("connecting to {addr}: {error}"))
}

// ---- panics ---------------------------------------------------------------------------------

/// Threads of the runtimes that run the servers (and the clients) are named so.
const RUNTIME_THREADS: &str = "fuzz-runtime";
/// Panics on those threads: a handler that panics only kills its connection's task, which a
/// client may see as UNAVAILABLE, so they are counted where they happen.
static SERVER_PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_server_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_runtime = std::thread::current()
                .name()
                .is_some_and(|name| name.starts_with(RUNTIME_THREADS));
            if on_runtime {
                SERVER_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

#[track_caller]
fn assert_no_panics(what: &str) {
    let panics = SERVER_PANICS.load(Ordering::SeqCst);
    assert_eq!(panics, 0, "{what}: {panics} panics on the server's threads");
}

// ---- the server under test ------------------------------------------------------------------

/// Ids that exist when the fuzzing starts, so that garbage naming them reaches the store's rules.
#[derive(Debug, Clone)]
struct Pool {
    specialist_ids: Vec<String>,
    incarnations: Vec<String>,
    subtask_ids: Vec<String>,
    /// The pool's subtasks that were assigned, as their holder would quote them.
    holders: Vec<Holder>,
}

#[derive(Debug, Clone)]
struct Holder {
    subtask_id: String,
    specialist_id: String,
    epoch: u64,
    incarnation: String,
}

/// A server on a runtime of its own, with a pool of specialists and subtasks.
struct Target {
    runtime: Runtime,
    server: Option<TestServer>,
    clients: Clients,
    channel: Channel,
    pool: Pool,
    seed: u64,
    codes: CodeCounts,
}

impl Target {
    fn start() -> Self {
        count_server_panics();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(RUNTIME_THREADS)
            .enable_all()
            .build()
            .expect("a runtime");
        // The rate limiter runs (with a bound no case reaches) so that caller ids go through it.
        let server = runtime.block_on(TestServer::start_with(&["--assign-rate-limit", "1000000"]));
        let channel = runtime.block_on(roomy_channel(server.addr));
        let mut clients = server.clients.clone();
        let pool = runtime.block_on(fill_pool(&mut clients));
        Self {
            runtime,
            server: Some(server),
            clients,
            channel,
            pool,
            seed: fuzz_seed(),
            codes: CodeCounts::default(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.as_ref().expect("running").addr
    }

    /// Runs `strategy`'s cases through `test`; panics with the seed and the smallest failing case.
    fn run<S>(&self, what: &str, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
    where
        S: Strategy,
        S::Value: fmt::Debug,
    {
        let seed = self.seed ^ fnv(what);
        let mut runner = TestRunner::new(ProptestConfig {
            cases: fuzz_cases(),
            max_shrink_iters: 256,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(seed),
            ..ProptestConfig::default()
        });
        let started = Instant::now();
        match runner.run(&strategy, test) {
            Ok(()) => {}
            Err(TestError::Fail(reason, case)) => panic!(
                "{what}: {reason}\nsmallest failing case: {case:#?}\n(SWITCHBOARD_FUZZ_SEED={})",
                self.seed
            ),
            Err(TestError::Abort(reason)) => panic!(
                "{what}: aborted: {reason} (SWITCHBOARD_FUZZ_SEED={})",
                self.seed
            ),
        }
        assert_no_panics(what);
        eprintln!(
            "{what}: {} cases in {:.2?}",
            fuzz_cases(),
            started.elapsed()
        );
    }

    /// Calls `rpc` with `case` and checks the answer; returns it for further checks.
    fn call_checked(&self, rpc: &Rpc, case: &Case) -> Result<Answer, TestCaseError> {
        let answer = self
            .runtime
            .block_on(call_within_timeout(&self.channel, rpc, case));
        self.codes
            .count(rpc, answer.as_ref().map_or_else(Status::code, |_| Code::Ok));
        check_answer(rpc, case, &answer)?;
        Ok(answer)
    }

    /// What an accepted Register or Assign stored is what a read returns.
    fn read_back(&self, rpc: &Rpc, case: &Case, replies: &[Bytes]) -> TestCaseResult {
        let mut clients = self.clients.clone();
        match rpc.method {
            "Register" => {
                let reply = pb::RegisterResponse::decode(replies[0].clone())
                    .map_err(|error| TestCaseError::fail(format!("RegisterResponse: {error}")))?;
                let registered = reply
                    .specialist
                    .ok_or_else(|| TestCaseError::fail("Register returned no specialist"))?;
                let read = self.runtime.block_on(clients.register.get_specialist(
                    pb::GetSpecialistRequest {
                        specialist_id: registered.specialist_id.clone(),
                    },
                ));
                let read = read
                    .map_err(|status| {
                        TestCaseError::fail(format!(
                            "GetSpecialist of a registered {:?}: {status:?}",
                            registered.specialist_id
                        ))
                    })?
                    .into_inner()
                    .specialist
                    .ok_or_else(|| TestCaseError::fail("GetSpecialist returned no specialist"))?;
                prop_assert_eq!(&read.specialist_type, &registered.specialist_type);
                prop_assert_eq!(&read.capabilities, &registered.capabilities);
                prop_assert_eq!(&read.labels, &registered.labels);
                prop_assert_eq!(read.max_concurrency, registered.max_concurrency);
            }
            "Assign" => {
                let request = pb::AssignRequest::decode(case.body.clone())
                    .map_err(|error| TestCaseError::fail(format!("AssignRequest: {error}")))?;
                let read = self.runtime.block_on(clients.assign.get_assignment(
                    pb::GetAssignmentRequest {
                        subtask_id: request.subtask_id.clone(),
                    },
                ));
                let subtask = read
                    .map_err(|status| {
                        TestCaseError::fail(format!(
                            "GetAssignment of an accepted {:?}: {status:?}",
                            request.subtask_id
                        ))
                    })?
                    .into_inner()
                    .subtask
                    .ok_or_else(|| TestCaseError::fail("GetAssignment returned no subtask"))?;
                let mut capabilities = request.required_capabilities.clone();
                capabilities.sort();
                capabilities.dedup();
                let mut depends_on = request.depends_on.clone();
                depends_on.sort();
                depends_on.dedup();
                prop_assert_eq!(&subtask.specialist_type, &request.specialist_type);
                prop_assert_eq!(&subtask.required_capabilities, &capabilities);
                prop_assert_eq!(subtask.priority, request.priority);
                prop_assert_eq!(&subtask.parent_id, &request.parent_id);
                prop_assert_eq!(&subtask.depends_on, &depends_on);
                prop_assert!(subtask.payload == request.payload, "the payload changed");
                prop_assert_eq!(
                    subtask.require_all_capabilities,
                    request.require_all_capabilities
                );
            }
            _ => {}
        }
        Ok(())
    }

    /// The server is up and serving after a property ran: health, a read and a write.
    fn assert_alive(&self, what: &str) {
        assert_no_panics(what);
        let mut clients = self.clients.clone();
        self.runtime.block_on(async {
            for service in std::iter::once("").chain(switchboard::server::SERVICE_NAMES) {
                let health = clients
                    .health
                    .check(HealthCheckRequest {
                        service: service.to_string(),
                    })
                    .await
                    .unwrap_or_else(|status| panic!("{what}: health of {service:?}: {status:?}"))
                    .into_inner();
                assert_eq!(
                    health.status,
                    ServingStatus::Serving as i32,
                    "{what}: health of {service:?}"
                );
            }
            clients
                .perf
                .get_model_status(pb::GetModelStatusRequest {})
                .await
                .unwrap_or_else(|status| panic!("{what}: GetModelStatus: {status:?}"));
            let id = support::unique_namespace("fz-alive");
            clients.register(&id, "frontend", &["rust"]).await;
            clients.deregister(&id).await;
        });
    }

    /// Everything the fuzzing stored reads back: every specialist listed, fetched and its
    /// performance computed; every queue listed and its subtasks fetched; the stats computed.
    fn assert_store_reads_back(&self, what: &str) {
        let mut clients = self.clients.clone();
        let pool = self.pool.clone();
        self.runtime.block_on(async {
            let mut token = String::new();
            loop {
                let page = clients
                    .register
                    .list_specialists(pb::ListSpecialistsRequest {
                        specialist_type: String::new(),
                        page_size: 20,
                        page_token: token.clone(),
                    })
                    .await
                    .unwrap_or_else(|status| panic!("{what}: ListSpecialists: {status:?}"))
                    .into_inner();
                for specialist in &page.specialists {
                    let id = &specialist.specialist_id;
                    clients
                        .register
                        .get_specialist(pb::GetSpecialistRequest {
                            specialist_id: id.clone(),
                        })
                        .await
                        .unwrap_or_else(|status| {
                            panic!("{what}: GetSpecialist {id:?}: {status:?}")
                        });
                    clients
                        .perf
                        .get_performance(pb::GetPerformanceRequest {
                            specialist_id: id.clone(),
                        })
                        .await
                        .unwrap_or_else(|status| {
                            panic!("{what}: GetPerformance {id:?}: {status:?}")
                        });
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            clients
                .queue
                .get_queue_stats(pb::GetQueueStatsRequest::default())
                .await
                .unwrap_or_else(|status| panic!("{what}: GetQueueStats: {status:?}"));
            let mut queued = Vec::new();
            for specialist_type in TYPES {
                let mut token = String::new();
                loop {
                    let page = clients
                        .queue
                        .list_queue(pb::ListQueueRequest {
                            specialist_type: specialist_type.to_string(),
                            page_size: 100,
                            page_token: token.clone(),
                        })
                        .await
                        .unwrap_or_else(|status| {
                            panic!("{what}: ListQueue {specialist_type}: {status:?}")
                        })
                        .into_inner();
                    queued.extend(page.subtasks.into_iter().map(|entry| entry.subtask_id));
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    token = page.next_page_token;
                }
            }
            for subtask_id in queued.iter().chain(&pool.subtask_ids) {
                clients
                    .assign
                    .get_assignment(pb::GetAssignmentRequest {
                        subtask_id: subtask_id.clone(),
                    })
                    .await
                    .unwrap_or_else(|status| {
                        panic!("{what}: GetAssignment {subtask_id:?}: {status:?}")
                    });
            }
        });
    }

    /// Prints the status counts, checks the store reads back, and shuts the server down within
    /// a bound: no call or stream the fuzzing opened is left hanging.
    fn finish(mut self, what: &str) {
        self.codes.print(what);
        self.assert_store_reads_back(what);
        let Some(mut server) = self.server.take() else {
            return;
        };
        let started = Instant::now();
        self.runtime.block_on(server.shutdown());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: shutdown took {:?}",
            started.elapsed()
        );
        assert_no_panics(what);
    }
}

async fn fill_pool(clients: &mut Clients) -> Pool {
    let mut specialist_ids = Vec::new();
    let mut incarnations = Vec::new();
    for (index, specialist_type) in ["frontend", "backend", "frontend", "general"]
        .into_iter()
        .enumerate()
    {
        let id = format!("fz-spec-{index}");
        clients
            .register(&id, specialist_type, &["rust", "sql"])
            .await;
        incarnations.push(clients.incarnations.get(&id));
        specialist_ids.push(id);
    }
    let mut subtask_ids = Vec::new();
    let mut holders = Vec::new();
    for index in 0..8 {
        let id = format!("fz-task-{index}");
        let specialist_type = ["frontend", "backend", "testing"][index % 3];
        let assignment = clients.assign_simple(&id, specialist_type, &["rust"]).await;
        if !assignment.specialist_id.is_empty() {
            holders.push(Holder {
                subtask_id: id.clone(),
                incarnation: clients.incarnations.get(&assignment.specialist_id),
                specialist_id: assignment.specialist_id,
                epoch: assignment.epoch,
            });
        }
        subtask_ids.push(id);
    }
    assert!(!holders.is_empty(), "some pool subtask is assigned");
    Pool {
        specialist_ids,
        incarnations,
        subtask_ids,
        holders,
    }
}

fn fuzz_cases() -> u32 {
    std::env::var("SWITCHBOARD_FUZZ_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(64)
}

fn fuzz_seed() -> u64 {
    std::env::var("SWITCHBOARD_FUZZ_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos() as u64)
        })
}

/// A property's own seed, derived from its name.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How often each status answered each RPC, printed after a run (see it with `--nocapture`):
/// how deep the garbage got.
#[derive(Default)]
struct CodeCounts(Mutex<BTreeMap<String, usize>>);

impl CodeCounts {
    fn count(&self, rpc: &Rpc, code: Code) {
        *self
            .0
            .lock()
            .unwrap()
            .entry(format!("{rpc} {code:?}"))
            .or_default() += 1;
    }

    fn print(&self, what: &str) {
        let counts = self.0.lock().unwrap();
        let summary: Vec<String> = counts
            .iter()
            .map(|(key, count)| format!("{key}: {count}"))
            .collect();
        eprintln!("{what}: {}", summary.join(", "));
    }
}

// ---- the properties -------------------------------------------------------------------------

/// Random bytes into each of `rpcs`.
fn fuzz_raw_bytes(label: &str, rpcs: Vec<Rpc>) {
    let target = Target::start();
    for rpc in &rpcs {
        let what = format!("raw bytes into {rpc}");
        let strategy = strategies::cases(strategies::raw_body(rpc, &target.pool));
        target.run(&what, strategy, |case| {
            target.call_checked(rpc, &case).map(drop)
        });
        target.assert_alive(&what);
    }
    target.finish(label);
}

/// Valid messages with random field values into each of `rpcs`; what Register and Assign accept
/// reads back as it was sent.
fn fuzz_structured(label: &str, rpcs: Vec<Rpc>) {
    let target = Target::start();
    for rpc in &rpcs {
        let what = format!("structured garbage into {rpc}");
        let strategy = strategies::cases(strategies::structured(rpc, &target.pool));
        target.run(&what, strategy, |case| {
            if let Ok(replies) = target.call_checked(rpc, &case)? {
                target.read_back(rpc, &case, &replies)?;
            }
            Ok(())
        });
        target.assert_alive(&what);
    }
    target.finish(label);
}

#[test]
fn raw_bytes_into_register_service() {
    fuzz_raw_bytes("raw bytes into RegisterService", register_service());
}

#[test]
fn raw_bytes_into_assign_service() {
    fuzz_raw_bytes("raw bytes into AssignService", assign_service());
}

#[test]
fn raw_bytes_into_queue_and_performance_services() {
    fuzz_raw_bytes(
        "raw bytes into QueueService, PerformanceService",
        queue_and_performance_services(),
    );
}

#[test]
fn structured_garbage_into_register_service() {
    fuzz_structured(
        "structured garbage into RegisterService",
        register_service(),
    );
}

#[test]
fn structured_garbage_into_assign_service() {
    fuzz_structured("structured garbage into AssignService", assign_service());
}

#[test]
fn structured_garbage_into_queue_and_performance_services() {
    fuzz_structured(
        "structured garbage into QueueService, PerformanceService",
        queue_and_performance_services(),
    );
}

/// Framing as clients send it, over raw HTTP/2: DATA frames of any size, several messages in one
/// call, `grpc-encoding: identity`, a length prefix over the size limit.
#[test]
fn grpc_framing_into_every_rpc() {
    let target = Target::start();
    let connection = framing::Connection::default();
    for rpc in every_rpc() {
        let what = format!("gRPC framing into {rpc}");
        target.run(&what, framing::well_framed(&rpc, &target.pool), |framed| {
            let answer = target
                .runtime
                .block_on(connection.call(target.addr(), &rpc, &framed))
                .map_err(|error| TestCaseError::fail(format!("{rpc}: {error}")))?;
            target.codes.count(&rpc, answer.0);
            check_code(&rpc, answer.0, !framed.refused(&rpc), &answer)
        });
        target.assert_alive(&what);
    }
    target.finish("gRPC framing into every RPC");
}

/// A request whose gRPC framing no client sends is the caller's error, not the server's: an
/// empty body, a body cut short and a compression flag other than 0 are INVALID_ARGUMENT (tonic
/// alone answers INTERNAL; src/server/call_layer.rs maps them).
#[test]
fn broken_grpc_framing_is_invalid_argument() {
    let target = Target::start();
    let connection = framing::Connection::default();
    for rpc in every_rpc() {
        let what = format!("broken gRPC framing into {rpc}");
        target.run(
            &what,
            framing::broken_framing(&rpc, &target.pool),
            |framed| {
                let answer = target
                    .runtime
                    .block_on(connection.call(target.addr(), &rpc, &framed))
                    .map_err(|error| TestCaseError::fail(format!("{rpc}: {error}")))?;
                target.codes.count(&rpc, answer.0);
                prop_assert!(
                    DOCUMENTED.contains(&answer.0),
                    "{rpc}: {:?} is not a documented status: {answer:?}",
                    answer.0
                );
                Ok(())
            },
        );
        target.assert_alive(&what);
    }
    target.finish("broken gRPC framing into every RPC");
}

/// An INVALID_ARGUMENT answer fits a stock client's header limit (16 KiB for tonic and hyper)
/// whatever the request holds: it names the first 16 violations, each shortened, and how many
/// more there were (src/api/convert.rs), where one per bad element, each quoting the input,
/// made a client read a protocol error instead.
#[test]
fn errors_fit_a_stock_client() {
    let target = Target::start();
    let register = |specialist_type: &str| pb::RegisterRequest {
        specialist_id: "fz-big".into(),
        specialist_type: specialist_type.into(),
        ..Default::default()
    };
    let bad_keys: std::collections::HashMap<String, String> = (0..500)
        .map(|index| (format!("bad key {index}"), String::new()))
        .collect();
    let requests = vec![
        (
            "300 empty capabilities",
            pb::RegisterRequest {
                capabilities: vec![String::new(); 300],
                ..register("frontend")
            },
        ),
        (
            "an unknown type of 20 KiB",
            register(&"t".repeat(20 * 1024)),
        ),
        (
            "500 labels with bad keys",
            pb::RegisterRequest {
                labels: bad_keys,
                ..register("frontend")
            },
        ),
        (
            "a bad label key of 20 KiB",
            pb::RegisterRequest {
                labels: [(" ".repeat(20 * 1024), String::new())].into(),
                ..register("frontend")
            },
        ),
    ];
    let mut failures = Vec::new();
    target.runtime.block_on(async {
        // Stock clients: tonic's default channel, as every generated client has it.
        for (what, request) in requests {
            let size = request.encoded_len();
            let mut clients = Clients::connect(target.addr()).await;
            let answer = clients.register.register(request).await;
            if !matches!(&answer, Err(status) if status.code() == Code::InvalidArgument) {
                failures.push(format!("{what} ({size} bytes): {}", outcome(&answer)));
            }
        }
        let mut clients = Clients::connect(target.addr()).await;
        let mut assign = support::task("fz-big-task", "frontend", &[]);
        assign.depends_on = vec![String::new(); 300];
        let answer = clients.assign.assign(assign).await;
        if !matches!(&answer, Err(status) if status.code() == Code::InvalidArgument) {
            failures.push(format!("300 empty dependencies: {}", outcome(&answer)));
        }
    });
    assert!(
        failures.is_empty(),
        "answers a stock client cannot read:\n{}",
        failures.join("\n")
    );
}

fn outcome<T>(answer: &Result<T, Status>) -> String {
    match answer {
        Ok(_) => "OK".into(),
        Err(status) => format!("{:?} {:?}", status.code(), status.message()),
    }
}

/// The Assign hints only a trained model reads (the description's words, the estimated duration)
/// never make a feature that is not a finite number, whatever the caller sent.
#[test]
fn learned_features_take_any_hint() {
    let strategy = (
        strategies::text(),
        proptest::option::of(strategies::any_u64()),
        proptest::collection::vec(proptest::sample::select(strategies::CAPABILITIES), 0..4),
        0..=MAX_PRIORITY,
    );
    let mut runner = TestRunner::new(ProptestConfig {
        cases: fuzz_cases(),
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(fuzz_seed()),
        ..ProptestConfig::default()
    });
    let outcome = runner.run(
        &strategy,
        |(description, estimated_duration_ms, capabilities, priority)| {
            let mut required_capabilities: Vec<String> =
                capabilities.into_iter().map(str::to_string).collect();
            required_capabilities.sort();
            required_capabilities.dedup();
            let context = SubtaskContext {
                specialist_type: "frontend".into(),
                required_capabilities,
                priority,
                description: Some(description),
                estimated_duration_ms,
            };
            let features = SubtaskFeatures::new(&context);
            let (_, values) = features.shared();
            prop_assert!(
                values.iter().all(|value| value.is_finite()),
                "features {values:?}"
            );
            Ok(())
        },
    );
    if let Err(error) = outcome {
        panic!("{error}");
    }
}
