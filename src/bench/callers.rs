//! The orchestrators: M concurrent Assign callers, each with its own `x-caller-id`, at a fixed total
//! rate (each caller on its own evenly spaced schedule) or flat out (the next call when the reply
//! arrives). They stop after `limit` subtasks in all or at `deadline`, whichever comes first.
//! Latency is measured from when a call is sent; a caller that falls behind its schedule catches up
//! in a burst, so compare the achieved rate with the offered one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::Request;

use super::tracker::{Phase, Replied};
use super::RunContext;
use crate::api::CALLER_ID_METADATA;
use crate::pb;
use crate::pb::assign_service_client::AssignServiceClient;

/// What every submitted subtask looks like.
#[derive(Debug, Clone)]
pub struct SubtaskShape {
    pub specialist_type: String,
    pub required_capabilities: Vec<String>,
    pub payload: Vec<u8>,
}

/// One burst of Assign calls.
#[derive(Debug, Clone)]
pub struct Load {
    pub phase: Phase,
    /// Subtask ids are `<id_prefix>-<n>`, n counting from 0 over every caller.
    pub id_prefix: String,
    pub callers: u32,
    /// Calls per second over all callers; 0 = flat out.
    pub rate: f64,
    pub limit: u64,
    pub deadline: Instant,
}

/// When the calls went out and came back.
#[derive(Debug, Clone, Copy)]
pub struct LoadOutcome {
    pub started: Instant,
    /// When the last reply (or error) arrived.
    pub finished: Instant,
    /// Calls made, answered or not.
    pub calls: u64,
}

/// Runs `load` to the end over `channels` (caller j uses channel j mod their count).
pub async fn run(
    context: Arc<RunContext>,
    channels: &[Channel],
    shape: Arc<SubtaskShape>,
    load: Load,
) -> LoadOutcome {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(Mutex::new(started));
    let callers = load.callers.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..callers {
        let Some(channel) = channels.get(caller as usize % channels.len().max(1)) else {
            break;
        };
        let schedule = Schedule::new(started, load.rate, callers, caller);
        tasks.spawn(run_caller(Caller {
            context: context.clone(),
            client: AssignServiceClient::new(channel.clone()),
            caller_id: format!("{}-caller-{caller}", context.run_id),
            shape: shape.clone(),
            load: load.clone(),
            next: next.clone(),
            finished: finished.clone(),
            schedule,
        }));
    }
    while tasks.join_next().await.is_some() {}
    let finished = *finished.lock();
    LoadOutcome {
        started,
        finished,
        calls: next.load(Ordering::Relaxed).min(load.limit),
    }
}

/// When a caller's next call is due; None = flat out.
struct Schedule {
    next_at: Option<Instant>,
    every: Duration,
}

impl Schedule {
    fn new(start: Instant, rate: f64, callers: u32, caller: u32) -> Self {
        if rate.is_nan() || rate <= 0.0 || rate.is_infinite() {
            return Self {
                next_at: None,
                every: Duration::ZERO,
            };
        }
        // Caller j of M sends at start + (j + k * M) / rate: together, one call every 1/rate.
        let offset = Duration::from_secs_f64(f64::from(caller) / rate);
        Self {
            next_at: Some(start + offset),
            every: Duration::from_secs_f64(f64::from(callers) / rate),
        }
    }

    /// Waits for the next slot; false when it would fall at or after `deadline`.
    async fn wait(&mut self, deadline: Instant) -> bool {
        let Some(at) = self.next_at else {
            return Instant::now() < deadline;
        };
        if at >= deadline {
            return false;
        }
        self.next_at = Some(at + self.every);
        tokio::time::sleep_until(at.into()).await;
        true
    }
}

struct Caller {
    context: Arc<RunContext>,
    client: AssignServiceClient<Channel>,
    caller_id: String,
    shape: Arc<SubtaskShape>,
    load: Load,
    next: Arc<AtomicU64>,
    finished: Arc<Mutex<Instant>>,
    schedule: Schedule,
}

async fn run_caller(mut caller: Caller) {
    let caller_id = MetadataValue::try_from(caller.caller_id.as_str()).ok();
    loop {
        if !caller.schedule.wait(caller.load.deadline).await {
            break;
        }
        let n = caller.next.fetch_add(1, Ordering::Relaxed);
        if n >= caller.load.limit {
            break;
        }
        let subtask_id = format!("{}-{n}", caller.load.id_prefix);
        let mut request = Request::new(pb::AssignRequest {
            subtask_id: subtask_id.clone(),
            specialist_type: caller.shape.specialist_type.clone(),
            required_capabilities: caller.shape.required_capabilities.clone(),
            payload: caller.shape.payload.clone(),
            require_all_capabilities: true,
            description: String::new(),
            estimated_duration_ms: None,
            ..Default::default()
        });
        request.set_timeout(caller.context.timeout);
        if let Some(value) = &caller_id {
            request
                .metadata_mut()
                .insert(CALLER_ID_METADATA, value.clone());
        }
        let tracker = &caller.context.tracker;
        let sent = Instant::now();
        tracker.sent(&subtask_id, caller.load.phase, sent);
        let result = caller.client.assign(request).await;
        let now = Instant::now();
        match result {
            Ok(reply) => {
                if caller.load.phase == Phase::Measured {
                    caller.context.stats.assign.record(now - sent);
                }
                let state = reply
                    .into_inner()
                    .assignment
                    .map_or(pb::AssignmentState::Unspecified as i32, |a| a.state);
                let replied = if state == pb::AssignmentState::Assigned as i32 {
                    Replied::Assigned
                } else if state == pb::AssignmentState::Queued as i32 {
                    Replied::Queued
                } else {
                    Replied::Other
                };
                tracker.replied(&subtask_id, replied, now);
            }
            Err(status) => {
                caller.context.stats.errors.record("Assign", status.code());
                tracker.failed(&subtask_id);
            }
        }
        let mut finished = caller.finished.lock();
        if *finished < now {
            *finished = now;
        }
    }
}
