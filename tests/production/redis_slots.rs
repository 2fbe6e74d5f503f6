//! What crosses specialist types on the Redis store takes several scripts, each in one type's
//! slot (lua/README.md). These tests cut such a hand-off short, the way a replica dying between two
//! steps would, by running its first script directly, and check that the store finishes it:
//! - a dependent in another slot whose notice was never delivered is settled by the lease sweeper;
//! - an Assign cut short after the requested type forwarded it to the fallback is finished (once)
//!   by the retry, and is not visible before;
//! - a specialist id whose move to another type was cut short can be registered again, and a move
//!   that completes takes the performance record along.
//!
//! Shared Redis, a namespace per test; nothing here stops or slows a server.

use crate::support;

use std::collections::BTreeMap;

use redis::Value;

use switchboard::domain::policy::RoutingPolicy;
use switchboard::domain::specialist::{Availability, Incarnation, Registration};
use switchboard::domain::subtask::{CompletionReport, SubtaskSpec, SubtaskState};
use switchboard::store::redis::codec::encode_spec;
use switchboard::store::redis::keys::Keys;
use switchboard::store::redis::library::Function;
use switchboard::store::redis::{RedisStore, RedisStoreConfig};
use switchboard::store::{Precondition, Store, StoreError};

struct Fixture {
    _namespace: support::NamespaceCleanup,
    store: RedisStore,
    keys: Keys,
    connection: redis::aio::MultiplexedConnection,
}

impl Fixture {
    async fn new(label: &str) -> Self {
        let mut config = RedisStoreConfig::new(support::test_redis_url());
        config.namespace = support::unique_namespace(label);
        let policy = RoutingPolicy {
            lease_ttl_ms: 3_600_000,
            ..RoutingPolicy::default()
        };
        let store = RedisStore::connect(&config, &policy).expect("redis store");
        store.prepare().await.expect("slots set up");
        let connection = redis::Client::open(support::test_redis_url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        Self {
            _namespace: support::NamespaceCleanup::new(
                &support::test_redis_url(),
                &config.namespace,
            ),
            store,
            keys: config.keys(),
            connection,
        }
    }

    /// One function in one type's slot, as the store would call it, but with nothing after it.
    async fn function(&mut self, function: Function, slot: &str, args: &[&[u8]]) -> Vec<Value> {
        let mut call = redis::cmd("FCALL");
        call.arg(self.store.library().function(function))
            .arg(1)
            .arg(self.keys.type_meta(slot))
            .arg(self.store.fingerprint())
            .arg("")
            .arg("");
        for arg in args {
            call.arg(*arg);
        }
        let reply: Value = call.query_async(&mut self.connection).await.unwrap();
        match reply {
            Value::Array(items) => items,
            other => panic!("not an array: {other:?}"),
        }
    }

    async fn plain<T: redis::FromRedisValue>(&mut self, parts: &[&str]) -> T {
        let mut command = redis::cmd(parts[0]);
        for part in &parts[1..] {
            command.arg(*part);
        }
        command.query_async(&mut self.connection).await.unwrap()
    }

    async fn register(&self, id: &str, specialist_type: &str, capability: &str) {
        self.store
            .register(Registration {
                specialist_id: Some(id.into()),
                specialist_type: specialist_type.into(),
                capabilities: vec![capability.into()],
                max_concurrency: Some(2),
                labels: BTreeMap::new(),
                availability: Availability::Online,
                incarnation: Incarnation::Start {
                    incarnation: "a1".into(),
                    take_over: true,
                },
            })
            .await
            .unwrap();
    }
}

fn spec(id: &str, specialist_type: &str, capability: &str, depends_on: &[&str]) -> SubtaskSpec {
    SubtaskSpec {
        subtask_id: id.into(),
        specialist_type: specialist_type.into(),
        required_capabilities: vec![capability.into()],
        priority: 0,
        parent_id: None,
        depends_on: depends_on.iter().map(|id| id.to_string()).collect(),
        payload: b"work".to_vec(),
        require_all_capabilities: false,
    }
}

#[tokio::test]
async fn a_notice_left_undelivered_is_delivered_by_the_lease_sweeper() {
    let mut fixture = Fixture::new("notice").await;
    fixture.register("s-back", "backend", "rust").await;
    fixture.register("s-docs", "docs", "prose").await;
    let first = fixture
        .store
        .assign(spec("a", "backend", "rust", &[]))
        .await
        .unwrap();
    let holder = first.holder.expect("a is assigned");
    let blocked = fixture
        .store
        .assign(spec("b", "docs", "prose", &["a"]))
        .await
        .unwrap();
    assert_eq!(blocked.state, SubtaskState::Blocked);
    assert_eq!(blocked.waiting_on, vec!["a".to_string()]);

    // The completion runs in backend's slot; the replica "dies" before delivering its notice.
    let epoch = holder.epoch.to_string();
    let reply = fixture
        .function(
            Function::Complete,
            "backend",
            &[
                b"a",
                holder.specialist_id.as_bytes(),
                epoch.as_bytes(),
                b"1",
                b"5",
                b"1",
                b"",
                b"",
            ],
        )
        .await;
    assert_eq!(reply[0], Value::Int(-1), "notices left: {reply:?}");
    let notify = fixture.keys.type_key("backend", "notify");
    assert_eq!(fixture.plain::<i64>(&["LLEN", &notify]).await, 1);
    let (still, _) = fixture.store.get_assignment("b").await.unwrap();
    assert_eq!(
        still.state,
        SubtaskState::Blocked,
        "b has not been told yet"
    );

    fixture.store.expire_leases().await.unwrap();
    let (settled, _) = fixture.store.get_assignment("b").await.unwrap();
    assert_eq!(settled.state, SubtaskState::Assigned);
    assert_eq!(settled.holder.as_ref().unwrap().specialist_id, "s-docs");
    assert!(settled.waiting_on.is_empty());
    assert_eq!(fixture.plain::<i64>(&["LLEN", &notify]).await, 0);

    // Delivering the same notice again changes nothing.
    fixture
        .function(Function::Settle, "docs", &[b"b", b"a", b"COMPLETED"])
        .await;
    let (again, _) = fixture.store.get_assignment("b").await.unwrap();
    assert_eq!(again, settled);
}

#[tokio::test]
async fn a_failed_dependency_in_another_slot_fails_the_chain() {
    let fixture = Fixture::new("chain").await;
    fixture.register("s-back", "backend", "rust").await;
    let first = fixture
        .store
        .assign(spec("a", "backend", "rust", &[]))
        .await
        .unwrap();
    fixture
        .store
        .assign(spec("b", "docs", "prose", &["a"]))
        .await
        .unwrap();
    fixture
        .store
        .assign(spec("c", "backend", "rust", &["b"]))
        .await
        .unwrap();
    let holder = first.holder.unwrap();
    fixture
        .store
        .report_completion(CompletionReport {
            subtask_id: "a".into(),
            specialist_id: holder.specialist_id,
            epoch: holder.epoch,
            success: false,
            completion_time_ms: 5,
            quality_score: 0.0,
            detail: "broke".into(),
            incarnation: None,
        })
        .await
        .unwrap();
    let (b, _) = fixture.store.get_assignment("b").await.unwrap();
    assert_eq!(b.state, SubtaskState::Failed);
    assert_eq!(b.detail, "dependency a is FAILED");
    let (c, _) = fixture.store.get_assignment("c").await.unwrap();
    assert_eq!(c.state, SubtaskState::Failed);
    assert_eq!(c.detail, "dependency b is FAILED");
}

#[tokio::test]
async fn an_assign_cut_short_after_forwarding_is_finished_by_its_retry() {
    let mut fixture = Fixture::new("forward").await;
    // Nobody of type backend could serve "go"; someone of the fallback type (general) could.
    fixture.register("s-gen", "general", "go").await;
    let submitted = spec("f", "backend", "go", &[]);
    let directory = fixture.keys.subtask_directory("f");
    let _: Option<String> = fixture
        .plain(&["SET", &directory, "backend", "NX", "GET"])
        .await;
    let blob = encode_spec(&submitted);
    let reply = fixture
        .function(
            Function::Assign,
            "backend",
            &[
                b"f", &blob, b"go", b"0", b"0", b"", b"", b"h", b"0", b"1", b"", b"",
            ],
        )
        .await;
    assert_eq!(
        reply,
        vec![
            Value::Int(0),
            Value::BulkString(b"forward".to_vec()),
            Value::BulkString(b"general".to_vec())
        ]
    );
    assert!(matches!(
        fixture.store.get_assignment("f").await,
        Err(StoreError::NotFound { .. })
    ));

    let view = fixture.store.assign(submitted.clone()).await.unwrap();
    assert_eq!(view.state, SubtaskState::Assigned);
    assert_eq!(view.routed_type, "general");
    assert_eq!(view.holder.as_ref().unwrap().specialist_id, "s-gen");
    let again = fixture.store.assign(submitted).await.unwrap();
    assert_eq!(again, view, "the retry of the retry finds the subtask");
    assert_eq!(
        fixture.plain::<Option<String>>(&["GET", &directory]).await,
        Some("general".into())
    );
    let specialist = fixture.store.get_specialist("s-gen").await.unwrap();
    assert_eq!(specialist.active_assignments, 1, "placed once");
}

#[tokio::test]
async fn a_specialist_move_cut_short_is_taken_back_and_a_full_move_keeps_performance() {
    let mut fixture = Fixture::new("move").await;
    fixture.register("s1", "backend", "rust").await;
    let work = fixture
        .store
        .assign(spec("w", "backend", "rust", &[]))
        .await
        .unwrap();
    let holder = work.holder.unwrap();
    fixture
        .store
        .report_completion(CompletionReport {
            subtask_id: "w".into(),
            specialist_id: "s1".into(),
            epoch: holder.epoch,
            success: true,
            completion_time_ms: 7,
            quality_score: 0.5,
            detail: String::new(),
            incarnation: None,
        })
        .await
        .unwrap();
    fixture.store.deregister("s1").await.unwrap();

    // A move to general gets as far as marking the id moved in backend's slot, then stops.
    fixture
        .function(Function::Unbind, "backend", &[b"s1", b"general", b"0"])
        .await;
    fixture.register("s1", "backend", "rust").await;
    let back = fixture.store.get_specialist("s1").await.unwrap();
    assert_eq!(back.specialist_type, "backend");
    assert_eq!(fixture.store.performance("s1").await.unwrap().completed, 1);

    // Registered as backend: another type is refused. Deregistered: the move completes.
    let refused = fixture
        .store
        .register(Registration {
            specialist_id: Some("s1".into()),
            specialist_type: "general".into(),
            capabilities: vec!["rust".into()],
            max_concurrency: None,
            labels: BTreeMap::new(),
            availability: Availability::Online,
            incarnation: Incarnation::Start {
                incarnation: "a1".into(),
                take_over: true,
            },
        })
        .await;
    assert!(
        matches!(&refused, Err(StoreError::FailedPrecondition(Precondition::TypeMismatch { registered, .. })) if registered == "backend"),
        "{refused:?}"
    );
    fixture.store.deregister("s1").await.unwrap();
    fixture.register("s1", "general", "rust").await;
    let moved = fixture.store.get_specialist("s1").await.unwrap();
    assert_eq!(moved.specialist_type, "general");
    let performance = fixture.store.performance("s1").await.unwrap();
    assert_eq!(performance.completed, 1, "the record moved with the id");
    let directory = fixture.keys.specialist_directory("s1");
    assert_eq!(
        fixture.plain::<Option<String>>(&["GET", &directory]).await,
        Some("general".into())
    );
}
