//! The simulated specialists: each registers, holds a WatchAssignments stream, heartbeats at the
//! interval the server asks for, and reports every ASSIGNED subtask complete (with its epoch) after
//! the think time. Assignments of subtasks this run did not submit are released at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tonic::transport::Channel;
use tonic::{Code, Request};
use tracing::{debug, warn};

use super::RunContext;
use crate::pb;
use crate::pb::assign_service_client::AssignServiceClient;
use crate::pb::performance_service_client::PerformanceServiceClient;
use crate::pb::register_service_client::RegisterServiceClient;

/// Times a watch stream is reopened after it ends or fails, per agent.
const MAX_RECONNECTS: u32 = 5;
/// Wait before reopening a watch stream.
const RECONNECT_DELAY: Duration = Duration::from_millis(100);
/// Registrations in flight at once while the fleet starts.
const REGISTER_PARALLELISM: usize = 64;
/// Shortest heartbeat interval used, whatever the server asks.
const MIN_HEARTBEAT: Duration = Duration::from_millis(50);

/// What every agent is.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub specialist_type: String,
    pub capabilities: Vec<String>,
    pub max_concurrency: u32,
    pub think: Duration,
}

/// The running agents; `stop` ends their streams and deregisters them.
pub struct Fleet {
    ids: Vec<(String, Channel)>,
    tasks: JoinSet<()>,
}

/// Registers `count` agents (spread over `channels`) and opens their streams; returns once every
/// stream is open. Each agent reads its stream as soon as it is open: an unread stream would fill
/// the connection's HTTP/2 window and stall every other call on that connection.
pub async fn start(
    context: Arc<RunContext>,
    channels: &[Channel],
    count: u32,
    spec: AgentSpec,
) -> anyhow::Result<Fleet> {
    if channels.is_empty() {
        bail!("no connection to the server");
    }
    let spec = Arc::new(spec);
    // Agent n of N first heartbeats n/N of the way into the interval: real fleets drift apart,
    // and N agents renewing in the same millisecond would measure a burst no fleet sends.
    let agents: Vec<(String, Channel, f64)> = (0..count)
        .map(|n| {
            let id = format!("{}-agent-{n}", context.run_id);
            let phase = f64::from(n) / f64::from(count);
            (id, channels[n as usize % channels.len()].clone(), phase)
        })
        .collect();
    let registering = Arc::new(Semaphore::new(REGISTER_PARALLELISM));
    let (ready, mut readiness) = mpsc::channel(agents.len().max(1));
    // Dropping the set (an error, or the caller's timeout) aborts every agent task.
    let mut tasks = JoinSet::new();
    for (id, channel, phase) in agents.iter().cloned() {
        let (context, spec, registering, ready) = (
            context.clone(),
            spec.clone(),
            registering.clone(),
            ready.clone(),
        );
        tasks.spawn(async move {
            let opened = {
                let _permit = registering.acquire_owned().await;
                Agent::open(context, spec, id, channel, phase).await
            };
            match opened {
                Ok((agent, stream)) => {
                    let _ = ready.send(Ok(())).await;
                    agent.run(stream).await;
                }
                Err(error) => {
                    let _ = ready.send(Err(error)).await;
                }
            }
        });
    }
    drop(ready);
    for _ in 0..agents.len() {
        match readiness.recv().await {
            Some(Ok(())) => {}
            Some(Err(error)) => return Err(error),
            None => bail!("agent tasks ended before their streams opened"),
        }
    }
    let ids = agents
        .into_iter()
        .map(|(id, channel, _)| (id, channel))
        .collect();
    Ok(Fleet { ids, tasks })
}

impl Fleet {
    /// Ends every stream and deregisters every agent (bounded by the call deadline).
    pub async fn stop(mut self, context: &RunContext) {
        context.agents_stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        let deregistered = futures::stream::iter(self.ids)
            .map(|(id, channel)| async move {
                let mut client = RegisterServiceClient::new(channel);
                let mut request = Request::new(pb::DeregisterRequest { specialist_id: id });
                request.set_timeout(context.timeout);
                client.deregister(request).await
            })
            .buffer_unordered(REGISTER_PARALLELISM)
            .collect::<Vec<_>>()
            .await;
        for result in deregistered {
            if let Err(status) = result {
                context.stats.errors.record("Deregister", status.code());
            }
        }
    }
}

/// One registered specialist with an open stream.
struct Agent {
    context: Arc<RunContext>,
    spec: Arc<AgentSpec>,
    id: String,
    /// The session Register started (every call carries it).
    incarnation: String,
    channel: Channel,
    heartbeat_every: Duration,
    /// Share of the interval before the first heartbeat.
    heartbeat_phase: f64,
}

type Stream = tonic::Streaming<pb::WatchAssignmentsResponse>;

impl Agent {
    async fn open(
        context: Arc<RunContext>,
        spec: Arc<AgentSpec>,
        id: String,
        channel: Channel,
        heartbeat_phase: f64,
    ) -> anyhow::Result<(Self, Stream)> {
        let mut register = RegisterServiceClient::new(channel.clone());
        let mut request = Request::new(pb::RegisterRequest {
            specialist_id: id.clone(),
            specialist_type: spec.specialist_type.clone(),
            capabilities: spec.capabilities.clone(),
            max_concurrency: spec.max_concurrency,
            labels: Default::default(),
            availability: pb::Availability::Online as i32,
            incarnation: String::new(),
            // The run owns its ids: an agent of an earlier run that is still live is replaced.
            take_over: true,
        });
        request.set_timeout(context.timeout);
        let reply = register.register(request).await.map_err(|status| {
            context.stats.errors.record("Register", status.code());
            anyhow::anyhow!("registering agent {id}: {status}")
        })?;
        let reply = reply.into_inner();
        let interval_ms = u64::try_from(reply.heartbeat_interval_ms).unwrap_or(0);
        let incarnation = reply.incarnation;
        let stream = watch(&context, &channel, &id, &incarnation)
            .await
            .with_context(|| format!("opening the stream of agent {id}"))?;
        let agent = Self {
            context,
            spec,
            id,
            incarnation,
            channel,
            heartbeat_every: Duration::from_millis(interval_ms).max(MIN_HEARTBEAT),
            heartbeat_phase,
        };
        Ok((agent, stream))
    }

    /// Heartbeats and serves the stream until the fleet stops.
    async fn run(self, mut stream: Stream) {
        // Aborted on drop, so an agent task that is aborted takes its heartbeats with it.
        let _heartbeat = AbortOnDrop(tokio::spawn(heartbeat(
            self.context.clone(),
            self.channel.clone(),
            self.id.clone(),
            self.incarnation.clone(),
            self.heartbeat_every,
            self.heartbeat_every.mul_f64(self.heartbeat_phase),
        )));
        let working: Arc<Mutex<HashSet<(String, u64)>>> = Arc::default();
        let mut reconnects = 0;
        loop {
            let message = tokio::select! {
                _ = self.context.agents_stop.cancelled() => break,
                message = stream.message() => message,
            };
            let ended = match message {
                Ok(Some(event)) => {
                    self.handle(event, &working);
                    continue;
                }
                Ok(None) => Code::Ok,
                Err(status) => {
                    self.context
                        .stats
                        .errors
                        .record("WatchAssignments", status.code());
                    status.code()
                }
            };
            if reconnects >= MAX_RECONNECTS || self.context.agents_stop.is_cancelled() {
                warn!(agent = %self.id, ?ended, "watch stream ended; giving up");
                break;
            }
            reconnects += 1;
            self.context.stats.reconnects.incr();
            tokio::time::sleep(RECONNECT_DELAY).await;
            match watch(&self.context, &self.channel, &self.id, &self.incarnation).await {
                Ok(reopened) => stream = reopened,
                Err(error) => debug!(agent = %self.id, %error, "reopening the stream failed"),
            }
        }
    }

    fn handle(
        &self,
        event: pb::WatchAssignmentsResponse,
        working: &Arc<Mutex<HashSet<(String, u64)>>>,
    ) {
        let now = Instant::now();
        let Some(assignment) = event.assignment else {
            return;
        };
        if event.kind == pb::WatchEventKind::Revoked as i32 {
            self.context.stats.revoked.incr();
            return;
        }
        if event.kind != pb::WatchEventKind::Assigned as i32 {
            return;
        }
        let key = (assignment.subtask_id.clone(), assignment.epoch);
        if !working.lock().insert(key.clone()) {
            return; // replayed after a reconnect; already being worked on
        }
        let ours = self.context.tracker.delivered(&assignment.subtask_id, now)
            || assignment.subtask_id.starts_with(&self.context.run_id);
        let work = Work {
            context: self.context.clone(),
            channel: self.channel.clone(),
            specialist_id: self.id.clone(),
            incarnation: self.incarnation.clone(),
            subtask_id: assignment.subtask_id,
            epoch: assignment.epoch,
        };
        let think = self.spec.think;
        let working = working.clone();
        tokio::spawn(async move {
            if ours {
                work.complete(think).await;
            } else {
                work.context.stats.foreign.incr();
                work.release().await;
            }
            working.lock().remove(&key);
        });
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One assignment to finish.
struct Work {
    context: Arc<RunContext>,
    channel: Channel,
    specialist_id: String,
    incarnation: String,
    subtask_id: String,
    epoch: u64,
}

impl Work {
    async fn complete(self, think: Duration) {
        if !think.is_zero() {
            tokio::time::sleep(think).await;
        }
        let mut client = PerformanceServiceClient::new(self.channel);
        let mut request = Request::new(pb::ReportCompletionRequest {
            subtask_id: self.subtask_id.clone(),
            specialist_id: self.specialist_id,
            epoch: self.epoch,
            success: true,
            completion_time_ms: think.as_millis() as u64,
            quality_score: 0.9,
            detail: String::new(),
            incarnation: self.incarnation,
        });
        request.set_timeout(self.context.timeout);
        let started = Instant::now();
        match client.report_completion(request).await {
            Ok(_) => {
                let now = Instant::now();
                self.context.stats.report.record(now - started);
                self.context.tracker.completed(&self.subtask_id, now);
            }
            Err(status) => self
                .context
                .stats
                .errors
                .record("ReportCompletion", status.code()),
        }
    }

    async fn release(self) {
        let mut client = AssignServiceClient::new(self.channel);
        let mut request = Request::new(pb::ReleaseRequest {
            subtask_id: self.subtask_id,
            specialist_id: self.specialist_id,
            epoch: self.epoch,
            reason: "switchboard bench agent: not this run's subtask".into(),
            incarnation: self.incarnation,
        });
        request.set_timeout(self.context.timeout);
        if let Err(status) = client.release(request).await {
            self.context.stats.errors.record("Release", status.code());
        }
    }
}

async fn watch(
    context: &RunContext,
    channel: &Channel,
    id: &str,
    incarnation: &str,
) -> Result<Stream, tonic::Status> {
    let mut client = AssignServiceClient::new(channel.clone());
    let request = pb::WatchAssignmentsRequest {
        specialist_id: id.to_string(),
        incarnation: incarnation.to_string(),
    };
    client
        .watch_assignments(request)
        .await
        .map(|response| response.into_inner())
        .inspect_err(|status| {
            context
                .stats
                .errors
                .record("WatchAssignments", status.code())
        })
}

/// Renews the lease until the fleet stops.
async fn heartbeat(
    context: Arc<RunContext>,
    channel: Channel,
    id: String,
    incarnation: String,
    every: Duration,
    phase: Duration,
) {
    let mut client = RegisterServiceClient::new(channel);
    // Register just renewed the lease: the first heartbeat is due after `phase` (below `every`).
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + phase, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = context.agents_stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let mut request = Request::new(pb::HeartbeatRequest {
            specialist_id: id.clone(),
            availability: pb::Availability::Unspecified as i32,
            incarnation: incarnation.clone(),
        });
        request.set_timeout(context.timeout);
        if let Err(status) = client.heartbeat(request).await {
            context.stats.errors.record("Heartbeat", status.code());
        }
    }
}
