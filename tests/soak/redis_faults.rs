//! Redis faults, each on a private redis-server of its own (never the shared one): a SCRIPT FLUSH
//! is invisible; a killed Redis makes calls fail fast with UNAVAILABLE (then the circuit breaker
//! opens) and a restarted one is used again; a paused Redis makes calls fail within the store
//! timeout; a dropped watch connection costs no watch events.

use crate::support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::redis_server::PrivateRedis;
use support::*;
use tonic::{Code, Status};

const BREAKER_THRESHOLD: u32 = 3;
const STORE_TIMEOUT: Duration = Duration::from_millis(500);
const BREAKER_OPEN: Duration = Duration::from_millis(300);
/// The grpc-timeout of every call made while Redis is in trouble.
const CALL_DEADLINE: Duration = Duration::from_secs(3);
/// A call the breaker refuses does not wait on Redis; well below STORE_TIMEOUT even when busy.
const FAST_FAILURE: Duration = Duration::from_millis(300);

const UNAVAILABLE_PREFIX: &str = "redis unavailable: ";
const BREAKER_OPEN_PREFIX: &str = "redis circuit breaker open after ";

/// A server on `redis` with a short store timeout and a quick breaker; the lease sweeper is slowed
/// down so that its failures do not count towards the breaker.
async fn server_on(redis: &PrivateRedis) -> TestServer {
    let url = redis.url();
    let namespace = unique_namespace("faults");
    let threshold = BREAKER_THRESHOLD.to_string();
    let timeout = STORE_TIMEOUT.as_millis().to_string();
    let open = BREAKER_OPEN.as_millis().to_string();
    TestServer::start_with(&[
        "--redis-url",
        &url,
        "--redis-namespace",
        &namespace,
        "--store-timeout-ms",
        &timeout,
        "--breaker-threshold",
        &threshold,
        "--breaker-open-ms",
        &open,
        "--sweep-interval-ms",
        "60000",
    ])
    .await
}

/// A server on `redis` (its own namespace), `agent` registered and watching.
struct Watching {
    server: TestServer,
    /// The namespace's watch channel.
    channel: String,
    stream: tonic::Streaming<pb::WatchAssignmentsResponse>,
}

async fn watching(redis: &PrivateRedis, agent: &str) -> Watching {
    let namespace = unique_namespace(agent);
    let url = redis.url();
    let server =
        TestServer::start_with(&["--redis-url", &url, "--redis-namespace", &namespace]).await;
    let mut clients = server.clients.clone();
    clients
        .register_full(agent, "backend", &["rust"], 4, Availability::Online)
        .await;
    let stream = clients.watch(agent).await;
    Watching {
        server,
        channel: switchboard::store::redis::keys::Keys::new(namespace.clone()).watch_channel(),
        stream,
    }
}

fn with_deadline<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_DEADLINE);
    request
}

/// Registers `id`, or updates it under the incarnation `clients` hold for it.
fn registration(clients: &Clients, id: &str) -> pb::RegisterRequest {
    pb::RegisterRequest {
        specialist_id: id.to_string(),
        specialist_type: "backend".to_string(),
        capabilities: strings(&["rust"]),
        max_concurrency: 4,
        labels: Default::default(),
        availability: Availability::Online as i32,
        incarnation: clients.incarnations.get(id),
        take_over: false,
    }
}

/// Register with a deadline; the outcome and how long it took. A hang is a failure.
async fn timed_register(clients: &mut Clients, id: &str) -> (Result<(), Status>, Duration) {
    let started = Instant::now();
    let request = with_deadline(registration(clients, id));
    let call = clients.register.register(request);
    let outcome = tokio::time::timeout(CALL_DEADLINE + Duration::from_secs(1), call)
        .await
        .unwrap_or_else(|_| panic!("register {id} hung past its deadline"));
    if let Ok(reply) = &outcome {
        clients.incarnations.set(id, &reply.get_ref().incarnation);
    }
    (outcome.map(|_| ()), started.elapsed())
}

/// Assign with a deadline; the outcome and how long it took. A hang is a failure.
async fn timed_assign(
    clients: &mut Clients,
    subtask_id: &str,
) -> (Result<pb::Assignment, Status>, Duration) {
    let started = Instant::now();
    let call = clients
        .assign
        .assign(with_deadline(task(subtask_id, "backend", &["rust"])));
    let outcome = tokio::time::timeout(CALL_DEADLINE + Duration::from_secs(1), call)
        .await
        .unwrap_or_else(|_| panic!("assign {subtask_id} hung past its deadline"));
    let assignment = outcome.map(|response| {
        response
            .into_inner()
            .assignment
            .expect("assign returns an assignment")
    });
    (assignment, started.elapsed())
}

/// What a call answered while Redis was down or stuck.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// The call went to Redis and failed ("redis unavailable: ...").
    RedisFailed,
    /// The open breaker refused it without asking Redis.
    BreakerOpen,
}

/// UNAVAILABLE with one of the two clear messages; anything else (INTERNAL, a deadline, Ok) fails.
#[track_caller]
fn refusal<T: std::fmt::Debug>(result: Result<T, Status>) -> Refusal {
    let status = assert_code(result, Code::Unavailable);
    let message = status.message();
    if message.starts_with(UNAVAILABLE_PREFIX) {
        return Refusal::RedisFailed;
    }
    assert!(
        message.starts_with(BREAKER_OPEN_PREFIX),
        "UNAVAILABLE without a clear message: {status:?}"
    );
    let failures: u32 = message[BREAKER_OPEN_PREFIX.len()..]
        .split(' ')
        .next()
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no failure count in {message:?}"));
    assert!(
        failures >= BREAKER_THRESHOLD,
        "breaker open after {failures} failures, below the threshold: {message:?}"
    );
    assert!(
        message.contains("consecutive failures; retrying in ") && message.ends_with(" ms"),
        "{message:?}"
    );
    Refusal::BreakerOpen
}

/// Polls Register until it succeeds; every failure on the way must be a clear UNAVAILABLE.
async fn eventually_registers(clients: &Clients, id: &str) {
    poll_until(&format!("register {id} succeeds again"), EVENTUALLY, || {
        let mut clients = clients.clone();
        async move {
            let (result, _) = timed_register(&mut clients, id).await;
            match result {
                Ok(()) => Some(()),
                Err(status) => {
                    refusal::<()>(Err(status));
                    None
                }
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_flush_between_calls_is_invisible() {
    let redis = PrivateRedis::start().await;
    let server = server_on(&redis).await;
    let mut c = server.clients.clone();

    redis.script_flush().await;
    c.register_full("flush-agent", "backend", &["rust"], 4, Availability::Online)
        .await;
    redis.script_flush().await;
    let mut stream = c.watch("flush-agent").await;
    redis.script_flush().await;
    let first = c.assign_simple("flush-1", "backend", &["rust"]).await;
    assert_assigned_to(&first, "flush-agent");
    let event = next_event(&mut stream).await;
    assert_eq!(event_kind(&event), WatchEventKind::Assigned);
    assert_eq!(event_assignment(&event).subtask_id, "flush-1");
    redis.script_flush().await;
    c.heartbeat("flush-agent", Availability::Online).await;
    redis.script_flush().await;
    let (read, subtask) = c.get_full("flush-1").await;
    assert_eq!(read.epoch, first.epoch);
    assert_eq!(subtask.subtask_id, "flush-1");
    redis.script_flush().await;
    let done = c.report(&first, true).await;
    assert_state(&done, AssignmentState::Completed);
    redis.script_flush().await;
    let stats = c.queue_stats("backend").await;
    assert_eq!((stats.depth, stats.active_assignments), (0, 0));
    redis.script_flush().await;
    assert_eq!(c.specialist("flush-agent").await.active_assignments, 0);
    redis.script_flush().await;
    let second = c.assign_simple("flush-2", "backend", &["rust"]).await;
    assert_assigned_to(&second, "flush-agent");
    assert!(second.epoch > first.epoch, "{second:?} after {first:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_fails_fast_opens_the_breaker_and_recovers_after_restart() {
    let mut redis = PrivateRedis::start().await;
    let server = server_on(&redis).await;
    let mut c = server.clients.clone();
    c.register_full("kill-agent", "backend", &["rust"], 4, Availability::Online)
        .await;
    assert_assigned_to(
        &c.assign_simple("before-kill", "backend", &["rust"]).await,
        "kill-agent",
    );

    redis.kill();

    // The first call finds Redis gone: a clear UNAVAILABLE, not INTERNAL, not a hang.
    let (result, elapsed) = timed_register(&mut c, "kill-agent").await;
    assert_eq!(
        refusal(result),
        Refusal::RedisFailed,
        "first call after the kill"
    );
    assert!(elapsed < CALL_DEADLINE, "took {elapsed:?}");
    // Within the threshold the breaker opens (a background call may have counted too); from then
    // on calls are refused at once, Assign as well as Register.
    let mut failed_calls = 1;
    loop {
        let (result, elapsed) = timed_register(&mut c, "kill-agent").await;
        assert!(elapsed < CALL_DEADLINE, "took {elapsed:?}");
        if refusal(result) == Refusal::BreakerOpen {
            assert!(elapsed < FAST_FAILURE, "a refused call took {elapsed:?}");
            break;
        }
        failed_calls += 1;
        assert!(
            failed_calls <= BREAKER_THRESHOLD,
            "the breaker is still closed after {failed_calls} failed calls"
        );
    }
    let (result, elapsed) = timed_assign(&mut c, "during-outage").await;
    assert_eq!(refusal(result), Refusal::BreakerOpen, "assign while open");
    assert!(elapsed < FAST_FAILURE, "a refused assign took {elapsed:?}");

    // A fresh, empty Redis on the same port (scripts not loaded either): the server recovers by
    // itself once the breaker lets a trial call through.
    redis.restart().await;
    eventually_registers(&c, "kill-agent").await;
    let after = c.assign_simple("after-restart", "backend", &["rust"]).await;
    assert_assigned_to(&after, "kill-agent");
    let done = c.report(&after, true).await;
    assert_state(&done, AssignmentState::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_redis_fails_within_the_store_timeout_and_recovers_on_resume() {
    let redis = PrivateRedis::start().await;
    let server = server_on(&redis).await;
    let mut c = server.clients.clone();
    c.register_full("pause-agent", "backend", &["rust"], 4, Availability::Online)
        .await;
    let before = c.assign_simple("before-pause", "backend", &["rust"]).await;
    assert_assigned_to(&before, "pause-agent");

    redis.pause();

    // Nothing answers: the call gives up after the store timeout, as UNAVAILABLE.
    let (result, elapsed) = timed_assign(&mut c, "during-pause").await;
    let first = refusal(result);
    assert!(
        elapsed < STORE_TIMEOUT + Duration::from_millis(1500),
        "a call on a paused Redis took {elapsed:?}"
    );
    if first == Refusal::RedisFailed {
        assert!(
            elapsed >= STORE_TIMEOUT - Duration::from_millis(50),
            "failed after {elapsed:?}, before the store timeout"
        );
    }
    // Then the breaker opens, and calls stop waiting.
    let mut refusals = vec![first];
    while refusals.last() != Some(&Refusal::BreakerOpen) {
        assert!(
            refusals.len() <= BREAKER_THRESHOLD as usize,
            "the breaker is still closed: {refusals:?}"
        );
        let (result, elapsed) = timed_register(&mut c, "pause-agent").await;
        assert!(
            elapsed < STORE_TIMEOUT + Duration::from_millis(1500),
            "a call on a paused Redis took {elapsed:?}"
        );
        let refused = refusal(result);
        if refused == Refusal::BreakerOpen {
            assert!(elapsed < FAST_FAILURE, "a refused call took {elapsed:?}");
        }
        refusals.push(refused);
    }

    redis.resume();
    eventually_registers(&c, "pause-agent").await;
    // Nothing was lost, and the refused Assign can be retried (whether or not Redis ran it late).
    let kept = c.get("before-pause").await;
    assert_assigned_to(&kept, "pause-agent");
    assert_eq!(kept.epoch, before.epoch);
    let retried = c.assign_simple("during-pause", "backend", &["rust"]).await;
    assert_assigned_to(&retried, "pause-agent");
    assert_state(&c.report(&before, true).await, AssignmentState::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stream_survives_a_dropped_redis_subscription() {
    let redis = PrivateRedis::start().await;
    let Watching {
        server,
        channel,
        mut stream,
    } = watching(&redis, "watch-agent").await;
    let mut c = server.clients.clone();
    let before = c.assign_simple("before-drop", "backend", &["rust"]).await;
    assert_assigned_to(&before, "watch-agent");
    assert_eq!(
        event_assignment(&next_event(&mut stream).await).subtask_id,
        "before-drop"
    );
    assert_eq!(subscribers(&redis, &channel).await, 1);

    let killed = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    assert_eq!(killed, redis::Value::Int(1), "one pubsub connection killed");

    // Right away (the feed may still be reconnecting) and after it is back: both are delivered,
    // once each.
    let during = c
        .assign_simple("during-reconnect", "backend", &["rust"])
        .await;
    assert_assigned_to(&during, "watch-agent");
    let event = next_event(&mut stream).await;
    assert_eq!(event_kind(&event), WatchEventKind::Assigned);
    assert_eq!(event_assignment(&event).subtask_id, "during-reconnect");
    poll_until("the watch feed subscribes again", EVENTUALLY, || async {
        (subscribers(&redis, &channel).await == 1).then_some(())
    })
    .await;
    let after = c
        .assign_simple("after-reconnect", "backend", &["rust"])
        .await;
    assert_assigned_to(&after, "watch-agent");
    let event = next_event(&mut stream).await;
    assert_eq!(event_kind(&event), WatchEventKind::Assigned);
    assert_eq!(event_assignment(&event).subtask_id, "after-reconnect");
    assert_eq!(event_assignment(&event).epoch, after.epoch);
    assert_no_event(&mut stream, Duration::from_millis(200)).await;
    for held in [&before, &during, &after] {
        assert_state(&c.report(held, true).await, AssignmentState::Completed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_missed_while_the_watch_feed_is_away_are_caught_up() {
    let redis = PrivateRedis::start().await;
    let Watching {
        server,
        channel,
        mut stream,
    } = watching(&redis, "away-agent").await;
    let mut c = server.clients.clone();
    let kept = c.assign_simple("kept", "backend", &["rust"]).await;
    let cancelled = c.assign_simple("cancelled", "backend", &["rust"]).await;
    for held in [&kept, &cancelled] {
        assert_assigned_to(held, "away-agent");
    }
    let mut delivered = BTreeSet::new();
    for _ in 0..2 {
        let event = next_event(&mut stream).await;
        assert_eq!(event_kind(&event), WatchEventKind::Assigned);
        delivered.insert(event_assignment(&event).subtask_id.clone());
    }
    assert_eq!(
        delivered,
        BTreeSet::from(["cancelled".into(), "kept".into()])
    );

    // Enough pooled connections that the calls below need no new one, and one of our own: while
    // maxclients is down, Redis refuses every new connection, the watch feed's reconnects included.
    let warm_up: Vec<_> = (0..8)
        .map(|_| {
            let mut clients = c.clone();
            tokio::spawn(async move { clients.specialist("away-agent").await })
        })
        .collect();
    for call in warm_up {
        call.await.expect("warm-up call");
    }
    let mut admin = redis.connection().await;
    let rejected_before = rejected_connections(&mut admin).await;
    admin_command(&mut admin, &["CONFIG", "SET", "maxclients", "1"]).await;
    admin_command(&mut admin, &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    poll_until("the watch feed is refused a connection", EVENTUALLY, || {
        let mut admin = admin.clone();
        async move { (rejected_connections(&mut admin).await > rejected_before).then_some(()) }
    })
    .await;

    // Published while nobody listens: lost on the channel.
    assert_state(&c.cancel("cancelled").await, AssignmentState::Cancelled);
    let missed = c.assign_simple("missed", "backend", &["rust"]).await;
    assert_assigned_to(&missed, "away-agent");
    assert_no_event(&mut stream, Duration::from_millis(300)).await;

    // Back: the feed reconnects and says the stream lagged; the stream re-reads what is in flight.
    admin_command(&mut admin, &["CONFIG", "SET", "maxclients", "10000"]).await;
    let mut caught_up = Vec::new();
    for _ in 0..2 {
        let event = next_event(&mut stream).await;
        caught_up.push((
            event_kind(&event),
            event_assignment(&event).subtask_id.clone(),
        ));
    }
    caught_up.sort_by_key(|(_, subtask_id)| subtask_id.clone());
    assert_eq!(
        caught_up,
        vec![
            (WatchEventKind::Revoked, "cancelled".to_string()),
            (WatchEventKind::Assigned, "missed".to_string()),
        ]
    );
    poll_until("the watch feed subscribes again", EVENTUALLY, || async {
        (subscribers(&redis, &channel).await == 1).then_some(())
    })
    .await;
    let after = c.assign_simple("after", "backend", &["rust"]).await;
    let event = next_event(&mut stream).await;
    assert_eq!(event_kind(&event), WatchEventKind::Assigned);
    assert_eq!(event_assignment(&event).subtask_id, "after");
    assert_no_event(&mut stream, Duration::from_millis(200)).await;
    for held in [&kept, &missed, &after] {
        assert_state(&c.report(held, true).await, AssignmentState::Completed);
    }
}

/// PUBSUB NUMSUB of one channel.
async fn subscribers(redis: &PrivateRedis, channel: &str) -> i64 {
    match redis.command(&["PUBSUB", "NUMSUB", channel]).await {
        redis::Value::Array(reply) => match reply.as_slice() {
            [_, redis::Value::Int(count)] => *count,
            other => panic!("PUBSUB NUMSUB reply {other:?}"),
        },
        other => panic!("PUBSUB NUMSUB reply {other:?}"),
    }
}

async fn admin_command(
    admin: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> redis::Value {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command
        .query_async(admin)
        .await
        .unwrap_or_else(|error| panic!("{args:?}: {error}"))
}

/// INFO stats rejected_connections: connections refused for maxclients.
async fn rejected_connections(admin: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info = match admin_command(admin, &["INFO", "stats"]).await {
        redis::Value::VerbatimString { text, .. } => text,
        redis::Value::BulkString(bytes) => String::from_utf8(bytes).expect("utf-8 INFO"),
        other => panic!("INFO reply {other:?}"),
    };
    info.lines()
        .find_map(|line| line.strip_prefix("rejected_connections:"))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rejected_connections in INFO stats:\n{info}"))
}

/// SCRIPT FLUSH in a loop while calls run: a flush can land between a NOSCRIPT reply and the
/// retry, and still no call may fail (the store falls back to EVAL with the source).
#[tokio::test]
async fn script_flush_during_traffic_is_invisible() {
    let redis = PrivateRedis::start().await;
    let server = server_on(&redis).await;
    let mut clients = server.clients.clone();
    clients.register("flusher-1", "backend", &["rust"]).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flushing = {
        let stop = std::sync::Arc::clone(&stop);
        let mut admin = redis.connection().await;
        tokio::spawn(async move {
            let mut flushes = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _: () = redis::cmd("SCRIPT")
                    .arg("FLUSH")
                    .query_async(&mut admin)
                    .await
                    .expect("script flush");
                flushes += 1;
            }
            flushes
        })
    };
    let callers: Vec<_> = (0..6)
        .map(|_| {
            let mut clients = clients.clone();
            tokio::spawn(async move {
                for _ in 0..150 {
                    clients.specialist("flusher-1").await;
                }
            })
        })
        .collect();
    for caller in callers {
        caller
            .await
            .expect("every call succeeds while scripts are flushed");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flushes = flushing.await.expect("flusher");
    assert!(
        flushes > 10,
        "the cache was flushed during the calls ({flushes} times)"
    );
}
