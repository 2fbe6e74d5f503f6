//! The directory: which type's slot holds a specialist or a subtask, one plain key per id
//! (keys.rs). Registration binds a specialist id to its type before the record is written, and
//! moves the binding (with the performance record) when a deregistered id registers as another
//! type; lookups by id read the binding, then run the script in that slot.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::domain::specialist::Registration;
use crate::store::{Registered, StoreError, StoreResult};

use super::scripts::Script;
use super::wire::{availability_str, SpecialistWire};
use super::RedisStore;

/// Registrations that found the id moved under them (a concurrent registration as another type)
/// before this one gives up with FAILED_PRECONDITION.
const REGISTER_ATTEMPTS: usize = 8;

/// A command with string arguments.
pub(super) fn command(parts: &[&str]) -> redis::Cmd {
    let mut command = redis::cmd(parts[0]);
    for part in &parts[1..] {
        command.arg(*part);
    }
    command
}

#[derive(Deserialize)]
struct UnbindReply {
    #[serde(default)]
    taken: bool,
    perf: Option<Value>,
}

#[derive(Deserialize)]
struct RegisterReply {
    specialist: Option<SpecialistWire>,
    #[serde(default)]
    created: bool,
    #[serde(default)]
    taken: bool,
    #[serde(default)]
    retry: bool,
}

impl RedisStore {
    /// The type a specialist id is bound to (its record and performance live in that slot).
    pub(super) async fn specialist_slot(&self, specialist_id: &str) -> StoreResult<String> {
        let directory = self.keys.specialist_directory(specialist_id);
        let bound: Option<String> = self.query(&command(&["GET", &directory])).await?;
        bound.ok_or_else(|| StoreError::specialist_not_found(specialist_id))
    }

    /// The type whose slot holds a subtask's record, from the directory.
    async fn subtask_slot(&self, subtask_id: &str) -> StoreResult<String> {
        let directory = self.keys.subtask_directory(subtask_id);
        let bound: Option<String> = self.query(&command(&["GET", &directory])).await?;
        bound.ok_or_else(|| StoreError::subtask_not_found(subtask_id))
    }

    /// Runs a script in the slot of a subtask's record: the remembered one (placements.rs), or
    /// the directory's. A remembered slot that does not have it (Redis lost its data, and the id
    /// came back as another type) is forgotten and the directory asked.
    pub(super) async fn call_for_subtask<T: DeserializeOwned>(
        &self,
        script: &Script,
        subtask_id: &str,
        args: Value,
    ) -> StoreResult<T> {
        if let Some(slot) = self.placements.get(subtask_id) {
            match self.call(script, &slot, args.clone()).await {
                Err(StoreError::NotFound {
                    kind: "subtask", ..
                }) => self.placements.forget(subtask_id),
                other => return other,
            }
        }
        let slot = self.subtask_slot(subtask_id).await?;
        let result = self.call(script, &slot, args).await;
        if result.is_ok() {
            self.placed(subtask_id, &slot);
        }
        result
    }

    /// Remembers where a subtask's record was found (see placements.rs).
    pub(super) fn placed(&self, subtask_id: &str, slot: &str) {
        self.placements.remember(subtask_id, slot);
    }

    pub(super) async fn register_bound(
        &self,
        registration: Registration,
    ) -> StoreResult<Registered> {
        let spec_type = registration.specialist_type.as_str();
        let labels = serde_json::to_string(&registration.labels)
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        let minted = registration.specialist_id.is_none();
        let mut attempts = 0;
        let mut force_rebind = false;
        while attempts < REGISTER_ATTEMPTS {
            let specialist_id = match &registration.specialist_id {
                Some(specialist_id) => specialist_id.clone(),
                None => self.mint(spec_type).await?,
            };
            let directory = self.keys.specialist_directory(&specialist_id);
            let bound: Option<String> = self
                .query(&command(&["SET", &directory, spec_type, "NX", "GET"]))
                .await?;
            let mut rebind = std::mem::take(&mut force_rebind);
            let mut perf = Value::Null;
            if let Some(other) = bound.filter(|bound| bound != spec_type) {
                let reply: UnbindReply = self
                    .call(
                        &self.scripts.unbind,
                        &other,
                        json!({
                            "specialist_id": specialist_id,
                            "to_type": spec_type,
                            "minted": minted,
                        }),
                    )
                    .await?;
                if reply.taken {
                    continue;
                }
                // An empty record replaces whatever this type kept from an earlier binding.
                perf = reply.perf.unwrap_or_else(|| json!({}));
                let _: () = self
                    .query(&command(&["SET", &directory, spec_type]))
                    .await?;
                rebind = true;
            }
            let reply: RegisterReply = self
                .call(
                    &self.scripts.register,
                    spec_type,
                    json!({
                        "specialist_id": specialist_id,
                        "capabilities": registration.capabilities,
                        "max_concurrency": registration.max_concurrency,
                        "labels": labels,
                        "availability": availability_str(registration.availability),
                        "minted": minted,
                        "rebind": rebind,
                        "perf": perf,
                    }),
                )
                .await?;
            if reply.taken {
                continue;
            }
            if reply.retry {
                // The id was moved to another type after the directory was read. If the directory
                // still names this type, that move never finished (its replica died between
                // unbind and rebinding): take the id back.
                attempts += 1;
                let now: Option<String> = self.query(&command(&["GET", &directory])).await?;
                force_rebind = now.as_deref() == Some(spec_type);
                continue;
            }
            let specialist = reply
                .specialist
                .ok_or_else(|| StoreError::Internal("register: no specialist in reply".into()))?;
            return Ok(Registered {
                specialist: specialist.into_domain()?,
                created: reply.created,
            });
        }
        Err(StoreError::FailedPrecondition(format!(
            "registration as {spec_type} kept meeting a concurrent registration of the same id \
             as another type; retry"
        )))
    }

    /// Points a directory entry at a type (the rebuild, which restores records without routing).
    pub(super) async fn bind(&self, directory: &str, slot: &str) -> StoreResult<()> {
        self.query(&command(&["SET", directory, slot])).await
    }

    /// The next id of the type's `specialist-<type>-<n>` sequence.
    async fn mint(&self, spec_type: &str) -> StoreResult<String> {
        let counter = self.keys.type_key(spec_type, "minted");
        let next: u64 = self.query(&command(&["INCR", &counter])).await?;
        Ok(format!("specialist-{spec_type}-{next}"))
    }
}
