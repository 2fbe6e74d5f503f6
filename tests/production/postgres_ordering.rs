//! The history applier against the local Postgres when events arrive out of order: every order of
//! a specialist's and a subtask's events ends where the ordered run ends and never moves a row
//! backwards; two relays applying overlapping batches neither deadlock nor double anything.

use crate::pg;

use pg::{changed, count, created, event, registered, reported, TestDb};
use serde_json::{json, Value};
use switchboard::domain::history::{Change, HistoryEvent};
use switchboard::domain::specialist::Availability;
use switchboard::domain::subtask::SubtaskState::{Assigned, Completed, Queued};
use switchboard::store::postgres::{self, apply_batch, ApplySummary};
use tokio_postgres::Client;

/// Five events of one specialist and five of one subtask, at stream positions `base` ms on (event
/// ids are unique store-wide) but at the same times whatever the base. Positions compare by their
/// parts: with base 0, `999-0` < `1000-9` < `1000-10`, although text comparison says otherwise.
fn stories(suffix: &str, base: i64) -> Vec<[HistoryEvent; 2]> {
    let specialist = format!("sp-{suffix}");
    let subtask = format!("st-{suffix}");
    let availability = |availability| Change::SpecialistAvailability {
        specialist_id: specialist.clone(),
        availability,
    };
    let steps: [(&str, Change, Change); 5] = [
        (
            "998-0",
            registered(&specialist, &["a"], Availability::Online),
            created(&subtask, Queued, 998),
        ),
        (
            "999-0",
            availability(Availability::Busy),
            changed(&subtask, Assigned, 1, Some("sp-a"), 1),
        ),
        (
            "1000-9",
            Change::SpecialistDeregistered {
                specialist_id: specialist.clone(),
            },
            changed(&subtask, Queued, 2, None, 1),
        ),
        (
            "1000-10",
            registered(&specialist, &["b", "c"], Availability::Idle),
            changed(&subtask, Assigned, 2, Some("sp-b"), 2),
        ),
        (
            "1001-0",
            availability(Availability::Away),
            changed(&subtask, Completed, 2, Some("sp-b"), 2),
        ),
    ];
    steps
        .into_iter()
        .map(|(position, specialist_change, subtask_change)| {
            let (millis, seq) = position.split_once('-').unwrap();
            let at_ms: i64 = millis.parse().unwrap();
            let event_id = format!("backend/{}-{seq}", base + at_ms);
            [
                event(&event_id, at_ms, specialist_change),
                event(&event_id, at_ms, subtask_change),
            ]
        })
        .collect()
}

fn permutations(items: Vec<usize>) -> Vec<Vec<usize>> {
    if items.len() <= 1 {
        return vec![items];
    }
    let mut all = Vec::new();
    for (index, first) in items.iter().enumerate() {
        let mut rest = items.clone();
        rest.remove(index);
        for mut tail in permutations(rest) {
            tail.insert(0, *first);
            all.push(tail);
        }
    }
    all
}

/// The rows of one story's specialist and subtask, without their ids and stream positions.
async fn story_rows(client: &Client, suffix: &str) -> (Value, Value) {
    let specialist: Value = client
        .query_one(
            "SELECT row_to_json(s)::jsonb - 'specialist_id' - 'last_event_id' - 'last_event_ms'
                    - 'registration_event_ms'
             FROM specialists s WHERE specialist_id = $1",
            &[&format!("sp-{suffix}")],
        )
        .await
        .unwrap()
        .get(0);
    let subtask: Value = client
        .query_one(
            "SELECT row_to_json(t)::jsonb - 'subtask_id' - 'last_event_id' - 'last_event_ms'
             FROM subtasks t WHERE subtask_id = $1",
            &[&format!("st-{suffix}")],
        )
        .await
        .unwrap()
        .get(0);
    (specialist, subtask)
}

async fn positions(client: &Client, suffix: &str) -> Vec<(i64, i64)> {
    client
        .query(
            "SELECT last_event_ms, last_event_seq FROM specialists WHERE specialist_id = $1
             UNION ALL
             SELECT last_event_ms, last_event_seq FROM subtasks WHERE subtask_id = $2",
            &[&format!("sp-{suffix}"), &format!("st-{suffix}")],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test]
async fn events_in_any_order_end_where_the_ordered_run_ends() {
    let db = TestDb::create().await;
    let mut client = db.migrated().await;
    for step in stories("ref", 0) {
        apply_batch(&mut client, &step).await.unwrap();
    }
    let reference = story_rows(&client, "ref").await;
    let (specialist, subtask) = &reference;
    assert_eq!(specialist["availability"], "away", "{specialist}");
    assert_eq!(specialist["capabilities"], json!(["b", "c"]));
    assert_eq!(specialist["deregistered_at"], Value::Null);
    assert_eq!(subtask["state"], "COMPLETED", "{subtask}");
    assert_eq!(subtask["specialist_id"], "sp-b");
    assert_eq!(subtask["score"], 2.0);
    assert_ne!(subtask["assigned_at"], Value::Null);
    assert_ne!(subtask["created_at"], Value::Null);

    // One event per row per batch, in every order of the five steps.
    for (index, order) in permutations((0..5).collect()).into_iter().enumerate() {
        let suffix = index.to_string();
        let steps = stories(&suffix, 10_000 * (index as i64 + 1));
        let mut last_positions: Vec<(i64, i64)> = Vec::new();
        for step in order {
            apply_batch(&mut client, &steps[step]).await.unwrap();
            let now = positions(&client, &suffix).await;
            if last_positions.len() == now.len() {
                for (before, after) in last_positions.iter().zip(&now) {
                    assert!(before <= after, "a row moved backwards in order {index}");
                }
            }
            last_positions = now;
        }
        assert_eq!(
            story_rows(&client, &suffix).await,
            reference,
            "permutation {index}"
        );
    }
    let history = count(&client, "SELECT count(*) FROM assignment_history").await;
    assert_eq!(history, 121 * 5, "every event is in the history once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_with_overlapping_batches_neither_deadlock_nor_double() {
    let db = TestDb::create().await;
    let mut reference_client = db.migrated().await;
    let mut events = Vec::new();
    for subtask in 0..40 {
        let suffix = subtask.to_string();
        for [_, subtask_event] in stories(&suffix, 10_000 * (subtask + 1)) {
            events.push(subtask_event);
        }
        let report_id = format!("backend/{}-99", 10_000 * (subtask + 1) + 1000);
        events.push(event(
            &report_id,
            1000,
            reported(&format!("st-{suffix}"), "sp-b", 2, true),
        ));
    }
    let total = events.len();
    let forward = events.clone();
    let mut backward = events;
    backward.reverse();
    // Each relay takes a pooled connection per batch, as the real relay will.
    let pool = postgres::pool(&db.url(), 4).unwrap();
    let relay = |batches: Vec<HistoryEvent>, pool: postgres::PgPool| async move {
        let mut summary = ApplySummary::default();
        for chunk in batches.chunks(25) {
            let mut client = pool.get().await.expect("a pooled connection");
            let applied = apply_batch(&mut client, chunk)
                .await
                .expect("no deadlock, no error");
            summary.applied += applied.applied;
            summary.duplicate += applied.duplicate;
            summary.superseded += applied.superseded;
        }
        summary
    };
    let first = tokio::spawn(relay(forward, pool.clone()));
    let second = tokio::spawn(relay(backward, pool.clone()));
    let (first, second) = (first.await.unwrap(), second.await.unwrap());

    assert_eq!(
        first.applied + second.applied,
        total,
        "{first:?} {second:?}"
    );
    assert_eq!(first.applied + first.duplicate + first.superseded, total);
    let history = count(&reference_client, "SELECT count(*) FROM assignment_history").await;
    assert_eq!(history, 40 * 5);
    let reports = count(
        &reference_client,
        "SELECT count(*) FROM performance_reports",
    )
    .await;
    assert_eq!(reports, 40);
    let completed = count(
        &reference_client,
        "SELECT count(*) FROM subtasks WHERE state = 'COMPLETED' AND created_at IS NOT NULL",
    )
    .await;
    assert_eq!(completed, 40);
    let again = apply_batch(&mut reference_client, &forward_copy(40))
        .await
        .unwrap();
    assert_eq!(again.applied, 0);
}

fn forward_copy(subtasks: usize) -> Vec<HistoryEvent> {
    (0..subtasks)
        .flat_map(|subtask| stories(&subtask.to_string(), 10_000 * (subtask as i64 + 1)))
        .map(|[_, subtask_event]| subtask_event)
        .collect()
}
