//! The outbox relay: moves the scripts' history events from a type's Redis `outbox` stream to
//! Postgres. Each type's slot has its own stream; every replica runs one relay per type, all of a
//! type's relays in one consumer group, so each entry goes to one relay. A batch is
//! applied idempotently (postgres/history.rs), then acknowledged and deleted, so the stream's length
//! is the backlog not yet in Postgres. While Postgres is down the batch is retried with backoff and
//! nothing is acknowledged; entries a dead relay (or a read that was cut off) had taken are claimed
//! after `claim_idle` (XAUTOCLAIM), a few seconds. A batch Postgres refuses for a reason retrying
//! cannot fix is applied one event at a time; an event that still fails after `poison_attempts`
//! single tries (or cannot be decoded) goes to the `history_dead_letters` table with its reason and
//! is acknowledged, so it never blocks the events behind it. Reads block for less than the Redis
//! client's reply timeout, so an idle stream is not a lost connection.

use std::time::Duration;

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::domain::history::HistoryEvent;
use crate::domain::policy::ScoringWeights;
use crate::store::postgres::{apply_batch, dead_letter, PgPool};

use crate::store::redis::connections::{Connection, Endpoint};
use crate::store::redis::outbox;

/// How long one XREADGROUP waits for entries: well below the Redis client's reply timeout
/// (500 ms), so an idle stream never looks like a lost connection.
const READ_BLOCK_MS: u64 = 250;

const GROUP: &str = "history";

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The key prefix of the type's slot (`sb:{namespace:type}:`).
    pub prefix: String,
    /// The type, which labels the events' ids (`<type>/<stream id>`).
    pub label: String,
    pub batch: usize,
    /// How long an entry may sit unacknowledged with another relay before this one takes it.
    pub claim_idle: Duration,
    /// Single tries of an event Postgres refuses before it is dead-lettered.
    pub poison_attempts: u32,
    /// The policy's weights (breakdowns come as their inputs; see outbox.rs).
    pub weights: ScoringWeights,
}

impl RelayConfig {
    pub fn new(prefix: String, label: String, weights: ScoringWeights) -> Self {
        Self {
            prefix,
            label,
            batch: 500,
            claim_idle: Duration::from_secs(5),
            poison_attempts: 3,
            weights,
        }
    }
}

pub async fn run(
    endpoint: Endpoint,
    postgres: PgPool,
    config: RelayConfig,
    stop: CancellationToken,
) {
    let stream = format!(
        "{}{}",
        config.prefix,
        crate::store::redis::keys::slot::OUTBOX
    );
    let consumer = format!("relay-{}-{:x}", std::process::id(), rand_suffix());
    info!(%stream, %consumer, "outbox relay started");
    let mut backoff = Backoff::default();
    while !stop.is_cancelled() {
        let mut connection = match endpoint.connect().await {
            Ok(connection) => connection,
            Err(error) => {
                warn!(%error, "outbox relay cannot reach redis");
                backoff.wait(&stop).await;
                continue;
            }
        };
        if let Err(error) = ensure_group(&mut connection, &stream).await {
            warn!(%error, "outbox relay cannot create its consumer group");
            backoff.wait(&stop).await;
            continue;
        }
        backoff.reset();
        let relay = Relay {
            connection,
            stream: &stream,
            consumer: &consumer,
            postgres: &postgres,
            config: &config,
            stop: &stop,
        };
        if let Err(error) = relay.pump().await {
            warn!(%error, "outbox relay lost redis; reconnecting");
            backoff.wait(&stop).await;
        }
    }
    debug!("outbox relay stopped");
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or_default()
}

async fn ensure_group(connection: &mut Connection, stream: &str) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(connection)
        .await;
    match created {
        Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

#[derive(Default)]
struct Backoff {
    current: Option<Duration>,
}

impl Backoff {
    async fn wait(&mut self, stop: &CancellationToken) {
        let delay = self.current.map_or(Duration::from_millis(50), |delay| {
            (delay * 2).min(Duration::from_secs(2))
        });
        self.current = Some(delay);
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(delay) => {}
        }
    }

    fn reset(&mut self) {
        self.current = None;
    }
}

struct Relay<'a> {
    connection: Connection,
    stream: &'a str,
    consumer: &'a str,
    postgres: &'a PgPool,
    config: &'a RelayConfig,
    stop: &'a CancellationToken,
}

impl Relay<'_> {
    async fn pump(mut self) -> redis::RedisResult<()> {
        let mut claim_cursor = "0-0".to_string();
        let mut last_claim = tokio::time::Instant::now();
        while !self.stop.is_cancelled() {
            let mut entries = Vec::new();
            if last_claim.elapsed() >= self.config.claim_idle / 2 {
                let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                    .arg(self.stream)
                    .arg(GROUP)
                    .arg(self.consumer)
                    .arg(self.config.claim_idle.as_millis() as u64)
                    .arg(&claim_cursor)
                    .arg("COUNT")
                    .arg(self.config.batch)
                    .query_async(&mut self.connection)
                    .await?;
                claim_cursor = reply.next_stream_id;
                if claim_cursor == "0-0" {
                    last_claim = tokio::time::Instant::now();
                }
                if !reply.claimed.is_empty() {
                    info!(
                        count = reply.claimed.len(),
                        "outbox relay reclaimed entries"
                    );
                }
                entries = reply.claimed;
            }
            if entries.is_empty() {
                let mut read = redis::cmd("XREADGROUP");
                read.arg("GROUP")
                    .arg(GROUP)
                    .arg(self.consumer)
                    .arg("COUNT")
                    .arg(self.config.batch)
                    .arg("BLOCK")
                    .arg(READ_BLOCK_MS)
                    .arg("STREAMS")
                    .arg(self.stream)
                    .arg(">");
                let reply: Option<StreamReadReply> = tokio::select! {
                    () = self.stop.cancelled() => return Ok(()),
                    reply = read.query_async(&mut self.connection) => reply?,
                };
                entries = reply
                    .into_iter()
                    .flat_map(|reply| reply.keys)
                    .flat_map(|key| key.ids)
                    .collect();
            }
            if entries.is_empty() {
                continue;
            }
            self.relay_batch(entries).await?;
        }
        Ok(())
    }

    async fn relay_batch(&mut self, entries: Vec<StreamId>) -> redis::RedisResult<()> {
        let mut events: Vec<HistoryEvent> = Vec::with_capacity(entries.len());
        let mut ids: Vec<String> = Vec::with_capacity(entries.len());
        for entry in entries {
            let fields = outbox::Fields::new(&entry.map, &entry.id);
            match outbox::decode(&self.config.label, &entry.id, &fields, &self.config.weights) {
                Ok(decoded) => events.extend(decoded),
                Err(reason) => {
                    error!(entry = %entry.id, %reason, "outbox entry cannot be decoded; dead-lettered");
                    self.bury(
                        &format!("{}/{}", self.config.label, entry.id),
                        &entry,
                        &reason.to_string(),
                        1,
                    )
                    .await;
                }
            }
            ids.push(entry.id);
        }
        if !events.is_empty() {
            self.write(&events).await;
        }
        if self.stop.is_cancelled() && !events.is_empty() {
            return Ok(());
        }
        let _: () = redis::cmd("XACK")
            .arg(self.stream)
            .arg(GROUP)
            .arg(&ids)
            .query_async(&mut self.connection)
            .await?;
        let _: () = redis::cmd("XDEL")
            .arg(self.stream)
            .arg(&ids)
            .query_async(&mut self.connection)
            .await?;
        metrics::counter!(crate::metrics::OUTBOX_RELAYED).increment(events.len() as u64);
        let backlog: u64 = redis::cmd("XLEN")
            .arg(self.stream)
            .query_async(&mut self.connection)
            .await?;
        metrics::gauge!(crate::metrics::OUTBOX_BACKLOG).set(backlog as f64);
        Ok(())
    }

    /// Applies the batch, retrying with backoff while Postgres is unreachable (or until the relay
    /// stops). A batch refused for another reason is applied one event at a time, and an event
    /// refused `poison_attempts` times is dead-lettered.
    async fn write(&self, events: &[HistoryEvent]) {
        let mut backoff = Backoff::default();
        while !self.stop.is_cancelled() {
            match self.apply(events).await {
                Ok(()) => return,
                Err(Failure::Transient(error)) => {
                    metrics::counter!(crate::metrics::OUTBOX_WRITE_FAILURES).increment(1);
                    warn!(%error, events = events.len(), "history batch not written; retrying");
                    backoff.wait(self.stop).await;
                }
                Err(Failure::Refused(error)) => {
                    metrics::counter!(crate::metrics::OUTBOX_WRITE_FAILURES).increment(1);
                    warn!(%error, events = events.len(), "history batch refused; applying its events one by one");
                    if self.write_one_by_one(events).await {
                        return;
                    }
                    backoff.wait(self.stop).await;
                }
            }
        }
    }

    /// Returns false when Postgres became unreachable meanwhile (the batch is retried whole).
    async fn write_one_by_one(&self, events: &[HistoryEvent]) -> bool {
        for event in events {
            let mut attempts = 0;
            loop {
                attempts += 1;
                match self.apply(std::slice::from_ref(event)).await {
                    Ok(()) => break,
                    Err(Failure::Transient(_)) => return false,
                    Err(Failure::Refused(reason)) if attempts >= self.config.poison_attempts => {
                        error!(event_id = %event.event_id, %reason, attempts, "history event refused for good; dead-lettered");
                        let fields = format!("{:?}", event.change);
                        if let Err(error) = dead_letter(
                            self.postgres,
                            &event.event_id,
                            &self.config.label,
                            &fields,
                            &reason,
                            attempts,
                        )
                        .await
                        {
                            warn!(%error, "dead letter not written; retrying the batch");
                            return false;
                        }
                        metrics::counter!(crate::metrics::OUTBOX_DEAD_LETTERS).increment(1);
                        break;
                    }
                    Err(Failure::Refused(_)) => {
                        tokio::time::sleep(Duration::from_millis(20 * u64::from(attempts))).await;
                    }
                }
            }
        }
        true
    }

    async fn apply(&self, events: &[HistoryEvent]) -> Result<(), Failure> {
        let mut client = self
            .postgres
            .get()
            .await
            .map_err(|error| Failure::Transient(error.to_string()))?;
        match apply_batch(&mut client, events).await {
            Ok(summary) => {
                debug!(?summary, "outbox batch written");
                Ok(())
            }
            Err(error) if error.is_transient() => Err(Failure::Transient(error.to_string())),
            Err(error) => Err(Failure::Refused(error.to_string())),
        }
    }

    /// An entry that cannot become a history event goes straight to the dead letters.
    async fn bury(&self, event_id: &str, entry: &StreamId, reason: &str, attempts: u32) {
        let fields = format!("{:?}", entry.map);
        if let Err(error) = dead_letter(
            self.postgres,
            event_id,
            &self.config.label,
            &fields,
            reason,
            attempts,
        )
        .await
        {
            warn!(%error, %event_id, "dead letter not written; the entry is dropped");
        }
        metrics::counter!(crate::metrics::OUTBOX_DEAD_LETTERS).increment(1);
    }
}

/// Why Postgres did not take events.
enum Failure {
    /// Unreachable, or a conflict: the same events may go through later.
    Transient(String),
    /// Refused: the same events fail the same way again.
    Refused(String),
}
