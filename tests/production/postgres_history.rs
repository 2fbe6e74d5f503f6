//! The history applier against the local Postgres: a lifecycle lands in every table, a batch
//! applied twice doubles nothing, and a malformed event rejects its whole batch. Orders and
//! concurrency are in postgres_ordering.rs.

use crate::pg;

use pg::{changed, count, created, event, registered, reported, TestDb};
use switchboard::domain::history::{Change, HistoryEvent};
use switchboard::domain::specialist::Availability;
use switchboard::domain::subtask::SubtaskState::{Assigned, Completed, Queued};
use switchboard::store::postgres::{apply_batch, ApplySummary, PgError};
use tokio_postgres::Client;

const TABLE_COUNTS: &str = "SELECT (SELECT count(*) FROM specialists) \
    + 10 * (SELECT count(*) FROM subtasks) \
    + 100 * (SELECT count(*) FROM assignment_history) \
    + 1000 * (SELECT count(*) FROM performance_reports)";

fn lifecycle() -> Vec<HistoryEvent> {
    vec![
        event(
            "backend/1000-0",
            1000,
            registered("sp-1", &["rust"], Availability::Online),
        ),
        event("backend/1001-0", 1001, created("st-1", Queued, 1001)),
        event(
            "backend/1002-0",
            1002,
            changed("st-1", Assigned, 1, Some("sp-1"), 7),
        ),
        event(
            "backend/1003-0",
            1003,
            Change::SpecialistAvailability {
                specialist_id: "sp-1".to_string(),
                availability: Availability::Busy,
            },
        ),
        event("backend/1004-0", 1004, reported("st-1", "sp-1", 7, true)),
        event(
            "backend/1004-1",
            1004,
            changed("st-1", Completed, 1, Some("sp-1"), 7),
        ),
    ]
}

#[tokio::test]
async fn a_lifecycle_lands_in_every_table() {
    let db = TestDb::create().await;
    let mut client = db.migrated().await;
    let summary = apply_batch(&mut client, &lifecycle()).await.unwrap();
    assert_eq!(
        summary,
        ApplySummary {
            applied: 6,
            duplicate: 0,
            superseded: 0
        }
    );

    let specialist = client
        .query_one(
            "SELECT specialist_type, capabilities, max_concurrency, labels->>'zone', availability,
                    (extract(epoch FROM registered_at) * 1000)::bigint, deregistered_at IS NULL,
                    last_event_id
             FROM specialists WHERE specialist_id = 'sp-1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(specialist.get::<_, String>(0), "backend");
    assert_eq!(specialist.get::<_, Vec<String>>(1), vec!["rust"]);
    assert_eq!(specialist.get::<_, i32>(2), 4);
    assert_eq!(specialist.get::<_, String>(3), "eu");
    assert_eq!(specialist.get::<_, String>(4), "busy");
    assert_eq!(specialist.get::<_, i64>(5), 1000);
    assert!(specialist.get::<_, bool>(6));
    assert_eq!(specialist.get::<_, String>(7), "backend/1003-0");

    let subtask = client
        .query_one(
            "SELECT state, attempt, specialist_id, epoch, score, breakdown->'load'->>'value',
                    (extract(epoch FROM assigned_at) * 1000)::bigint,
                    (extract(epoch FROM finished_at) * 1000)::bigint,
                    (extract(epoch FROM created_at) * 1000)::bigint,
                    payload, priority, parent_id, required_capabilities, require_all_capabilities,
                    routed_type, specialist_type, last_event_id
             FROM subtasks WHERE subtask_id = 'st-1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(subtask.get::<_, String>(0), "COMPLETED");
    assert_eq!(subtask.get::<_, i32>(1), 1);
    assert_eq!(subtask.get::<_, Option<String>>(2).as_deref(), Some("sp-1"));
    assert_eq!(subtask.get::<_, i64>(3), 7);
    assert_eq!(
        subtask.get::<_, Option<f64>>(4),
        Some(7.0),
        "the holder's score is kept"
    );
    assert_eq!(subtask.get::<_, Option<String>>(5).as_deref(), Some("0.8"));
    assert_eq!(subtask.get::<_, Option<i64>>(6), Some(1002));
    assert_eq!(subtask.get::<_, Option<i64>>(7), Some(1004));
    assert_eq!(subtask.get::<_, Option<i64>>(8), Some(1001));
    assert_eq!(subtask.get::<_, Vec<u8>>(9), vec![0, 1, 2, 255]);
    assert_eq!(subtask.get::<_, i32>(10), 3);
    assert_eq!(subtask.get::<_, String>(11), "parent-1");
    assert_eq!(subtask.get::<_, Vec<String>>(12), vec!["rust"]);
    assert!(subtask.get::<_, bool>(13));
    assert_eq!(subtask.get::<_, String>(14), "backend");
    assert_eq!(subtask.get::<_, String>(15), "backend");
    assert_eq!(subtask.get::<_, String>(16), "backend/1004-1");

    let history: Vec<(String, String, i64)> = client
        .query(
            "SELECT kind, state, epoch FROM assignment_history
             WHERE subtask_id = 'st-1' ORDER BY event_ms, event_seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    let expected = [
        ("created", "QUEUED", 0),
        ("changed", "ASSIGNED", 7),
        ("changed", "COMPLETED", 7),
    ];
    let expected: Vec<(String, String, i64)> = expected
        .iter()
        .map(|(kind, state, epoch)| (kind.to_string(), state.to_string(), *epoch))
        .collect();
    assert_eq!(history, expected);

    let report = client
        .query_one(
            "SELECT specialist_id, epoch, success, completion_time_ms, quality_score
             FROM performance_reports WHERE subtask_id = 'st-1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(report.get::<_, String>(0), "sp-1");
    assert_eq!(report.get::<_, i64>(1), 7);
    assert!(report.get::<_, bool>(2));
    assert_eq!(report.get::<_, i64>(3), 1500);
    assert_eq!(report.get::<_, f64>(4), 0.9);

    let example = client
        .query_one(
            "SELECT success, score, capability_factor, load_factor, priority,
                    specialist_capabilities, attempt
             FROM scorer_training_examples",
            &[],
        )
        .await
        .unwrap();
    assert!(example.get::<_, bool>(0));
    assert_eq!(example.get::<_, Option<f64>>(1), Some(7.0));
    assert_eq!(example.get::<_, Option<f64>>(2), Some(1.0));
    assert_eq!(example.get::<_, Option<f64>>(3), Some(0.8));
    assert_eq!(example.get::<_, Option<i32>>(4), Some(3));
    assert_eq!(
        example.get::<_, Option<Vec<String>>>(5),
        Some(vec!["rust".to_string()])
    );
    assert_eq!(example.get::<_, Option<i32>>(6), Some(1));
}

#[tokio::test]
async fn a_batch_applied_twice_doubles_nothing() {
    let db = TestDb::create().await;
    let mut client = db.migrated().await;
    apply_batch(&mut client, &lifecycle()).await.unwrap();
    let counts = count(&client, TABLE_COUNTS).await;
    let rows_before = snapshot(&client).await;

    let again = apply_batch(&mut client, &lifecycle()).await.unwrap();
    assert_eq!(again.applied, 0, "{again:?}");
    assert_eq!(again.duplicate, 4, "history rows and the report: {again:?}");
    assert_eq!(again.superseded, 2, "the specialist's events: {again:?}");
    assert_eq!(count(&client, TABLE_COUNTS).await, counts);
    assert_eq!(snapshot(&client).await, rows_before);

    // A report of the same assignment under another event id is a double too.
    let echo = vec![event(
        "backend/2000-0",
        2000,
        reported("st-1", "sp-1", 7, false),
    )];
    let summary = apply_batch(&mut client, &echo).await.unwrap();
    assert_eq!(summary.duplicate, 1);
    assert_eq!(count(&client, TABLE_COUNTS).await, counts);
}

/// Every current-state row, as text, for before/after comparisons.
async fn snapshot(client: &Client) -> Vec<String> {
    let sql = "SELECT row_to_json(s)::text FROM specialists s
               UNION ALL SELECT (row_to_json(t)::jsonb - 'payload')::text FROM subtasks t
               ORDER BY 1";
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn a_malformed_event_rejects_its_whole_batch() {
    let db = TestDb::create().await;
    let mut client = db.migrated().await;
    let mut events = lifecycle();
    events.push(event("no-type-1000-0", 1000, created("st-2", Queued, 1000)));
    let error = apply_batch(&mut client, &events).await.unwrap_err();
    assert!(
        matches!(&error, PgError::InvalidEvent { event_id, .. } if event_id == "no-type-1000-0"),
        "{error:?}"
    );
    assert!(!error.is_transient());
    assert_eq!(count(&client, TABLE_COUNTS).await, 0, "nothing was written");

    let overflow = vec![event(
        "backend/1-0",
        1,
        changed("st-3", Assigned, 1, Some("sp-1"), u64::MAX),
    )];
    let error = apply_batch(&mut client, &overflow).await.unwrap_err();
    assert!(error.to_string().contains("epoch"), "{error}");
}
