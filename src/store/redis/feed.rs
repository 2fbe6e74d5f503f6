//! Watch events from Redis pub/sub to this replica's subscribers. Every script publishes a
//! specialist's events on the deployment's one `watch` channel, in step order; one connection per
//! replica listens and hands each event to the local subscribers of its specialist. If the
//! connection drops, events may have been missed: every subscriber is told it lagged (it re-reads
//! its in-flight work, which Redis holds) and the hub reconnects.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};
use tracing::{debug, warn, Instrument};

use crate::domain::subtask::WatchEventKind;
use crate::store::{Feed, FeedItem};

use super::wire::EventWire;

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
    pub fn start(client: redis::Client, channel: String) -> Self {
        let subscribers = Arc::new(Mutex::new(Subscribers::default()));
        let (connected_tx, connected) = watch::channel(0u64);
        let task_subscribers = Arc::clone(&subscribers);
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(
            async move {
                tokio::select! {
                    () = stopped.cancelled() => {}
                    () = listen(client, channel, task_subscribers, connected_tx) => {}
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
            let payload: Vec<u8> = message.get_payload_bytes().to_vec();
            deliver(&subscribers, &payload);
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

fn deliver(subscribers: &Mutex<Subscribers>, payload: &[u8]) {
    let wire: EventWire = match serde_json::from_slice(payload) {
        Ok(wire) => wire,
        Err(error) => {
            warn!(%error, "unreadable watch event");
            return;
        }
    };
    let kind = match wire.kind.as_str() {
        "ASSIGNED" => WatchEventKind::Assigned,
        "REVOKED" => WatchEventKind::Revoked,
        "END" => {
            // Deregistered: dropping the sender ends every watch stream of this specialist.
            subscribers.lock().by_specialist.remove(&wire.to);
            return;
        }
        other => {
            warn!(kind = other, "unknown watch event kind");
            return;
        }
    };
    let mut subscribers = subscribers.lock();
    let Some(sender) = subscribers.by_specialist.get(&wire.to) else {
        return;
    };
    if sender.receiver_count() == 0 {
        subscribers.by_specialist.remove(&wire.to);
        return;
    }
    let to = wire.to.clone();
    match wire.into_domain(kind) {
        Ok(event) => {
            let _ = sender.send(FeedItem::Event(Box::new(event)));
        }
        Err(error) => warn!(%error, specialist_id = %to, "unreadable watch event"),
    }
}
