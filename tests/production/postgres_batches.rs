//! The applier against the local Postgres (postgres://postgres@127.0.0.1:5432, or
//! SWITCHBOARD_TEST_POSTGRES) when one batch carries several events of one row: the rows end where
//! one event per batch ends, repeats inside a batch count as duplicates, and a batch applied twice
//! changes nothing.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use switchboard::domain::history::{Change, HistoryEvent};
use switchboard::domain::scoring::{Factor, ScoreBreakdown};
use switchboard::domain::specialist::Availability;
use switchboard::domain::subtask::{Subtask, SubtaskSpec, SubtaskState};
use switchboard::store::postgres::{apply_batch, connect, migrate, ApplySummary};

fn server_url() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
        .trim_end_matches('/')
        .to_string()
}

/// A migrated database of its own, dropped by `drop_db`.
async fn fresh(tag: &str) -> (String, Client) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("sb_test_collapse_{tag}_{}_{nanos}", std::process::id());
    let admin = connect(&format!("{}/postgres", server_url()))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let mut client = connect(&format!("{}/{name}", server_url())).await.unwrap();
    migrate(&mut client).await.unwrap();
    (name, client)
}

async fn drop_db(name: &str, client: Client) {
    drop(client);
    let admin = connect(&format!("{}/postgres", server_url()))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
}

fn event(position: &str, change: Change) -> HistoryEvent {
    let at_ms = position.split_once('-').unwrap().0.parse().unwrap();
    HistoryEvent {
        event_id: format!("backend/{position}"),
        at_ms,
        change,
    }
}

fn breakdown(score: f64) -> ScoreBreakdown {
    let factor = Factor {
        value: 0.5,
        weight: 0.25,
        points: 12.5,
    };
    ScoreBreakdown {
        score,
        capability: factor,
        load: factor,
        availability: factor,
        performance: factor,
    }
}

/// Two specialists' and two subtasks' stories, with reports, in order.
fn stories() -> Vec<HistoryEvent> {
    let mut events = Vec::new();
    for (n, base) in [(1, 100), (2, 200)] {
        let specialist = format!("sp-{n}");
        let subtask = format!("st-{n}");
        let position = |offset: i64, seq: u32| format!("{}-{seq}", base + offset);
        events.push(event(
            &position(0, 0),
            Change::SpecialistRegistered {
                specialist_id: specialist.clone(),
                specialist_type: "backend".into(),
                capabilities: vec!["rust".into()],
                max_concurrency: 2,
                labels: BTreeMap::new(),
                availability: Availability::Online,
                incarnation: Some(format!("{n}")),
            },
        ));
        events.push(event(
            &position(0, 1),
            Change::SubtaskCreated {
                subtask: Subtask {
                    spec: SubtaskSpec {
                        subtask_id: subtask.clone(),
                        specialist_type: "backend".into(),
                        required_capabilities: vec!["rust".into()],
                        priority: 1,
                        parent_id: None,
                        depends_on: vec!["st-0".into()],
                        payload: vec![7; 3],
                        require_all_capabilities: false,
                    },
                    created_at_ms: base,
                },
                routed_type: "backend".into(),
                state: SubtaskState::Queued,
                attempt: 1,
                specialist_id: None,
                epoch: 0,
                breakdown: None,
                detail: String::new(),
            },
        ));
        let change =
            |state, holder: Option<&str>, epoch, score: Option<f64>| Change::SubtaskChanged {
                subtask_id: subtask.clone(),
                state,
                attempt: 1,
                specialist_id: holder.map(str::to_string),
                epoch,
                breakdown: score.map(breakdown),
                detail: String::new(),
            };
        events.push(event(
            &position(1, 0),
            change(SubtaskState::Assigned, Some(&specialist), 1, Some(0.5)),
        ));
        events.push(event(
            &position(2, 0),
            Change::SpecialistAvailability {
                specialist_id: specialist.clone(),
                availability: Availability::Busy,
            },
        ));
        events.push(event(
            &position(3, 0),
            Change::CompletionReported {
                subtask_id: subtask.clone(),
                specialist_id: specialist.clone(),
                epoch: 1,
                success: true,
                completion_time_ms: 10,
                quality_score: 1.0,
            },
        ));
        events.push(event(
            &position(3, 1),
            change(SubtaskState::Completed, Some(&specialist), 1, None),
        ));
        events.push(event(
            &position(4, 0),
            Change::SpecialistDeregistered {
                specialist_id: specialist.clone(),
            },
        ));
    }
    events
}

async fn snapshot(client: &Client) -> Vec<String> {
    let sql = "SELECT row_to_json(s)::text FROM specialists s
               UNION ALL SELECT row_to_json(t)::text FROM subtasks t
               UNION ALL SELECT row_to_json(h)::text FROM assignment_history h
               UNION ALL SELECT row_to_json(r)::text FROM performance_reports r
               ORDER BY 1";
    let rows = client.query(sql, &[]).await.unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

#[tokio::test]
async fn one_batch_ends_where_one_event_per_batch_ends() {
    let (reference_name, mut reference) = fresh("one").await;
    for event in stories() {
        apply_batch(&mut reference, &[event]).await.unwrap();
    }
    let expected = snapshot(&reference).await;

    let (name, mut client) = fresh("all").await;
    let mut events = stories();
    events.reverse();
    let summary = apply_batch(&mut client, &events).await.unwrap();
    assert_eq!(
        summary,
        ApplySummary {
            applied: events.len(),
            duplicate: 0,
            superseded: 0
        }
    );
    assert_eq!(snapshot(&client).await, expected);

    // Applied twice: nothing changes, every event is a duplicate or superseded.
    let again = apply_batch(&mut client, &events).await.unwrap();
    assert_eq!(again.applied, 0, "{again:?}");
    assert_eq!(again.duplicate, 8, "history rows and reports: {again:?}");
    assert_eq!(again.superseded, 6, "specialist events: {again:?}");
    assert_eq!(snapshot(&client).await, expected);
    drop_db(&name, client).await;
    drop_db(&reference_name, reference).await;
}

#[tokio::test]
async fn repeats_inside_a_batch_count_once() {
    let (name, mut client) = fresh("dup").await;
    let events = stories();
    let mut doubled = events.clone();
    doubled.extend(events.iter().cloned());
    // A second report of an assignment under another event id is a double too.
    let mut echo = events[4].clone();
    echo.event_id = "backend/999-9".into();
    doubled.push(echo);
    let summary = apply_batch(&mut client, &doubled).await.unwrap();
    assert_eq!(summary.applied, events.len(), "{summary:?}");
    assert_eq!(summary.duplicate, 8 + 1, "{summary:?}");
    assert_eq!(summary.superseded, 6, "{summary:?}");

    let (reference_name, mut reference) = fresh("dupref").await;
    apply_batch(&mut reference, &events).await.unwrap();
    assert_eq!(snapshot(&client).await, snapshot(&reference).await);
    drop_db(&name, client).await;
    drop_db(&reference_name, reference).await;
}
