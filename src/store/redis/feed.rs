//! Watch events from Redis pub/sub to this replica's subscribers. Every function publishes a
//! specialist's events on the deployment's one `watch` channel, in step order; one connection per
//! replica listens and hands each event to the local subscribers of its specialist. A message
//! starts with the specialist's id, so one for a stream this replica does not hold is skipped
//! after reading that line (lua/includes/events.lua has the layout). If the connection drops,
//! events may have been missed: every subscriber is told it lagged (it re-reads its in-flight
//! work, which Redis holds) and the hub reconnects.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};
use tracing::{debug, warn, Instrument};

use crate::domain::policy::ScoringWeights;
use crate::domain::subtask::{Subtask, WatchEvent, WatchEventKind};
use crate::store::{Feed, FeedItem, StoreResult};

use super::codec::decode_spec;
use super::replies::{malformed, view_of_state};

/// Events a subscriber may fall behind by before it is told to re-read its in-flight work.
const FEED_CAPACITY: usize = 1024;

#[derive(Default)]
struct Subscribers {
    by_specialist: HashMap<String, broadcast::Sender<FeedItem>>,
}

/// This replica's end of the watch channel.
pub struct FeedHub {
    _stop: tokio_util::sync::DropGuard,
    subscribers: Arc<Mutex<Subscribers>>,
    /// Counts successful SUBSCRIBEs, so a subscriber can wait until the channel is listened to.
    connected: watch::Receiver<u64>,
}

impl FeedHub {
    pub fn start(client: redis::Client, channel: String, weights: ScoringWeights) -> Self {
        let subscribers = Arc::new(Mutex::new(Subscribers::default()));
        let (connected_tx, connected) = watch::channel(0u64);
        let task_subscribers = Arc::clone(&subscribers);
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(
            async move {
                tokio::select! {
                    () = stopped.cancelled() => {}
                    () = listen(client, channel, task_subscribers, connected_tx, weights) => {}
                }
            }
            .instrument(tracing::info_span!("redis_watch_feed")),
        );
        Self {
            _stop: stop.drop_guard(),
            subscribers,
            connected,
        }
    }

    /// Waits until the hub listens to the channel (or gives up after `timeout`).
    pub async fn ready(&self, timeout: Duration) -> bool {
        let mut connected = self.connected.clone();
        tokio::time::timeout(timeout, connected.wait_for(|count| *count > 0))
            .await
            .is_ok_and(|result| result.is_ok())
    }

    pub fn subscribe(&self, specialist_id: &str) -> Feed {
        let receiver = self
            .subscribers
            .lock()
            .by_specialist
            .entry(specialist_id.to_string())
            .or_insert_with(|| broadcast::channel(FEED_CAPACITY).0)
            .subscribe();
        BroadcastStream::new(receiver)
            .map(|item| match item {
                Ok(item) => item,
                Err(BroadcastStreamRecvError::Lagged(_)) => FeedItem::Lagged,
            })
            .boxed()
    }
}

async fn listen(
    client: redis::Client,
    channel: String,
    subscribers: Arc<Mutex<Subscribers>>,
    connected: watch::Sender<u64>,
    weights: ScoringWeights,
) {
    let mut backoff = Duration::from_millis(50);
    let mut first = true;
    loop {
        let mut pubsub = match client.get_async_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(error) => {
                warn!(%error, "watch feed cannot reach redis; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        if let Err(error) = pubsub.subscribe(&channel).await {
            warn!(%error, "watch feed cannot subscribe; retrying");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(50);
        if !first {
            // Whatever was published while we were away is lost to us: subscribers re-read.
            tell_all_lagged(&subscribers);
        }
        first = false;
        connected.send_modify(|count| *count += 1);
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            deliver(&subscribers, message.get_payload_bytes(), &weights);
        }
        debug!("watch feed connection ended; reconnecting");
        tell_all_lagged(&subscribers);
    }
}

fn tell_all_lagged(subscribers: &Mutex<Subscribers>) {
    let subscribers = subscribers.lock();
    for sender in subscribers.by_specialist.values() {
        let _ = sender.send(FeedItem::Lagged);
    }
}

fn deliver(subscribers: &Mutex<Subscribers>, payload: &[u8], weights: &ScoringWeights) {
    let Some(newline) = payload.iter().position(|byte| *byte == b'\n') else {
        warn!("unreadable watch event");
        return;
    };
    let Ok(to) = std::str::from_utf8(&payload[..newline]) else {
        warn!("unreadable watch event");
        return;
    };
    let rest = &payload[newline + 1..];
    let mut subscribers = subscribers.lock();
    let Some(sender) = subscribers.by_specialist.get(to) else {
        // Nobody here watches this specialist: nothing else of the message is read.
        return;
    };
    if rest == b"END" {
        // Deregistered: dropping the sender ends every watch stream of this specialist.
        subscribers.by_specialist.remove(to);
        return;
    }
    if sender.receiver_count() == 0 {
        subscribers.by_specialist.remove(to);
        return;
    }
    if let Some(incarnation) = rest.strip_prefix(b"INC\n") {
        match std::str::from_utf8(incarnation) {
            Ok(incarnation) => {
                let _ = sender.send(FeedItem::Incarnation(incarnation.to_string()));
            }
            Err(_) => warn!(specialist_id = %to, "unreadable incarnation notice"),
        }
        return;
    }
    match decode_event(rest, weights) {
        Ok(event) => {
            let _ = sender.send(FeedItem::Event(Box::new(event)));
        }
        Err(error) => warn!(%error, specialist_id = %to, "unreadable watch event"),
    }
}

/// An event after its first line: kind, subtask id, routed type, queue position and the length
/// of v, one per line, then v (the packed assignment state) and the subtask as submitted.
fn decode_event(message: &[u8], weights: &ScoringWeights) -> StoreResult<WatchEvent> {
    const HEAD_LINES: usize = 5;
    let mut lines: Vec<&str> = Vec::with_capacity(HEAD_LINES);
    let mut at = 0;
    while lines.len() < HEAD_LINES {
        let end = message[at..]
            .iter()
            .position(|byte| *byte == b'\n')
            .map(|offset| at + offset)
            .ok_or_else(|| malformed("watch event"))?;
        lines.push(std::str::from_utf8(&message[at..end]).map_err(|_| malformed("watch event"))?);
        at = end + 1;
    }
    let kind = match lines[0] {
        "ASSIGNED" => WatchEventKind::Assigned,
        "REVOKED" => WatchEventKind::Revoked,
        _ => return Err(malformed("watch event kind")),
    };
    let position = if lines[3].is_empty() {
        None
    } else {
        Some(
            lines[3]
                .parse()
                .map_err(|_| malformed("watch event position"))?,
        )
    };
    let length: usize = lines[4]
        .parse()
        .map_err(|_| malformed("watch event length"))?;
    let state_end = at
        .checked_add(length)
        .filter(|end| *end <= message.len())
        .ok_or_else(|| malformed("watch event state"))?;
    let state =
        std::str::from_utf8(&message[at..state_end]).map_err(|_| malformed("watch event state"))?;
    let spec = decode_spec(&message[state_end..])?;
    let assignment = view_of_state(
        lines[1].to_string(),
        lines[2].to_string(),
        state,
        position,
        weights,
    )?;
    Ok(WatchEvent {
        kind,
        subtask: Subtask {
            spec,
            created_at_ms: assignment.created_at_ms,
        },
        assignment,
    })
}
