//! Harness of the Postgres tests: a fresh database per test on the local server, dropped when the
//! test ends (also when it panics), and builders for history events.
//!
//! The server is `postgres://postgres@127.0.0.1:5432` (trust auth) unless
//! SWITCHBOARD_TEST_POSTGRES names another (a URL without a database). Only databases named
//! `sb_test_*` that a test created itself are ever dropped.
#![allow(dead_code)]

pub mod checker;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::Client;

use switchboard::domain::history::{Change, HistoryEvent};
use switchboard::domain::scoring::{Factor, ScoreBreakdown};
use switchboard::domain::specialist::Availability;
use switchboard::domain::subtask::{Subtask, SubtaskSpec, SubtaskState};
use switchboard::store::postgres;

static NEXT_DATABASE: AtomicUsize = AtomicUsize::new(0);

fn server_url() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
        .trim_end_matches('/')
        .to_string()
}

/// A database of its own for one test; dropped (WITH FORCE) when this guard goes.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "sb_test_{}_{}_{}",
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        let admin = postgres::connect(&format!("{}/postgres", server_url()))
            .await
            .expect("the local Postgres server accepts connections");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        TestDb { name }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", server_url(), self.name)
    }

    pub async fn client(&self) -> Client {
        postgres::connect(&self.url()).await.expect("connect")
    }

    /// A connection to the database with every migration applied.
    pub async fn migrated(&self) -> Client {
        let mut client = self.client().await;
        postgres::migrate(&mut client).await.expect("migrate");
        client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        debug_assert!(self.name.starts_with("sb_test_"));
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let admin_url = format!("{}/postgres", server_url());
        // The test's own runtime may be gone or busy unwinding: drop from a thread of our own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime.block_on(async {
                let admin = postgres::connect(&admin_url)
                    .await
                    .map_err(|error| error.to_string())?;
                admin
                    .batch_execute(&statement)
                    .await
                    .map_err(|error| error.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop test database {}: {error}", self.name),
            Err(_) => eprintln!("dropping test database {} panicked", self.name),
        }
    }
}

pub async fn count(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

pub fn event(event_id: &str, at_ms: i64, change: Change) -> HistoryEvent {
    HistoryEvent {
        event_id: event_id.to_string(),
        at_ms,
        change,
    }
}

pub fn registered(
    specialist_id: &str,
    capabilities: &[&str],
    availability: Availability,
) -> Change {
    Change::SpecialistRegistered {
        specialist_id: specialist_id.to_string(),
        specialist_type: "backend".to_string(),
        capabilities: capabilities.iter().map(|name| name.to_string()).collect(),
        max_concurrency: 4,
        labels: BTreeMap::from([("zone".to_string(), "eu".to_string())]),
        availability,
        incarnation: Some(format!("{:x}", capabilities.len())),
    }
}

pub fn created(subtask_id: &str, state: SubtaskState, created_at_ms: i64) -> Change {
    Change::SubtaskCreated {
        subtask: Subtask {
            spec: SubtaskSpec {
                subtask_id: subtask_id.to_string(),
                specialist_type: "backend".to_string(),
                required_capabilities: vec!["rust".to_string()],
                priority: 3,
                parent_id: Some("parent-1".to_string()),
                depends_on: vec![],
                payload: vec![0, 1, 2, 255],
                require_all_capabilities: true,
            },
            created_at_ms,
        },
        routed_type: "backend".to_string(),
        state,
        attempt: 1,
        specialist_id: None,
        epoch: 0,
        breakdown: None,
        detail: String::new(),
    }
}

/// A change to `state`; ASSIGNED ones carry a breakdown whose score is `epoch`.
pub fn changed(
    subtask_id: &str,
    state: SubtaskState,
    attempt: u32,
    specialist_id: Option<&str>,
    epoch: u64,
) -> Change {
    Change::SubtaskChanged {
        subtask_id: subtask_id.to_string(),
        state,
        attempt,
        specialist_id: specialist_id.map(str::to_string),
        epoch,
        breakdown: (state == SubtaskState::Assigned).then(|| breakdown(epoch as f64)),
        detail: format!("{} at attempt {attempt}", state.as_str()),
    }
}

pub fn reported(subtask_id: &str, specialist_id: &str, epoch: u64, success: bool) -> Change {
    Change::CompletionReported {
        subtask_id: subtask_id.to_string(),
        specialist_id: specialist_id.to_string(),
        epoch,
        success,
        completion_time_ms: 1_500,
        quality_score: 0.9,
    }
}

pub fn breakdown(score: f64) -> ScoreBreakdown {
    let factor = |value: f64, weight: f64| Factor {
        value,
        weight,
        points: 100.0 * value * weight,
    };
    ScoreBreakdown {
        score,
        capability: factor(1.0, 0.4),
        load: factor(0.8, 0.3),
        availability: factor(0.9, 0.2),
        performance: factor(0.75, 0.1),
    }
}
