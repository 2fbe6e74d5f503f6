//! The directory: which type's slot holds a specialist or a subtask, one plain key per id
//! (keys.rs). Registration binds a specialist id to its type before the record is written, and
//! moves the binding (with the performance record) when a deregistered id registers as another
//! type. On one Redis a call by id reads the binding inside its function; on a cluster the store
//! reads it (and remembers it, placements.rs), then calls the function in that slot.

use crate::domain::specialist::{Incarnation, Registration};
use crate::store::{Precondition, Registered, StoreError, StoreResult};

use super::call::{About, Args, Target};
use super::library::Function;
use super::replies;
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

impl RedisStore {
    /// The type a specialist id is bound to (its record and performance live in that slot).
    pub(super) async fn specialist_slot(&self, specialist_id: &str) -> StoreResult<String> {
        let bound = self
            .directory(&self.keys.specialist_directory(specialist_id))
            .await?
            .ok_or_else(|| StoreError::specialist_not_found(specialist_id))?;
        self.specialist_placements.remember(specialist_id, &bound);
        Ok(bound)
    }

    /// The type whose slot holds a subtask's record, from the directory.
    pub(super) async fn subtask_slot(&self, subtask_id: &str) -> StoreResult<String> {
        let bound = self
            .directory(&self.keys.subtask_directory(subtask_id))
            .await?
            .ok_or_else(|| StoreError::subtask_not_found(subtask_id))?;
        self.placements.remember(subtask_id, &bound);
        Ok(bound)
    }

    pub(super) async fn register_bound(
        &self,
        registration: Registration,
    ) -> StoreResult<Registered> {
        let spec_type = registration.specialist_type.as_str();
        let labels = replies::labels_text(&registration.labels);
        let minted = registration.specialist_id.is_none();
        let (incarnation, mode) = match &registration.incarnation {
            Incarnation::Keep(incarnation) => (incarnation.as_str(), "keep"),
            Incarnation::Start {
                incarnation,
                take_over,
            } => (
                incarnation.as_str(),
                if *take_over { "take" } else { "start" },
            ),
        };
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
            let mut carried = String::new();
            if let Some(other) = bound.filter(|bound| bound != spec_type) {
                let about = About {
                    specialist: &specialist_id,
                    requested_type: spec_type,
                    ..About::default()
                };
                let reply = self
                    .fcall(
                        Function::Unbind,
                        Target::Slot(&other),
                        &Args::new()
                            .text(&specialist_id)
                            .text(spec_type)
                            .flag(minted),
                        about,
                    )
                    .await?;
                if reply.text(0)? == "taken" {
                    continue;
                }
                // An empty record replaces whatever this type kept from an earlier binding.
                carried = reply.text(1)?;
                if carried.is_empty() {
                    carried = "!".into();
                }
                let _: () = self
                    .query(&command(&["SET", &directory, spec_type]))
                    .await?;
                rebind = true;
            }
            let args = Args::new()
                .text(&specialist_id)
                .list(&registration.capabilities)
                .text(
                    &registration
                        .max_concurrency
                        .map_or_else(String::new, |max| max.to_string()),
                )
                .text(&labels)
                .text(registration.availability.as_str())
                .flag(minted)
                .flag(rebind)
                .text(&carried)
                .text(incarnation)
                .text(mode);
            let about = About {
                specialist: &specialist_id,
                requested_type: spec_type,
                ..About::default()
            };
            let reply = self
                .fcall(Function::Register, Target::Slot(spec_type), &args, about)
                .await?;
            match reply.text(0)?.as_str() {
                "taken" => continue,
                "retry" => {
                    // The id was moved to another type after the directory was read. If the
                    // directory still names this type, that move never finished (its replica
                    // died between unbind and rebinding): take the id back.
                    attempts += 1;
                    let now = self.directory(&directory).await?;
                    force_rebind = now.as_deref() == Some(spec_type);
                    continue;
                }
                "ok" => {}
                _ => return Err(replies::malformed("register")),
            }
            if !self.single {
                self.specialist_placements
                    .remember(&specialist_id, spec_type);
            }
            return Ok(Registered {
                specialist: replies::specialist(reply.get(1)?)?,
                created: reply.int(2)? == 1,
                incarnation: reply.text(3)?,
            });
        }
        Err(Precondition::Contended(format!(
            "registration as {spec_type} kept meeting a concurrent registration of the same id \
             as another type; retry"
        ))
        .into())
    }

    /// Points a directory entry at a type (the rebuild, which restores records without routing).
    pub(super) async fn bind(&self, directory: &str, slot: &str) -> StoreResult<()> {
        self.query(&command(&["SET", directory, slot])).await
    }

    /// The next id of the type's `specialist-<type>-<n>` sequence.
    async fn mint(&self, spec_type: &str) -> StoreResult<String> {
        let counter = self.keys.type_key(spec_type, super::keys::slot::MINTED);
        let next: u64 = self.query(&command(&["INCR", &counter])).await?;
        Ok(format!("specialist-{spec_type}-{next}"))
    }
}
