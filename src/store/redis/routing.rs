//! A new subtask, and what crosses slots on its way. On one Redis, `assign` claims the id in the
//! directory itself and reads dependencies in any slot, so the usual Assign is one round trip.
//! On a cluster the store claims the id first (SET NX GET) and reads dependencies through the
//! directory. When nobody of the requested type could ever serve the subtask, the fallback type's
//! slot is asked (`capable`) and the subtask forwarded there: the requested slot keeps a forward
//! mark, the directory is pointed at the fallback, and `assign` runs there. A claim left by a
//! failed submission of another type is taken over (`void` there). Each step is idempotent, so a
//! retry after a failure between steps finishes the hand-off instead of duplicating the subtask.

use std::fmt::Write as _;

use crate::domain::learned::{CandidateInfo, LearnedFactors};
use crate::domain::policy::ScoringWeights;
use crate::domain::subtask::{AssignmentView, SubtaskSpec};
use crate::store::{Precondition, StoreError, StoreResult};

use super::call::{About, Args, Reply, Target};
use super::codec::encode_spec;
use super::directory::command;
use super::library::Function;
use super::replies::{items, text};
use super::RedisStore;

/// Steps of one routing: take over a stale claim, ask the fallback, forward, place.
const ROUTING_STEPS: usize = 5;

/// Times an Assign starts over after its claim on the id moved under it.
const CLAIM_ATTEMPTS: usize = 4;

/// Learned factors as a subtask keeps them: the four weights to score with (already scaled, so
/// both stores use the very same numbers), then specialist id and factor pairs.
pub(super) fn learned_text(factors: &LearnedFactors, base: &ScoringWeights) -> String {
    let weights = factors.weights(base);
    let mut text = format!(
        "{} {} {} {}",
        weights.capability, weights.load, weights.availability, weights.performance
    );
    let mut pairs: Vec<(&String, &f64)> = factors.performance.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    for (specialist_id, factor) in pairs {
        let _ = write!(text, " {specialist_id} {factor}");
    }
    text
}

/// How the id's claim stands when `assign` runs (ARGV[11]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// `assign` makes it (one Redis).
    Make,
    /// The store's SET NX found the id free.
    Fresh,
    /// The directory names the requested type already.
    Held,
    /// The claim was just moved to this slot.
    TakenOver,
    /// The directory names another type.
    Elsewhere,
}

impl Claim {
    fn code(self) -> &'static str {
        match self {
            Claim::Make => "k",
            Claim::Fresh => "n",
            Claim::Held => "h",
            Claim::TakenOver => "t",
            Claim::Elsewhere => "o",
        }
    }
}

impl RedisStore {
    /// `learned`: the text of the learned factors the subtask keeps (see `learned_text`).
    /// `acknowledged`: the subtask was accepted into Postgres while Redis was away, so an unknown
    /// dependency fails it instead of refusing it.
    pub(super) async fn assign_in_redis(
        &self,
        spec: &SubtaskSpec,
        learned: Option<&str>,
        acknowledged: bool,
    ) -> StoreResult<AssignmentView> {
        let blob = encode_spec(spec);
        for _ in 0..CLAIM_ATTEMPTS {
            if let Some(view) = self.try_assign(spec, &blob, learned, acknowledged).await? {
                return Ok(view);
            }
        }
        Err(Precondition::Contended(format!(
            "subtask {} kept meeting a concurrent submission of the same id as another type; retry",
            spec.subtask_id
        ))
        .into())
    }

    /// One pass; None when the claim on the id moved under it (start over).
    async fn try_assign(
        &self,
        spec: &SubtaskSpec,
        blob: &[u8],
        learned: Option<&str>,
        acknowledged: bool,
    ) -> StoreResult<Option<AssignmentView>> {
        let requested = spec.specialist_type.as_str();
        let directory = self.keys.subtask_directory(&spec.subtask_id);
        let mut claim = Claim::Make;
        let mut claimed_by: Option<String> = None;
        if !self.single {
            let bound: Option<String> = self
                .query(&command(&["SET", &directory, requested, "NX", "GET"]))
                .await?;
            claim = match bound {
                None => Claim::Fresh,
                Some(bound) if bound == requested => Claim::Held,
                Some(other) => {
                    claimed_by = Some(other);
                    Claim::Elsewhere
                }
            };
        }
        let mut unclaimed_by: Option<String> = None;
        let mut slot = requested.to_string();
        let mut routed = false;
        let mut fallback_capable = "";
        let mut forwarded_by = String::new();
        let mut voided_in = String::new();
        for _ in 0..ROUTING_STEPS {
            if let Some(holder) = unclaimed_by.take() {
                // Another type holds the claim; unless the subtask is there, take the claim over.
                let exists = self
                    .fcall(
                        Function::Void,
                        Target::Slot(&holder),
                        &Args::new().text(&spec.subtask_id),
                        About::default(),
                    )
                    .await?
                    .int(0)?
                    == 1;
                if exists {
                    return Err(StoreError::already_exists(&spec.subtask_id));
                }
                let _: () = self
                    .query(&command(&["SET", &directory, requested]))
                    .await?;
                claim = Claim::TakenOver;
                voided_in = holder;
            }
            let dependencies = if claim == Claim::Make {
                spec.depends_on.join(" ")
            } else {
                self.dependencies(&spec.depends_on).await?
            };
            let args = Args::new()
                .text(&spec.subtask_id)
                .bytes(blob.to_vec())
                .list(&spec.required_capabilities)
                .flag(spec.require_all_capabilities)
                .num(spec.priority)
                .text(&dependencies)
                .text(learned.unwrap_or_default())
                .text(claim.code())
                .flag(routed)
                .text(fallback_capable)
                .text(&forwarded_by)
                .text(&voided_in)
                .flag(acknowledged);
            let reply = self
                .call_assign(&slot, &directory, claim, &args, spec)
                .await?;
            let tag = reply.text(0)?;
            match tag.as_str() {
                "view" => {
                    let view = self.view(reply.get(1)?)?;
                    if !self.single {
                        self.placements.remember(&spec.subtask_id, &slot);
                    }
                    let waits = items(reply.get(2)?)?
                        .chunks(2)
                        .map(|pair| Ok((text(&pair[0])?, text(&pair[1])?)))
                        .collect::<StoreResult<Vec<(String, String)>>>()?;
                    return self
                        .wait_on_other_slots(&spec.subtask_id, &slot, view, waits)
                        .await
                        .map(Some);
                }
                "retry" => return Ok(None),
                "unclaimed" => {
                    let named = reply.text(1)?;
                    unclaimed_by = Some(if named.is_empty() {
                        claimed_by.take().unwrap_or_default()
                    } else {
                        named
                    });
                }
                "ask" => {
                    fallback_capable = if self.capable(&reply.text(1)?, spec).await? {
                        "1"
                    } else {
                        "0"
                    };
                }
                "forward" => {
                    let target = reply.text(1)?;
                    let _: () = self.query(&command(&["SET", &directory, &target])).await?;
                    forwarded_by = requested.to_string();
                    slot = target;
                    routed = true;
                    // The directory names the fallback now, by this call: a void mark there is
                    // stale.
                    claim = Claim::TakenOver;
                }
                _ => return Err(super::replies::malformed("assign")),
            }
        }
        Err(StoreError::Internal(format!(
            "assign of {}: routing did not settle",
            spec.subtask_id
        )))
    }

    async fn call_assign(
        &self,
        slot: &str,
        directory: &str,
        claim: Claim,
        args: &Args,
        spec: &SubtaskSpec,
    ) -> StoreResult<Reply> {
        let about = About {
            subtask: &spec.subtask_id,
            ..About::default()
        };
        if claim == Claim::Make {
            return self
                .fcall_with_keys(Function::Assign, slot, &[directory], args, about)
                .await;
        }
        self.fcall(Function::Assign, Target::Slot(slot), args, about)
            .await
    }

    /// Registers a BLOCKED subtask with its dependencies in other slots; one that finished since
    /// it was read settles now. Returns the subtask's view after that.
    async fn wait_on_other_slots(
        &self,
        subtask_id: &str,
        slot: &str,
        mut view: AssignmentView,
        waits: Vec<(String, String)>,
    ) -> StoreResult<AssignmentView> {
        for (dependency, dependency_type) in waits {
            let about = About {
                subtask: &dependency,
                ..About::default()
            };
            let reply = self
                .fcall(
                    Function::Depend,
                    Target::Slot(&dependency_type),
                    &Args::new().text(&dependency).text(subtask_id).text(slot),
                    about,
                )
                .await?;
            let state = reply.text(0)?;
            if state.is_empty() {
                continue;
            }
            let settled = self
                .fcall(
                    Function::Settle,
                    Target::Slot(slot),
                    &Args::new().text(subtask_id).text(&dependency).text(&state),
                    About::default(),
                )
                .await?;
            if !matches!(settled.get(0)?, redis::Value::BulkString(bytes) if bytes.is_empty()) {
                view = self.view(settled.get(0)?)?;
            }
        }
        Ok(view)
    }

    /// Each dependency as "<id> <type> <state>": the slot the directory names and the state read
    /// there ('-' when unknown; assign reports unknown ones after its own checks).
    async fn dependencies(&self, depends_on: &[String]) -> StoreResult<String> {
        let mut found = String::new();
        for dependency in depends_on {
            let slot = self
                .directory(&self.keys.subtask_directory(dependency))
                .await?;
            let state: Option<String> = match &slot {
                Some(slot) => {
                    let record = self.keys.subtask_record(slot, dependency);
                    let packed: Option<String> =
                        self.query(&command(&["HGET", &record, "v"])).await?;
                    // The state is the packed state's first field (lua/includes/subtasks.lua).
                    packed.map(|packed| packed.split('\t').next().unwrap_or_default().to_string())
                }
                None => None,
            };
            if !found.is_empty() {
                found.push(' ');
            }
            let _ = write!(
                found,
                "{dependency} {} {}",
                slot.as_deref().unwrap_or("-"),
                state.as_deref().unwrap_or("-")
            );
        }
        Ok(found)
    }

    async fn capable(&self, slot: &str, spec: &SubtaskSpec) -> StoreResult<bool> {
        let reply = self
            .fcall(
                Function::Capable,
                Target::Slot(slot),
                &Args::new()
                    .list(&spec.required_capabilities)
                    .flag(spec.require_all_capabilities),
                About::default(),
            )
            .await?;
        Ok(reply.int(0)? == 1)
    }

    /// Who could take the subtask now; none when it exists or waits on an unfinished dependency.
    pub(super) async fn candidates_in_redis(
        &self,
        spec: &SubtaskSpec,
    ) -> StoreResult<Vec<CandidateInfo>> {
        let directory = self.keys.subtask_directory(&spec.subtask_id);
        if let Some(slot) = self.directory(&directory).await? {
            let record = self.keys.subtask_record(&slot, &spec.subtask_id);
            let exists: bool = self.query(&command(&["EXISTS", &record])).await?;
            if exists {
                return Ok(Vec::new());
            }
        }
        let dependencies = self.dependencies(&spec.depends_on).await?;
        let states: Vec<&str> = dependencies.split(' ').collect();
        if states
            .chunks(3)
            .any(|triple| triple.get(2) != Some(&"COMPLETED"))
            && !spec.depends_on.is_empty()
        {
            return Ok(Vec::new());
        }
        let mut slot = spec.specialist_type.clone();
        let mut routed = false;
        let mut fallback_capable = "";
        for _ in 0..ROUTING_STEPS {
            let reply = self
                .fcall(
                    Function::Candidates,
                    Target::Slot(&slot),
                    &Args::new()
                        .list(&spec.required_capabilities)
                        .flag(spec.require_all_capabilities)
                        .flag(routed)
                        .text(fallback_capable),
                    About::default(),
                )
                .await?;
            match reply.text(0)?.as_str() {
                "ask" => {
                    fallback_capable = if self.capable(&reply.text(1)?, spec).await? {
                        "1"
                    } else {
                        "0"
                    };
                }
                "forward" => {
                    slot = reply.text(1)?;
                    routed = true;
                }
                "candidates" => {
                    return items(reply.get(1)?)?
                        .iter()
                        .map(|candidate| super::replies::candidate(candidate, &slot))
                        .collect();
                }
                _ => return Err(super::replies::malformed("candidates")),
            }
        }
        Err(StoreError::Internal(format!(
            "candidates for {}: routing did not settle",
            spec.subtask_id
        )))
    }
}
