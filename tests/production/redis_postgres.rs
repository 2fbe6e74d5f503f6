//! The production store end to end: Redis for live state, Postgres behind it through the outbox.
//! History reaches Postgres (also from a Redis Cluster); a 30-s Postgres outage under load does not
//! stop assignment and its backlog drains with no row lost or doubled; with Redis unreachable Assign is accepted durably into Postgres and
//! queued once Redis is back; with both down, UNAVAILABLE. Outages are made with TCP proxies in
//! front of the shared servers, which are never touched.

use crate::net;
use crate::pg;
use crate::support;

use std::net::SocketAddr;

use net::CuttableProxy;
use pg::TestDb;
use support::*;
use switchboard::store::postgres;
use tonic::Code;

const REDIS_ADDR: &str = "127.0.0.1:6379";
const POSTGRES_ADDR: &str = "127.0.0.1:5432";

struct Deployment {
    server: TestServer,
    db: TestDb,
    /// Dropped last: a fresh namespace on the shared Redis goes when the deployment does.
    _namespace: Option<NamespaceCleanup>,
}

fn postgres_url_via(db: &TestDb, addr: SocketAddr) -> String {
    db.url().replace(POSTGRES_ADDR, &addr.to_string())
}

async fn deployment(redis_url: &str, database_url: &str, db: TestDb, extra: &[&str]) -> Deployment {
    let namespace = unique_namespace("pg");
    let mut deployment = deployment_in(&namespace, redis_url, database_url, db, extra).await;
    // On the shared Redis (directly or through a proxy); a cluster is private to its test.
    if !extra.contains(&"--redis-cluster") {
        deployment._namespace = Some(NamespaceCleanup::new(&test_redis_url(), &namespace));
    }
    deployment
}

async fn deployment_in(
    namespace: &str,
    redis_url: &str,
    database_url: &str,
    db: TestDb,
    extra: &[&str],
) -> Deployment {
    let mut flags = vec![
        "--redis-url",
        redis_url,
        "--redis-namespace",
        namespace,
        "--database-url",
        database_url,
    ];
    flags.extend_from_slice(extra);
    let server = TestServer::start_with(&flags).await;
    Deployment {
        server,
        db,
        _namespace: None,
    }
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    let client = db.client().await;
    pg::count(&client, sql).await
}

async fn poll_count(db: &TestDb, what: &str, sql: &str, expected: i64) {
    poll_until(what, EVENTUALLY, || async {
        (count(db, sql).await == expected).then_some(())
    })
    .await;
}

#[tokio::test]
async fn history_reaches_postgres() {
    let db = TestDb::create().await;
    let url = db.url();
    let deployment = deployment(&test_redis_url(), &url, db, &[]).await;
    let mut clients = deployment.server.clients.clone();
    clients.register("hist-1", "backend", &["rust"]).await;
    let first = clients.assign_simple("hist-a", "backend", &["rust"]).await;
    assert_assigned_to(&first, "hist-1");
    clients.report(&first, true).await;
    let second = clients.assign_simple("hist-b", "backend", &["go"]).await;
    assert_state(&second, AssignmentState::Queued);

    let db = &deployment.db;
    poll_count(db, "completed subtask row", "SELECT count(*) FROM subtasks WHERE subtask_id = 'hist-a' AND state = 'COMPLETED' AND specialist_id = 'hist-1'", 1).await;
    poll_count(
        db,
        "queued subtask row",
        "SELECT count(*) FROM subtasks WHERE subtask_id = 'hist-b' AND state = 'QUEUED'",
        1,
    )
    .await;
    poll_count(
        db,
        "performance report",
        "SELECT count(*) FROM performance_reports WHERE subtask_id = 'hist-a' AND success",
        1,
    )
    .await;
    poll_count(db, "specialist row", "SELECT count(*) FROM specialists WHERE specialist_id = 'hist-1' AND specialist_type = 'backend' AND capabilities = ARRAY['rust']", 1).await;
    let history = count(
        db,
        "SELECT count(*) FROM assignment_history WHERE subtask_id = 'hist-a'",
    )
    .await;
    assert!(
        history >= 2,
        "created and finished are in the history, got {history} rows"
    );
}

/// On a three-node Redis Cluster: each type's outbox stream is on the node of its slot and has a
/// relay of its own; a subtask forwarded to the fallback type and one waiting on a dependency of
/// another type end up in Postgres as they ended in Redis.
/// Past the retention Redis forgets a finished subtask, and GetAssignment answers from Postgres:
/// the same state, holder, epoch and breakdown. The id used again is a new subtask, in Redis and
/// in Postgres's row; the history keeps both.
#[tokio::test]
async fn a_retained_out_subtask_is_read_from_postgres_and_its_id_can_be_used_again() {
    let db = TestDb::create().await;
    let url = db.url();
    let namespace = unique_namespace("retain");
    let _cleanup = NamespaceCleanup::new(&test_redis_url(), &namespace);
    let deployment = deployment_in(
        &namespace,
        &test_redis_url(),
        &url,
        db,
        &["--retention-ms", "300", "--sweep-interval-ms", "50"],
    )
    .await;
    let mut clients = deployment.server.clients.clone();
    clients.register("ret-1", "backend", &["rust"]).await;
    let first = clients.assign_simple("ret-a", "backend", &["rust"]).await;
    let finished = clients.report(&first, true).await;
    let db = &deployment.db;
    poll_count(
        db,
        "the finished row",
        "SELECT count(*) FROM subtasks WHERE subtask_id = 'ret-a' AND state = 'COMPLETED'",
        1,
    )
    .await;
    let record = format!("sb:{{{namespace}:backend}}:t:ret-a");
    poll_until("redis to forget ret-a", EVENTUALLY, || {
        let record = record.clone();
        async move {
            let exists = support::redis_server::exists(&test_redis_url(), &record).await;
            (!exists).then_some(())
        }
    })
    .await;
    let (from_postgres, subtask) = clients.get_full("ret-a").await;
    assert_state(&from_postgres, AssignmentState::Completed);
    assert_eq!(from_postgres.specialist_id, finished.specialist_id);
    assert_eq!(from_postgres.epoch, finished.epoch);
    assert_eq!(from_postgres.breakdown, finished.breakdown);
    assert_eq!(subtask.subtask_id, "ret-a");

    let mut again = task("ret-a", "backend", &["rust"]);
    again.priority = 7;
    let reused = clients.assign(again).await;
    assert_assigned_to(&reused, "ret-1");
    poll_count(db, "the reused id's row", "SELECT count(*) FROM subtasks WHERE subtask_id = 'ret-a' AND state = 'ASSIGNED' AND priority = 7", 1).await;
    assert_eq!(
        count(db, "SELECT count(*) FROM assignment_history WHERE subtask_id = 'ret-a' AND kind = 'created'").await,
        2
    );
}

#[tokio::test]
async fn history_reaches_postgres_from_a_redis_cluster() {
    let cluster = support::redis_server::PrivateCluster::start().await;
    let urls = cluster.urls();
    let db = TestDb::create().await;
    let url = db.url();
    let deployment = deployment(&urls, &url, db, &["--redis-cluster"]).await;
    let mut clients = deployment.server.clients.clone();
    clients.register("cl-back", "backend", &["rust"]).await;
    clients.register("cl-gen", "general", &["go"]).await;
    let first = clients.assign_simple("cl-a", "backend", &["rust"]).await;
    assert_assigned_to(&first, "cl-back");
    let mut dependent = task("cl-b", "docs", &["go"]);
    dependent.depends_on = vec!["cl-a".into()];
    let blocked = clients.assign(dependent).await;
    assert_state(&blocked, AssignmentState::Blocked);
    clients.report(&first, true).await;
    let forwarded = clients.get("cl-b").await;
    assert_assigned_to(&forwarded, "cl-gen");
    assert_eq!(forwarded.routed_type, "general");
    clients.report(&forwarded, true).await;

    let db = &deployment.db;
    poll_count(db, "both subtasks completed", "SELECT count(*) FROM subtasks WHERE subtask_id IN ('cl-a', 'cl-b') AND state = 'COMPLETED'", 2).await;
    poll_count(db, "the forwarded subtask's routed type", "SELECT count(*) FROM subtasks WHERE subtask_id = 'cl-b' AND routed_type = 'general' AND specialist_id = 'cl-gen'", 1).await;
    poll_count(
        db,
        "both performance reports",
        "SELECT count(*) FROM performance_reports WHERE subtask_id IN ('cl-a', 'cl-b')",
        2,
    )
    .await;
    poll_count(
        db,
        "events from both types' streams",
        "SELECT count(DISTINCT stream_type) FROM performance_reports",
        2,
    )
    .await;
    drop(deployment);
    drop(cluster);
}

/// How long Postgres is cut off under load, and by how many concurrent callers.
const OUTAGE: std::time::Duration = std::time::Duration::from_secs(30);
const CALLERS: usize = 2;
/// Longest the outage's backlog may take to reach Postgres once it is back.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_does_not_stop_assignment_and_history_catches_up() {
    let db = TestDb::create().await;
    let proxy = CuttableProxy::start(POSTGRES_ADDR.parse().unwrap()).await;
    let url = postgres_url_via(&db, proxy.addr);
    let deployment = deployment(
        &test_redis_url(),
        &url,
        db,
        &["--breaker-open-ms", "200", "--lease-ttl-ms", "600000"],
    )
    .await;
    let mut clients = deployment.server.clients.clone();
    clients
        .register_full("out-1", "backend", &["rust"], 100, Availability::Online)
        .await;

    // Postgres is unreachable for OUTAGE while CALLERS keep assigning and reporting.
    proxy.cut();
    let started = std::time::Instant::now();
    let mut callers = Vec::new();
    for caller in 0..CALLERS {
        let mut clients = clients.clone();
        callers.push(tokio::spawn(async move {
            let mut cycles = 0usize;
            while started.elapsed() < OUTAGE {
                let assignment = clients
                    .assign_simple(&format!("out-{caller}-{cycles:05}"), "backend", &["rust"])
                    .await;
                assert_assigned_to(&assignment, "out-1");
                clients.report(&assignment, !cycles.is_multiple_of(4)).await;
                cycles += 1;
            }
            cycles
        }));
    }
    let mut per_caller = Vec::new();
    for caller in callers {
        per_caller.push(
            caller
                .await
                .expect("assignment went on while postgres was down"),
        );
    }
    proxy.restore();
    let subtasks: usize = per_caller.iter().sum();
    let failures: usize = per_caller.iter().map(|cycles| cycles.div_ceil(4)).sum();
    assert!(
        subtasks >= 100,
        "only {subtasks} cycles in {OUTAGE:?} without postgres"
    );

    let db = &deployment.db;
    // The backlog of the whole outage drains; every later check is then immediate.
    poll_until("every subtask finished in postgres", DRAIN, || async {
        let finished = count(db, "SELECT count(*) FROM subtasks WHERE subtask_id LIKE 'out-%' AND state IN ('COMPLETED', 'FAILED')").await;
        (finished == subtasks as i64).then_some(())
    })
    .await;
    poll_count(
        db,
        "every report in postgres",
        "SELECT count(*) FROM performance_reports WHERE subtask_id LIKE 'out-%'",
        subtasks as i64,
    )
    .await;
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM subtasks WHERE subtask_id LIKE 'out-%' AND state = 'FAILED'"
        )
        .await,
        failures as i64,
        "failures recorded as reported"
    );
    assert_eq!(
        count(db, "SELECT count(*) FROM (SELECT subtask_id FROM performance_reports GROUP BY subtask_id HAVING count(*) > 1) doubled").await,
        0,
        "no report written twice"
    );
}

#[tokio::test]
async fn redis_outage_accepts_assign_into_postgres_and_queues_it_later() {
    let db = TestDb::create().await;
    let redis_proxy = CuttableProxy::start(REDIS_ADDR.parse().unwrap()).await;
    let redis_url = format!("redis://{}", redis_proxy.addr);
    let postgres_proxy = CuttableProxy::start(POSTGRES_ADDR.parse().unwrap()).await;
    let url = postgres_url_via(&db, postgres_proxy.addr);
    let deployment = deployment(
        &redis_url,
        &url,
        db,
        &["--breaker-open-ms", "200", "--store-timeout-ms", "500"],
    )
    .await;
    let mut clients = deployment.server.clients.clone();
    clients.register("down-1", "backend", &["rust"]).await;

    redis_proxy.cut();
    let accepted = clients.assign_simple("down-a", "backend", &["rust"]).await;
    assert_state(&accepted, AssignmentState::Queued);
    assert_eq!(accepted.queue_position, 0, "no made-up queue position");
    assert!(
        accepted.detail.contains("redis is unavailable"),
        "{}",
        accepted.detail
    );
    let again = clients.assign_simple("down-a", "backend", &["rust"]).await;
    assert_state(&again, AssignmentState::Queued);
    let mut changed = task("down-a", "backend", &["go"]);
    changed.priority = 3;
    assert_code(clients.try_assign(changed).await, Code::AlreadyExists);
    assert_state(&clients.get("down-a").await, AssignmentState::Queued);
    assert_eq!(
        count(
            &deployment.db,
            "SELECT count(*) FROM pending_subtasks WHERE subtask_id = 'down-a'"
        )
        .await,
        1
    );

    postgres_proxy.cut();
    let refused = assert_code(
        clients
            .try_assign(task("down-b", "backend", &["rust"]))
            .await,
        Code::Unavailable,
    );
    assert!(
        refused.message().contains("redis") && refused.message().contains("postgres"),
        "names both stores: {}",
        refused.message()
    );
    postgres_proxy.restore();
    redis_proxy.restore();

    let assigned = eventually_assignment(
        &clients,
        "down-a",
        "pending subtask assigned once redis is back",
        |assignment| state_of(assignment) == AssignmentState::Assigned,
    )
    .await;
    assert_assigned_to(&assigned, "down-1");
    poll_count(
        &deployment.db,
        "pending row removed",
        "SELECT count(*) FROM pending_subtasks",
        0,
    )
    .await;
}

/// Deletes every key of one namespace (what FLUSHALL would do to a deployment of its own).
async fn flush_namespace(namespace: &str) {
    let client = redis::Client::open(test_redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    for pattern in switchboard::store::redis::keys::Keys::new(namespace).patterns() {
        delete_matching(&mut connection, &pattern).await;
    }
}

async fn delete_matching(connection: &mut redis::aio::MultiplexedConnection, pattern: &str) {
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(connection)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(&keys)
                .query_async(connection)
                .await
                .unwrap();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

#[tokio::test]
async fn empty_redis_is_rebuilt_from_postgres_and_holders_keep_their_work() {
    let db = TestDb::create().await;
    let url = db.url();
    let namespace = unique_namespace("rebuild");
    let _cleanup = NamespaceCleanup::new(&test_redis_url(), &namespace);
    let mut first = deployment_in(&namespace, &test_redis_url(), &url, db, &[]).await;
    let mut clients = first.server.clients.clone();
    clients
        .register_full("rb-1", "backend", &["rust"], 1, Availability::Online)
        .await;
    let done = clients.assign_simple("rb-a", "backend", &["rust"]).await;
    clients.report(&done, true).await;
    let held = clients.assign_simple("rb-b", "backend", &["rust"]).await;
    assert_assigned_to(&held, "rb-1");
    let queued = clients.assign_simple("rb-c", "backend", &["go"]).await;
    assert_state(&queued, AssignmentState::Queued);
    let mut blocked = task("rb-d", "backend", &["rust"]);
    blocked.depends_on = strings(&["rb-a", "rb-c"]);
    assert_state(&clients.assign(blocked).await, AssignmentState::Blocked);
    poll_count(
        &first.db,
        "history written",
        "SELECT count(*) FROM subtasks WHERE subtask_id LIKE 'rb-%' AND created_at IS NOT NULL",
        4,
    )
    .await;
    poll_count(
        &first.db,
        "report written",
        "SELECT count(*) FROM performance_reports WHERE subtask_id = 'rb-a'",
        1,
    )
    .await;
    let performance_before = clients.specialist("rb-1").await.performance;
    first.server.shutdown().await;

    flush_namespace(&namespace).await;
    let second = deployment_in(&namespace, &test_redis_url(), &url, first.db, &[]).await;
    let mut clients = second.server.clients.clone();
    let specialist = clients.specialist("rb-1").await;
    assert_eq!(specialist.capabilities, strings(&["rust"]));
    assert_close(
        specialist.performance,
        performance_before,
        "performance factor rebuilt from reports",
    );
    // The holder keeps its work, under the same epoch and attempt: its report still counts.
    let kept = clients.get("rb-b").await;
    assert_assigned_to(&kept, "rb-1");
    assert_eq!((kept.epoch, kept.attempt), (held.epoch, held.attempt));
    let in_flight = clients.specialist("rb-1").await;
    assert_eq!(in_flight.active_assignments, 1, "{in_flight:?}");
    assert_state(&clients.get("rb-c").await, AssignmentState::Queued);
    let waiting = clients.get("rb-d").await;
    assert_state(&waiting, AssignmentState::Blocked);
    assert_eq!(
        waiting.waiting_on,
        strings(&["rb-c"]),
        "the finished dependency stays finished"
    );

    clients.register("rb-2", "backend", &["go"]).await;
    let served = clients.get("rb-c").await;
    assert_assigned_to(&served, "rb-2");
    assert!(
        served.epoch > held.epoch,
        "epochs resume above the history's: {} after {}",
        served.epoch,
        held.epoch
    );
    assert_state(
        &clients.report(&held, true).await,
        AssignmentState::Completed,
    );
    clients.report(&served, true).await;
    let unblocked = clients.get("rb-d").await;
    assert_ne!(
        state_of(&unblocked),
        AssignmentState::Blocked,
        "dependent routed after its last dependency"
    );
}

/// The relay on an idle stream: its reads block for less than the Redis client's reply timeout,
/// so nothing looks like a lost connection and it never reconnects (a private Redis counts the
/// connections it accepted).
#[tokio::test]
async fn an_idle_relay_keeps_its_connection() {
    use switchboard::store::production::relay::{self, RelayConfig};
    let redis = support::redis_server::PrivateRedis::start().await;
    let db = TestDb::create().await;
    postgres::migrate(&mut db.client().await).await.unwrap();
    let pool = postgres::pool(&db.url(), 2).unwrap();
    let accepted = || async {
        let info = match redis.command(&["INFO", "stats"]).await {
            redis::Value::BulkString(bytes) => String::from_utf8(bytes).unwrap(),
            redis::Value::VerbatimString { text, .. } => text,
            other => panic!("{other:?}"),
        };
        info.lines()
            .find_map(|line| line.strip_prefix("total_connections_received:"))
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let endpoint = switchboard::store::redis::RedisStoreConfig::new(redis.url()).endpoint();
    let before = accepted().await;
    let relaying = tokio::spawn(relay::run(
        endpoint,
        pool,
        RelayConfig::new(
            "sb:{idle:backend}:".into(),
            "backend".into(),
            Default::default(),
        ),
        stop.clone(),
    ));
    // Three seconds idle: a read that gave up after 500 ms would have reconnected about six times.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let opened = accepted().await - before;
    stop.cancel();
    relaying.await.unwrap();
    assert!(opened <= 2, "the idle relay opened {opened} connections");
}

/// One history event Postgres refuses (a NUL byte in a detail, written by the store directly: the
/// API refuses it) is tried a few times alone, then kept in history_dead_letters with its reason,
/// counted, and never blocks the events behind it.
#[tokio::test]
async fn a_poison_history_event_is_dead_lettered_and_blocks_nothing() {
    use switchboard::domain::policy::RoutingPolicy;
    use switchboard::domain::specialist::{Incarnation, Registration};
    use switchboard::domain::subtask::{CompletionReport, SubtaskSpec};
    use switchboard::store::production::relay::{self, RelayConfig};
    use switchboard::store::redis::{RedisStore, RedisStoreConfig};
    use switchboard::store::Store;

    let db = TestDb::create().await;
    postgres::migrate(&mut db.client().await).await.unwrap();
    let mut config = RedisStoreConfig::new(test_redis_url());
    config.namespace = unique_namespace("poison");
    let _cleanup = NamespaceCleanup::new(&test_redis_url(), &config.namespace);
    config.outbox = true;
    let policy = RoutingPolicy::default();
    let store = RedisStore::connect(&config, &policy).unwrap();
    store.prepare().await.unwrap();
    store
        .register(Registration {
            specialist_id: Some("p-1".into()),
            specialist_type: "backend".into(),
            capabilities: vec!["rust".into()],
            max_concurrency: Some(4),
            labels: Default::default(),
            availability: switchboard::domain::specialist::Availability::Online,
            incarnation: Incarnation::Start {
                incarnation: "a1".into(),
                take_over: true,
            },
        })
        .await
        .unwrap();
    for (id, detail) in [("p-bad", "broke\0here"), ("p-good", "fine")] {
        let view = store
            .assign(SubtaskSpec {
                subtask_id: id.into(),
                specialist_type: "backend".into(),
                required_capabilities: vec!["rust".into()],
                priority: 0,
                parent_id: None,
                depends_on: Vec::new(),
                payload: Vec::new(),
                require_all_capabilities: false,
            })
            .await
            .unwrap();
        let holder = view.holder.unwrap();
        store
            .report_completion(CompletionReport {
                subtask_id: id.into(),
                specialist_id: holder.specialist_id,
                epoch: holder.epoch,
                success: false,
                completion_time_ms: 3,
                quality_score: 0.0,
                detail: detail.into(),
                incarnation: None,
            })
            .await
            .unwrap();
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let relaying = tokio::spawn(relay::run(
        config.endpoint(),
        postgres::pool(&db.url(), 2).unwrap(),
        RelayConfig::new(
            config.keys().type_prefix("backend"),
            "backend".into(),
            policy.weights,
        ),
        stop.clone(),
    ));
    poll_count(&db, "the good subtask finished in postgres", "SELECT count(*) FROM subtasks WHERE subtask_id = 'p-good' AND state = 'FAILED' AND detail = 'fine'", 1).await;
    poll_count(&db, "one dead letter", "SELECT count(*) FROM history_dead_letters WHERE reason <> '' AND attempts = 3 AND fields LIKE '%p-bad%'", 1).await;
    stop.cancel();
    relaying.await.unwrap();
    let backlog: i64 = redis::cmd("XLEN")
        .arg(
            config
                .keys()
                .type_key("backend", switchboard::store::redis::keys::slot::OUTBOX),
        )
        .query_async(
            &mut redis::Client::open(test_redis_url())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(backlog, 0, "everything was acknowledged");
}
