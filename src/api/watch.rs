//! WatchAssignments: replay in-flight work, then forward the specialist's feed without loss or repeats.

use std::collections::HashMap;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::{debug, Instrument};

use crate::domain::subtask::{Holder, WatchEvent, WatchEventKind};
use crate::pb;
use crate::store::{Feed, FeedItem, InFlight, Precondition, StoreError};

use super::status::ApiError;
use super::watch_slots::{Full, WatchSlot};
use super::{convert, ApiContext};

pub type WatchStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchAssignmentsResponse, Status>> + Send>>;

/// What a refused WatchAssignments suggests as the wait before trying again.
const WATCH_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Messages buffered per stream before the forwarder waits for the client.
const STREAM_BUFFER: usize = 64;
/// Delivered assignments remembered before the list is trimmed to what is still in flight.
const DELIVERED_TRIM_AT: usize = 4096;

/// Subscribes first, then reads in-flight work, so nothing assigned in between is missed.
/// RESOURCE_EXHAUSTED when the server keeps `--max-watch-streams` open already (or the caller
/// `--max-watch-streams-per-caller`);
/// FAILED_PRECONDITION when `incarnation` is not the specialist's current one.
pub async fn open(
    context: ApiContext,
    caller: String,
    specialist_id: String,
    incarnation: String,
) -> Result<WatchStream, ApiError> {
    let slot = context.watch_slots.take(&caller).map_err(|full| {
        let message = match full {
            Full::Server(max) => format!(
                "this server keeps {max} watch streams open already (--max-watch-streams); retry later or on another replica"
            ),
            Full::Caller(max) => format!(
                "caller {caller} keeps {max} watch streams open on this server already (--max-watch-streams-per-caller)"
            ),
        };
        ApiError::RateLimited {
            message,
            retry_after: WATCH_RETRY_AFTER,
        }
    })?;
    let feed = context.store.subscribe(&specialist_id).await?;
    let in_flight = context.store.in_flight(&specialist_id).await?;
    if let Some(ended) = ended(&specialist_id, &incarnation, &in_flight) {
        return Err(ended.into());
    }
    Ok(forward(
        context,
        specialist_id,
        incarnation,
        feed,
        in_flight,
        slot,
    ))
}

/// Why a stream for `incarnation` cannot go on, when the store's current one is another.
fn ended(specialist_id: &str, incarnation: &str, in_flight: &InFlight) -> Option<StoreError> {
    let current = in_flight.incarnation.as_deref()?;
    (current != incarnation).then(|| ended_error(specialist_id, incarnation))
}

fn ended_error(specialist_id: &str, incarnation: &str) -> StoreError {
    Precondition::IncarnationEnded {
        specialist_id: specialist_id.to_string(),
        incarnation: incarnation.to_string(),
    }
    .into()
}

/// Replays `in_flight`, then forwards `feed` (subscribed before `in_flight` was read).
fn forward(
    context: ApiContext,
    specialist_id: String,
    incarnation: String,
    feed: Feed,
    in_flight: InFlight,
    slot: WatchSlot,
) -> WatchStream {
    let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
    let span = tracing::info_span!("watch", %specialist_id);
    let forwarder = Forwarder {
        context,
        specialist_id,
        incarnation,
        sender,
        delivered: HashMap::new(),
        snapshot_epoch: 0,
        _slot: slot,
    };
    tokio::spawn(forwarder.run(feed, in_flight).instrument(span));
    ReceiverStream::new(receiver).boxed()
}

type Sender = mpsc::Sender<Result<pb::WatchAssignmentsResponse, Status>>;

/// Why forwarding stopped early.
struct WatcherGone;

struct Forwarder {
    /// Held while the forwarder runs: the stream's place under --max-watch-streams.
    _slot: WatchSlot,
    context: ApiContext,
    specialist_id: String,
    /// The incarnation this stream serves: it ends when another one starts.
    incarnation: String,
    sender: Sender,
    /// Subtask id -> the holder record this stream delivered as ASSIGNED and has not seen revoked.
    delivered: HashMap<String, Holder>,
    /// The type's epoch counter at the last in-flight read: a live ASSIGNED event with an epoch up
    /// to it happened before that read, which already showed it (held, or finished since).
    snapshot_epoch: u64,
}

impl Forwarder {
    async fn run(mut self, mut feed: Feed, in_flight: InFlight) {
        if self.replay(in_flight).await.is_err() {
            return;
        }
        loop {
            let item = tokio::select! {
                _ = self.context.shutdown.cancelled() => {
                    let status = Status::unavailable("server is shutting down; reconnect to another replica");
                    let _ = self.sender.send(Err(status)).await;
                    return;
                }
                _ = self.sender.closed() => {
                    debug!("watcher went away");
                    return;
                }
                item = feed.next() => item,
            };
            let outcome = match item {
                None => Err(self.end_deregistered().await),
                Some(FeedItem::Lagged) => self.catch_up().await,
                Some(FeedItem::Event(event)) => self.forward(*event).await,
                Some(FeedItem::Incarnation(current)) if current != self.incarnation => {
                    Err(self.end_incarnation().await)
                }
                Some(FeedItem::Incarnation(_)) => Ok(()),
            };
            if outcome.is_err() {
                return;
            }
        }
    }

    async fn end_deregistered(&self) -> WatcherGone {
        let status = Status::not_found(format!(
            "specialist {} was deregistered",
            self.specialist_id
        ));
        let _ = self.sender.send(Err(status)).await;
        WatcherGone
    }

    /// Another process registered the id: this stream's incarnation is over.
    async fn end_incarnation(&self) -> WatcherGone {
        let error = ended_error(&self.specialist_id, &self.incarnation);
        let _ = self.sender.send(Err(ApiError::from(error).into())).await;
        WatcherGone
    }

    async fn send(&self, event: WatchEvent) -> Result<(), WatcherGone> {
        let message = convert::watch_event_to_proto(event);
        self.sender.send(Ok(message)).await.map_err(|_| WatcherGone)
    }

    async fn forward(&mut self, event: WatchEvent) -> Result<(), WatcherGone> {
        let subtask_id = event.assignment.subtask_id.clone();
        match event.kind {
            WatchEventKind::Assigned => {
                // Older than the last in-flight read: that read showed it if it is still held.
                if event.epoch() <= self.snapshot_epoch {
                    return Ok(());
                }
                let already_sent = self
                    .delivered
                    .get(&subtask_id)
                    .is_some_and(|holder| holder.epoch == event.epoch());
                if already_sent {
                    return Ok(());
                }
                self.remember(&event);
            }
            WatchEventKind::Revoked => {
                // Only the assignment this stream delivered, under that epoch: a revocation of an
                // earlier one (or one already synthesized after a lag) tells nothing new.
                let revokes_delivered = self
                    .delivered
                    .get(&subtask_id)
                    .is_some_and(|holder| holder.epoch == event.epoch());
                if !revokes_delivered {
                    return Ok(());
                }
                self.delivered.remove(&subtask_id);
            }
        }
        self.send(event).await?;
        if self.delivered.len() > DELIVERED_TRIM_AT {
            self.trim().await;
        }
        Ok(())
    }

    fn remember(&mut self, event: &WatchEvent) {
        if let Some(holder) = &event.assignment.holder {
            self.delivered
                .insert(event.assignment.subtask_id.clone(), holder.clone());
        }
    }

    /// Sends in-flight assignments this stream has not delivered yet.
    async fn replay(&mut self, in_flight: InFlight) -> Result<(), WatcherGone> {
        self.snapshot_epoch = self.snapshot_epoch.max(in_flight.epoch);
        for event in in_flight.events {
            let already_sent = self
                .delivered
                .get(&event.assignment.subtask_id)
                .is_some_and(|holder| holder.epoch == event.epoch());
            if already_sent {
                continue;
            }
            self.remember(&event);
            self.send(event).await?;
        }
        Ok(())
    }

    /// After falling behind: anything delivered but no longer held was either finished by this
    /// specialist or taken away; the latter gets the REVOKED event it missed. Then new work is replayed.
    async fn catch_up(&mut self) -> Result<(), WatcherGone> {
        let Ok(in_flight) = self.context.store.in_flight(&self.specialist_id).await else {
            return Err(self.end_deregistered().await);
        };
        if ended(&self.specialist_id, &self.incarnation, &in_flight).is_some() {
            return Err(self.end_incarnation().await);
        }
        let held: HashMap<&str, u64> = in_flight
            .events
            .iter()
            .map(|event| (event.assignment.subtask_id.as_str(), event.epoch()))
            .collect();
        let gone: Vec<(String, Holder)> = self
            .delivered
            .iter()
            .filter(|(subtask_id, holder)| held.get(subtask_id.as_str()) != Some(&holder.epoch))
            .map(|(subtask_id, holder)| (subtask_id.clone(), holder.clone()))
            .collect();
        for (subtask_id, revoked) in gone {
            self.delivered.remove(&subtask_id);
            let Ok((mut assignment, subtask)) =
                self.context.store.get_assignment(&subtask_id).await
            else {
                continue;
            };
            let finished_by_this_holder =
                assignment.state.is_terminal() && assignment.holder.as_ref() == Some(&revoked);
            if finished_by_this_holder {
                continue;
            }
            assignment.holder = Some(revoked);
            let event = WatchEvent {
                kind: WatchEventKind::Revoked,
                assignment,
                subtask,
            };
            self.send(event).await?;
        }
        self.replay(in_flight).await
    }

    /// Forgets delivered work that is no longer in flight (finished by the specialist: a revocation
    /// would have removed it already).
    async fn trim(&mut self) {
        let Ok(in_flight) = self.context.store.in_flight(&self.specialist_id).await else {
            return;
        };
        let held: HashMap<String, u64> = in_flight
            .events
            .into_iter()
            .map(|event| {
                let epoch = event.epoch();
                (event.assignment.subtask_id, epoch)
            })
            .collect();
        self.delivered
            .retain(|subtask_id, holder| held.get(subtask_id) == Some(&holder.epoch));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use futures::StreamExt;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::api::rate_limit::RateLimiter;
    use crate::domain::policy::RoutingPolicy;
    use crate::domain::specialist::{Availability, Incarnation, Registration};
    use crate::domain::subtask::{CompletionReport, SubtaskSpec};
    use crate::store::memory::MemoryStore;
    use crate::store::Store;

    fn spec(subtask_id: &str) -> SubtaskSpec {
        SubtaskSpec {
            subtask_id: subtask_id.into(),
            specialist_type: "frontend".into(),
            required_capabilities: vec!["react".into()],
            priority: 0,
            parent_id: None,
            depends_on: Vec::new(),
            payload: Vec::new(),
            require_all_capabilities: false,
        }
    }

    /// A live ASSIGNED event that reaches the stream after the in-flight read, for work finished
    /// before that read (the Redis feed can deliver one late), is not forwarded.
    #[tokio::test]
    async fn an_assignment_older_than_the_replay_is_dropped() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(RoutingPolicy::default()));
        store
            .register(Registration {
                specialist_id: Some("s1".into()),
                specialist_type: "frontend".into(),
                capabilities: vec!["react".into()],
                max_concurrency: Some(2),
                labels: Default::default(),
                availability: Availability::Online,
                incarnation: Incarnation::Start {
                    incarnation: "a1".into(),
                    take_over: false,
                },
            })
            .await
            .unwrap();
        let mut early = store.subscribe("s1").await.unwrap();
        let done = store.assign(spec("done")).await.unwrap();
        let epoch = done.holder.as_ref().unwrap().epoch;
        store
            .report_completion(CompletionReport {
                subtask_id: "done".into(),
                specialist_id: "s1".into(),
                epoch,
                success: true,
                completion_time_ms: 1,
                quality_score: 1.0,
                detail: String::new(),
                incarnation: None,
            })
            .await
            .unwrap();
        let stale = early.next().await.unwrap();
        assert!(matches!(&stale, FeedItem::Event(event) if event.assignment.subtask_id == "done"));

        let live = store.subscribe("s1").await.unwrap();
        let in_flight = store.in_flight("s1").await.unwrap();
        assert!(in_flight.events.is_empty());
        assert_eq!(in_flight.epoch, epoch);
        let context = ApiContext {
            store: store.clone(),
            policy: Arc::new(RoutingPolicy::default()),
            heartbeat_interval_ms: 1_000,
            assign_limiter: Arc::new(RateLimiter::new(0)),
            engine: None,
            assigner: crate::service::Assigner::new(store.clone(), None),
            shutdown: CancellationToken::new(),
            watch_slots: Arc::new(crate::api::watch_slots::WatchSlots::new(1, 1)),
        };
        let feed = futures::stream::iter([stale]).chain(live).boxed();
        let slot = context.watch_slots.take("test").expect("a slot");
        let mut stream = forward(context, "s1".into(), "a1".into(), feed, in_flight, slot);
        store.assign(spec("next")).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("an event")
            .expect("the stream is open")
            .expect("not an error");
        let assignment = first.assignment.expect("an assignment");
        assert_eq!(assignment.subtask_id, "next");
    }
}
