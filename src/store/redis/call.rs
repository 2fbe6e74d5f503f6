//! Calling the library's functions: where a call runs (a type's slot, or, by id on one Redis, the
//! slot the id's directory entry names, found by the function itself), its arguments, the circuit
//! breaker and the command timeout around it, the library loaded again when Redis lost it, a
//! slot's policy set up on first use, and the reply's refusal code turned into a typed error.

use std::fmt::Display;
use std::time::Duration;

use redis::Value;

use tracing::{info, warn};

use crate::domain::rules::RefusalCode;
use crate::store::{Precondition, StoreError, StoreResult};

use super::directory::command;
use super::library::Function;
use super::replies::{self, int, items, text};
use super::RedisStore;

/// Where a function runs.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target<'a> {
    /// A type's slot.
    Slot(&'a str),
    /// A type's slot, with more keys after its meta (one Redis only: keys of other slots).
    SlotWith(&'a str, &'a [&'a str]),
    /// The slot holding a subtask's record.
    Subtask(&'a str),
    /// The slot holding a specialist's record.
    Specialist(&'a str),
}

/// A function's own arguments (ARGV[4..]), as bytes.
#[derive(Debug, Clone, Default)]
pub(super) struct Args(Vec<Vec<u8>>);

impl Args {
    pub fn new() -> Self {
        Self(Vec::with_capacity(12))
    }

    pub fn text(mut self, text: &str) -> Self {
        self.0.push(text.as_bytes().to_vec());
        self
    }

    pub fn bytes(mut self, bytes: Vec<u8>) -> Self {
        self.0.push(bytes);
        self
    }

    pub fn num(mut self, number: impl Display) -> Self {
        self.0.push(number.to_string().into_bytes());
        self
    }

    pub fn flag(self, on: bool) -> Self {
        self.text(if on { "1" } else { "0" })
    }

    /// Items joined by single spaces (ids and capabilities hold no whitespace).
    pub fn list<T: AsRef<str>>(self, items: &[T]) -> Self {
        let mut joined = String::new();
        for (index, item) in items.iter().enumerate() {
            if index > 0 {
                joined.push(' ');
            }
            joined.push_str(item.as_ref());
        }
        self.text(&joined)
    }
}

/// What a call is about, to name in a refusal.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct About<'a> {
    pub subtask: &'a str,
    pub specialist: &'a str,
    pub epoch: u64,
    /// The type a registration asked for.
    pub requested_type: &'a str,
}

/// A successful reply: the items after the code; `notices` when the call left dependency notices
/// for other slots (code -1).
pub(super) struct Reply {
    pub items: Vec<Value>,
    pub notices: bool,
}

impl Reply {
    pub fn get(&self, index: usize) -> StoreResult<&Value> {
        self.items
            .get(index)
            .ok_or_else(|| replies::malformed("short reply"))
    }

    pub fn text(&self, index: usize) -> StoreResult<String> {
        text(self.get(index)?)
    }

    pub fn int(&self, index: usize) -> StoreResult<i64> {
        int(self.get(index)?)
    }
}

/// Times a call is sent again after Redis lost the library or a slot's policy.
const SETUP_RETRIES: usize = 3;

impl RedisStore {
    /// Runs a function and maps its refusal (if any) with `about`. A call that left dependency
    /// notices delivers them before it returns (notices.rs).
    pub(super) async fn fcall(
        &self,
        function: Function,
        target: Target<'_>,
        args: &Args,
        about: About<'_>,
    ) -> StoreResult<Reply> {
        let reply = self.fcall_raw(function, target, args, about).await?;
        if reply.notices {
            match target {
                Target::Slot(slot) | Target::SlotWith(slot, _) => self.deliver_notices(slot).await,
                _ => self.deliver_all_notices().await,
            }
        }
        Ok(reply)
    }

    /// `fcall` without delivering notices.
    pub(super) async fn fcall_raw(
        &self,
        function: Function,
        target: Target<'_>,
        args: &Args,
        about: About<'_>,
    ) -> StoreResult<Reply> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (keys, namespace) = self.keys_for(target).await?;
            let mut invocation = redis::cmd("FCALL");
            invocation
                .arg(self.library.function(function))
                .arg(keys.len())
                .arg(&keys)
                .arg(&self.fingerprint)
                .arg(self.clock_arg())
                .arg(namespace);
            for arg in &args.0 {
                invocation.arg(arg.as_slice());
            }
            let value: Value = match self.roundtrip(&invocation).await {
                Err(StoreError::Internal(message))
                    if message.contains("Function not found") && attempts <= SETUP_RETRIES =>
                {
                    self.load_library().await?;
                    continue;
                }
                other => other?,
            };
            let all = match value {
                Value::Array(all) => all,
                _ => return Err(replies::malformed("expected an array")),
            };
            let code = all
                .first()
                .map(int)
                .transpose()?
                .ok_or_else(|| replies::malformed("empty reply"))?;
            if code <= 0 {
                return Ok(Reply {
                    notices: code < 0,
                    items: all.into_iter().skip(1).collect(),
                });
            }
            let detail = &all[1..];
            let refusal = RefusalCode::from_code(code)
                .ok_or_else(|| replies::malformed("unknown refusal code"))?;
            if refusal == RefusalCode::Policy {
                let found = detail.first().map(text).transpose()?.unwrap_or_default();
                let meta = detail.get(1).map(text).transpose()?.unwrap_or_default();
                if found.is_empty() && attempts <= SETUP_RETRIES {
                    // A slot never set up (a new type, or Redis lost its data): set it up now.
                    self.adopt_slot_meta(&meta, false).await?;
                    continue;
                }
                return Err(self.policy_conflict(&found));
            }
            return Err(refused(refusal, detail, about));
        }
    }

    /// KEYS and ARGV[3] (the namespace when the function finds the slot from a directory key).
    async fn keys_for(&self, target: Target<'_>) -> StoreResult<(Vec<String>, &str)> {
        match target {
            Target::Slot(slot) => Ok((vec![self.keys.type_meta(slot)], "")),
            Target::SlotWith(slot, extra) => {
                let mut keys = vec![self.keys.type_meta(slot)];
                keys.extend(extra.iter().map(|key| key.to_string()));
                Ok((keys, ""))
            }
            Target::Subtask(id) if self.single => {
                Ok((vec![self.keys.subtask_directory(id)], self.keys.namespace()))
            }
            Target::Specialist(id) if self.single => Ok((
                vec![self.keys.specialist_directory(id)],
                self.keys.namespace(),
            )),
            Target::Subtask(id) => {
                let slot = match self.placements.get(id) {
                    Some(slot) => slot,
                    None => self.subtask_slot(id).await?,
                };
                Ok((vec![self.keys.type_meta(&slot)], ""))
            }
            Target::Specialist(id) => {
                let slot = match self.specialist_placements.get(id) {
                    Some(slot) => slot,
                    None => self.specialist_slot(id).await?,
                };
                Ok((vec![self.keys.type_meta(&slot)], ""))
            }
        }
    }

    /// `fcall` in a slot with more keys after its meta.
    pub(super) async fn fcall_with_keys(
        &self,
        function: Function,
        slot: &str,
        extra: &[&str],
        args: &Args,
        about: About<'_>,
    ) -> StoreResult<Reply> {
        self.fcall(function, Target::SlotWith(slot, extra), args, about)
            .await
    }

    /// On a cluster, a remembered slot that no longer has the record is forgotten and the call
    /// made again through the directory (the id was retired, or registered as another type).
    pub(super) async fn fcall_by_id(
        &self,
        function: Function,
        target: Target<'_>,
        args: &Args,
        about: About<'_>,
    ) -> StoreResult<Reply> {
        let result = self.fcall(function, target, args, about).await;
        if self.single {
            return result;
        }
        match (target, &result) {
            (
                Target::Subtask(id),
                Err(StoreError::NotFound {
                    kind: "subtask", ..
                }),
            ) if self.placements.get(id).is_some() => {
                self.placements.forget(id);
                self.fcall(function, target, args, about).await
            }
            (
                Target::Specialist(id),
                Err(StoreError::NotFound {
                    kind: "specialist", ..
                }),
            ) if self.specialist_placements.get(id).is_some() => {
                self.specialist_placements.forget(id);
                self.fcall(function, target, args, about).await
            }
            _ => result,
        }
    }

    fn clock_arg(&self) -> String {
        self.clock
            .as_ref()
            .map_or_else(String::new, |clock| clock.now_ms().to_string())
    }

    /// FUNCTION LOAD (on every primary of a cluster); a library of that name loaded already is
    /// the same code (the name carries its hash).
    pub(super) async fn load_library(&self) -> StoreResult<()> {
        let mut load = redis::cmd("FUNCTION");
        load.arg("LOAD").arg(&self.library.source);
        match self.roundtrip::<Value>(&load).await {
            Ok(_) => Ok(()),
            Err(StoreError::Internal(message)) if message.contains("already exists") => Ok(()),
            Err(error) => {
                warn!(%error, "loading the lua library failed");
                Err(error)
            }
        }
    }

    /// One plain command (the directory, a single-key read), guarded like the functions.
    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> StoreResult<T> {
        self.roundtrip(command).await
    }

    /// Whether Redis answers a PING within the command timeout (at most a second), past the
    /// breaker; an answer closes the breaker, so calls succeed again as soon as Redis is back
    /// instead of when the breaker's open time ends.
    pub async fn probe(&self) -> bool {
        let ping = async {
            let mut lease = self.connections.get().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut lease.connection)
                .await
                .map_err(|error| error.to_string())
        };
        let limit = self.command_timeout.min(Duration::from_secs(1));
        match tokio::time::timeout(limit, ping).await {
            Ok(Ok(_)) => {
                if self.breaker.is_open() {
                    info!("redis answers again: circuit breaker closed");
                }
                self.breaker.record_success();
                true
            }
            _ => {
                self.connections.reset().await;
                self.note_outage();
                false
            }
        }
    }

    /// Sends a command on a connection under the circuit breaker and the command timeout.
    pub(super) async fn roundtrip<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> StoreResult<T> {
        if let Err(open) = self.breaker.check() {
            self.note_outage();
            return Err(StoreError::Unavailable(open));
        }
        let invocation = async {
            let mut lease = match self.connections.get().await {
                Ok(lease) => lease,
                Err(message) => {
                    // Redis is unreachable: the other connections are dead too.
                    self.connections.reset().await;
                    return Err(message);
                }
            };
            let result: redis::RedisResult<T> = command.query_async(&mut lease.connection).await;
            // A function's own failure (or a refused command) comes back as ERR; anything else
            // (connection, LOADING, READONLY, BUSY, MASTERDOWN, ...) means Redis cannot serve now.
            match result {
                Ok(reply) => Ok(reply),
                Err(error) if error.code() == Some("ERR") => Err(format!("script: {error}")),
                Err(error) => {
                    self.connections.reset().await;
                    Err(error.to_string())
                }
            }
        };
        match tokio::time::timeout(self.command_timeout, invocation).await {
            Ok(Ok(reply)) => {
                self.breaker.record_success();
                Ok(reply)
            }
            Ok(Err(message)) if message.starts_with("script: ") => {
                self.breaker.record_success();
                if !message.contains("Function not found") && !message.contains("already exists") {
                    warn!(%message, "redis function failed");
                }
                Err(StoreError::Internal(message))
            }
            Ok(Err(message)) => {
                self.breaker.record_failure();
                self.note_outage();
                Err(StoreError::Unavailable(format!(
                    "redis unavailable: {message}"
                )))
            }
            Err(_) => {
                self.breaker.record_failure();
                self.note_outage();
                self.connections.reset().await;
                Err(StoreError::Unavailable(format!(
                    "redis unavailable: no reply within {} ms",
                    self.command_timeout.as_millis()
                )))
            }
        }
    }

    /// Reads a directory entry (the type an id is bound to).
    pub(super) async fn directory(&self, key: &str) -> StoreResult<Option<String>> {
        self.query(&command(&["GET", key])).await
    }
}

/// The one mapping of refusal codes (domain::rules::RefusalCode, the Lua's E table) to errors.
pub(super) fn refused(refusal: RefusalCode, detail: &[Value], about: About<'_>) -> StoreError {
    let detail_text = |index: usize| detail.get(index).map(text).transpose();
    let detail_state = |index: usize| -> StoreResult<crate::domain::subtask::SubtaskState> {
        replies::state(&detail_text(index)?.unwrap_or_default())
    };
    let built: StoreResult<StoreError> = (|| {
        Ok(match refusal {
            RefusalCode::SpecialistNotFound => StoreError::specialist_not_found(about.specialist),
            RefusalCode::SubtaskNotFound => StoreError::subtask_not_found(about.subtask),
            RefusalCode::NotAssigned => Precondition::NotAssigned {
                subtask_id: about.subtask.to_string(),
                state: detail_state(0)?,
            }
            .into(),
            RefusalCode::WrongHolder => Precondition::WrongHolder {
                subtask_id: about.subtask.to_string(),
                specialist_id: about.specialist.to_string(),
            }
            .into(),
            RefusalCode::StaleEpoch => Precondition::StaleEpoch {
                subtask_id: about.subtask.to_string(),
                epoch: about.epoch,
                current: detail.first().map(int).transpose()?.unwrap_or_default() as u64,
            }
            .into(),
            RefusalCode::NotQueued => Precondition::NotQueued {
                subtask_id: about.subtask.to_string(),
                state: detail_state(0)?,
            }
            .into(),
            RefusalCode::CannotCancel => Precondition::CannotCancel {
                subtask_id: about.subtask.to_string(),
                state: detail_state(0)?,
            }
            .into(),
            RefusalCode::AlreadyExists => StoreError::already_exists(about.subtask),
            RefusalCode::UnknownDependency => Precondition::UnknownDependency {
                dependency_id: detail_text(0)?.unwrap_or_default(),
            }
            .into(),
            RefusalCode::BacklogFull => StoreError::ResourceExhausted(format!(
                "history backlog full ({} events not yet written to Postgres); retry later",
                detail_text(0)?.unwrap_or_default()
            )),
            RefusalCode::TypeMismatch => Precondition::TypeMismatch {
                specialist_id: about.specialist.to_string(),
                registered: detail_text(0)?.unwrap_or_default(),
                requested: about.requested_type.to_string(),
            }
            .into(),
            RefusalCode::BadPageToken => {
                StoreError::invalid("page_token", "not a token this server issued")
            }
            RefusalCode::Policy => StoreError::Unavailable("redis runs other rules".into()),
            RefusalCode::SpecialistLive => StoreError::SpecialistLive {
                specialist_id: about.specialist.to_string(),
                lease_left_ms: detail.first().map(int).transpose()?.unwrap_or_default(),
            },
            RefusalCode::IncarnationEnded => Precondition::IncarnationEnded {
                specialist_id: about.specialist.to_string(),
                incarnation: detail_text(0)?.unwrap_or_default(),
            }
            .into(),
        })
    })();
    built.unwrap_or_else(|error| error)
}

/// The items of a nested array reply.
pub(super) fn nested(value: &Value) -> StoreResult<&[Value]> {
    items(value)
}
