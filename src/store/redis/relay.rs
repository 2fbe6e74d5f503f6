//! The outbox relay: moves the scripts' history events from a type's Redis `outbox` stream to
//! Postgres. Each type's slot has its own stream; every replica runs one relay per type, all of a
//! type's relays in one consumer group, so each entry goes to one relay. A batch is
//! applied idempotently (postgres/history.rs), then acknowledged and deleted, so the stream's length
//! is the backlog not yet in Postgres. While Postgres is down the batch is retried with backoff and
//! nothing is acknowledged; entries a dead relay had taken are claimed by another after
//! `claim_idle` (XAUTOCLAIM). An entry that cannot be decoded goes to `outbox:dead` with its reason.

use std::time::Duration;

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::Value;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::domain::history::HistoryEvent;
use crate::store::postgres::{apply_batch, PgPool};

use super::connections::{Connection, Endpoint};
use super::outbox;

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
}

impl RelayConfig {
    pub fn new(prefix: String, label: String) -> Self {
        Self {
            prefix,
            label,
            batch: 500,
            claim_idle: Duration::from_secs(30),
        }
    }
}

pub async fn run(
    endpoint: Endpoint,
    postgres: PgPool,
    config: RelayConfig,
    stop: CancellationToken,
) {
    let stream = format!("{}outbox", config.prefix);
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
                    .arg(500)
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
            let body = match entry.map.get("e") {
                Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
                _ => String::new(),
            };
            match outbox::decode(&self.config.label, &entry.id, &body) {
                Ok(event) => events.push(event),
                Err(reason) => {
                    error!(entry = %entry.id, %reason, "outbox entry cannot be decoded; dead-lettered");
                    let _: () = redis::cmd("XADD")
                        .arg(format!("{}:dead", self.stream))
                        .arg("*")
                        .arg("id")
                        .arg(&entry.id)
                        .arg("e")
                        .arg(&body)
                        .arg("reason")
                        .arg(reason.to_string())
                        .query_async(&mut self.connection)
                        .await?;
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

    /// Applies the batch, retrying with backoff until Postgres takes it (or the relay stops).
    async fn write(&self, events: &[HistoryEvent]) {
        let mut backoff = Backoff::default();
        while !self.stop.is_cancelled() {
            let result = match self.postgres.get().await {
                Ok(mut client) => apply_batch(&mut client, events)
                    .await
                    .map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match result {
                Ok(summary) => {
                    debug!(?summary, "outbox batch written");
                    return;
                }
                Err(error) => {
                    metrics::counter!(crate::metrics::OUTBOX_WRITE_FAILURES).increment(1);
                    warn!(%error, events = events.len(), "history batch not written; retrying");
                    backoff.wait(self.stop).await;
                }
            }
        }
    }
}
