//! A new subtask across slots. Assign runs in the requested type's slot; when nobody of that
//! type could ever serve it, the fallback type's slot is asked whether someone there could
//! (capable.lua), and the subtask is forwarded there: the requested slot keeps a forward mark, the
//! directory is pointed at the fallback, and assign runs there. Each step is idempotent, so a
//! retry after a failure between steps finishes the hand-off instead of duplicating the subtask.
//! Dependencies in other slots are read before and registered with after (depend.lua); one that
//! finished in between is settled at once.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::domain::learned::CandidateInfo;
use crate::domain::subtask::{AssignmentView, SubtaskSpec};
use crate::store::{StoreError, StoreResult};

use super::directory::command;
use super::wire::{self, lenient_list, spec_json, ViewWire};
use super::RedisStore;

/// Steps of one routing: take over a stale claim, ask the fallback, forward, place.
const ROUTING_STEPS: usize = 5;

/// Times an Assign starts over after its claim on the id moved under it.
const CLAIM_ATTEMPTS: usize = 4;

#[derive(Deserialize)]
struct AssignReply {
    view: Option<ViewWire>,
    #[serde(default, deserialize_with = "lenient_list")]
    remote_waits: Vec<(String, String)>,
    ask_fallback: Option<String>,
    forward: Option<String>,
    #[serde(default)]
    unclaimed: bool,
    #[serde(default)]
    retry: bool,
}

#[derive(Deserialize)]
struct VoidReply {
    exists: bool,
}

#[derive(Deserialize)]
struct CandidatesReply {
    #[serde(default, deserialize_with = "lenient_list")]
    candidates: Vec<wire::CandidateWire>,
    ask_fallback: Option<String>,
    forward: Option<String>,
}

#[derive(Deserialize)]
struct CapableReply {
    capable: bool,
}

#[derive(Deserialize)]
struct DependReply {
    state: Option<String>,
}

#[derive(Deserialize)]
struct SettleReply {
    view: Option<ViewWire>,
}

impl RedisStore {
    /// `learned`: the JSON text of the learned factors the subtask keeps (see lua/assign.lua).
    pub(super) async fn assign_in_redis(
        &self,
        spec: &SubtaskSpec,
        learned: Option<&str>,
    ) -> StoreResult<AssignmentView> {
        for _ in 0..CLAIM_ATTEMPTS {
            if let Some(view) = self.try_assign(spec, learned).await? {
                return Ok(view);
            }
        }
        Err(StoreError::FailedPrecondition(format!(
            "subtask {} kept meeting a concurrent submission of the same id as another type; retry",
            spec.subtask_id
        )))
    }

    /// One pass; None when the claim on the id moved under it (start over).
    async fn try_assign(
        &self,
        spec: &SubtaskSpec,
        learned: Option<&str>,
    ) -> StoreResult<Option<AssignmentView>> {
        let requested = spec.specialist_type.as_str();
        let directory = self.keys.subtask_directory(&spec.subtask_id);
        let bound: Option<String> = self
            .query(&command(&["SET", &directory, requested, "NX", "GET"]))
            .await?;
        let mut claimed = bound.as_deref().is_none_or(|bound| bound == requested);
        let mut takeover = false;
        let depends_on = self.dependencies(&spec.depends_on).await?;
        let spec_text = spec_json(spec);
        let mut slot = requested.to_string();
        let mut routed = false;
        let mut fallback_capable = Value::Null;
        for _ in 0..ROUTING_STEPS {
            let reply: AssignReply = self
                .call(
                    &self.scripts.assign,
                    &slot,
                    json!({
                        "subtask_id": spec.subtask_id,
                        "required_capabilities": spec.required_capabilities,
                        "priority": spec.priority,
                        "require_all_capabilities": spec.require_all_capabilities,
                        "depends_on": depends_on,
                        "spec": spec_text,
                        "learned": learned.unwrap_or_default(),
                        "claimed": claimed,
                        "takeover": takeover,
                        "routed": routed,
                        "fallback_capable": fallback_capable,
                    }),
                )
                .await?;
            if reply.retry {
                return Ok(None);
            }
            if reply.unclaimed {
                // Another type holds the claim; unless the subtask is there, take the claim over.
                let holder = bound.as_deref().unwrap_or(requested);
                let void: VoidReply = self
                    .call(
                        &self.scripts.void,
                        holder,
                        json!({ "subtask_id": spec.subtask_id, "to_type": requested }),
                    )
                    .await?;
                if void.exists {
                    return Err(StoreError::AlreadyExists(format!(
                        "subtask {} exists with different content",
                        spec.subtask_id
                    )));
                }
                let _: () = self
                    .query(&command(&["SET", &directory, requested]))
                    .await?;
                claimed = true;
                takeover = true;
                continue;
            }
            takeover = false;
            if let Some(fallback) = reply.ask_fallback {
                fallback_capable = Value::Bool(self.capable(&fallback, spec).await?);
                continue;
            }
            if let Some(target) = reply.forward {
                let _: () = self.query(&command(&["SET", &directory, &target])).await?;
                slot = target;
                routed = true;
                claimed = true;
                // The directory names the fallback now, by this call: a void mark there is stale.
                takeover = true;
                continue;
            }
            let view = reply
                .view
                .ok_or_else(|| StoreError::Internal("assign: no view in reply".into()))?;
            self.placed(&spec.subtask_id, &slot);
            return self
                .wait_on_other_slots(&spec.subtask_id, &slot, view, reply.remote_waits)
                .await
                .map(Some);
        }
        Err(StoreError::Internal(format!(
            "assign of {}: routing did not settle",
            spec.subtask_id
        )))
    }

    /// Registers a BLOCKED subtask with its dependencies in other slots; one that finished since
    /// it was read settles now. Returns the subtask's view after that.
    async fn wait_on_other_slots(
        &self,
        subtask_id: &str,
        slot: &str,
        mut view: ViewWire,
        waits: Vec<(String, String)>,
    ) -> StoreResult<AssignmentView> {
        for (dependency, dependency_type) in waits {
            let reply: DependReply = self
                .call(
                    &self.scripts.depend,
                    &dependency_type,
                    json!({
                        "dependency": dependency,
                        "dependent": subtask_id,
                        "dependent_type": slot,
                    }),
                )
                .await?;
            if let Some(state) = reply.state {
                let settled: SettleReply = self
                    .call(
                        &self.scripts.settle,
                        slot,
                        json!({
                            "dependent": subtask_id,
                            "dependency": dependency,
                            "state": state,
                        }),
                    )
                    .await?;
                if let Some(settled) = settled.view {
                    view = settled;
                }
            }
        }
        view.into_domain()
    }

    /// Each dependency as `{id, type, state}`: the slot the directory names and the state read
    /// there (null when unknown; assign.lua reports unknown ones after its own checks).
    async fn dependencies(&self, depends_on: &[String]) -> StoreResult<Vec<Value>> {
        let mut found = Vec::with_capacity(depends_on.len());
        for dependency in depends_on {
            let directory = self.keys.subtask_directory(dependency);
            let slot: Option<String> = self.query(&command(&["GET", &directory])).await?;
            let state: Option<String> = match &slot {
                Some(slot) => {
                    let record = self.keys.subtask_record(slot, dependency);
                    self.query(&command(&["HGET", &record, "state"])).await?
                }
                None => None,
            };
            found.push(json!({ "id": dependency, "type": slot, "state": state }));
        }
        Ok(found)
    }

    async fn capable(&self, slot: &str, spec: &SubtaskSpec) -> StoreResult<bool> {
        let reply: CapableReply = self
            .call(
                &self.scripts.capable,
                slot,
                json!({
                    "required_capabilities": spec.required_capabilities,
                    "require_all_capabilities": spec.require_all_capabilities,
                }),
            )
            .await?;
        Ok(reply.capable)
    }

    /// Who could take the subtask now; none when it exists or waits on an unfinished dependency.
    pub(super) async fn candidates_in_redis(
        &self,
        spec: &SubtaskSpec,
    ) -> StoreResult<Vec<CandidateInfo>> {
        let directory = self.keys.subtask_directory(&spec.subtask_id);
        let bound: Option<String> = self.query(&command(&["GET", &directory])).await?;
        if let Some(slot) = bound {
            let record = self.keys.subtask_record(&slot, &spec.subtask_id);
            let exists: bool = self.query(&command(&["EXISTS", &record])).await?;
            if exists {
                return Ok(Vec::new());
            }
        }
        for dependency in self.dependencies(&spec.depends_on).await? {
            if dependency.get("state").and_then(Value::as_str) != Some("COMPLETED") {
                return Ok(Vec::new());
            }
        }
        let mut slot = spec.specialist_type.clone();
        let mut routed = false;
        let mut fallback_capable = Value::Null;
        for _ in 0..ROUTING_STEPS {
            let reply: CandidatesReply = self
                .call(
                    &self.scripts.candidates,
                    &slot,
                    json!({
                        "required_capabilities": spec.required_capabilities,
                        "require_all_capabilities": spec.require_all_capabilities,
                        "routed": routed,
                        "fallback_capable": fallback_capable,
                    }),
                )
                .await?;
            if let Some(fallback) = reply.ask_fallback {
                fallback_capable = Value::Bool(self.capable(&fallback, spec).await?);
                continue;
            }
            if let Some(target) = reply.forward {
                slot = target;
                routed = true;
                continue;
            }
            return reply
                .candidates
                .into_iter()
                .map(wire::CandidateWire::into_domain)
                .collect();
        }
        Err(StoreError::Internal(format!(
            "candidates for {}: routing did not settle",
            spec.subtask_id
        )))
    }
}
