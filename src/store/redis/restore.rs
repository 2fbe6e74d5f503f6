//! The Redis half of a rebuild from Postgres (store/production/rebuild.rs orchestrates it): who
//! rebuilds (a claim in the deployment's meta hash), and writing back what the history kept.

use crate::domain::subtask::SubtaskSpec;
use crate::store::clock::{Clock, SystemClock};
use crate::store::StoreResult;

use super::call::{About, Args, Target};
use super::codec::encode_spec;
use super::directory::command;
use super::library::Function;
use super::RedisStore;

/// A performance record as the history adds it up.
pub struct RestoredPerformance<'a> {
    pub specialist_id: &'a str,
    /// The type whose slot keeps it.
    pub slot: &'a str,
    pub completed: i64,
    pub succeeded: i64,
    pub quality_sum: f64,
    pub time_sum: f64,
    /// The last outcomes, oldest first, as 1/0.
    pub window: &'a str,
}

/// A finished subtask an unfinished one depends on.
pub struct RestoredFinished<'a> {
    pub spec: &'a SubtaskSpec,
    pub slot: &'a str,
    pub state: &'a str,
    pub attempt: i32,
    pub detail: &'a str,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

/// An ASSIGNED subtask, back with its holder.
pub struct RestoredHeld<'a> {
    pub spec: &'a SubtaskSpec,
    pub slot: &'a str,
    pub holder: &'a str,
    pub epoch: i64,
    pub attempt: i32,
    pub created_at_ms: i64,
    pub assigned_at_ms: i64,
}

impl RedisStore {
    /// Claims this deployment's rebuild; false when another replica (or an earlier start) has.
    pub async fn claim_rebuild(&self) -> StoreResult<bool> {
        let now = SystemClock.now_ms().to_string();
        self.query(&command(&[
            "HSETNX",
            &self.keys.deployment_meta(),
            "rebuild_started_ms",
            &now,
        ]))
        .await
    }

    pub async fn rebuilt(&self) -> StoreResult<bool> {
        self.query(&command(&[
            "HEXISTS",
            &self.keys.deployment_meta(),
            "rebuilt_ms",
        ]))
        .await
    }

    pub async fn mark_rebuilt(&self) -> StoreResult<()> {
        let now = SystemClock.now_ms().to_string();
        self.query(&command(&[
            "HSET",
            &self.keys.deployment_meta(),
            "rebuilt_ms",
            &now,
        ]))
        .await
        .map(|_: i64| ())
    }

    pub async fn restore_performance(&self, record: RestoredPerformance<'_>) -> StoreResult<()> {
        self.bind(
            &self.keys.specialist_directory(record.specialist_id),
            record.slot,
        )
        .await?;
        self.fcall(
            Function::Restore,
            Target::Slot(record.slot),
            &Args::new()
                .text("perf")
                .text(record.specialist_id)
                .num(record.completed)
                .num(record.succeeded)
                .num(record.quality_sum)
                .num(record.time_sum)
                .text(record.window),
            About::default(),
        )
        .await
        .map(|_| ())
    }

    /// Gives an ASSIGNED subtask back to its holder under its epoch and attempt; false when the
    /// holder is not registered in that type (the caller routes it again).
    pub async fn restore_held(&self, held: RestoredHeld<'_>) -> StoreResult<bool> {
        let spec = held.spec;
        self.bind(&self.keys.subtask_directory(&spec.subtask_id), held.slot)
            .await?;
        let reply = self
            .fcall(
                Function::Restore,
                Target::Slot(held.slot),
                &Args::new()
                    .text("held")
                    .text(&spec.subtask_id)
                    .bytes(encode_spec(spec))
                    .list(&spec.required_capabilities)
                    .flag(spec.require_all_capabilities)
                    .num(spec.priority)
                    .num(held.created_at_ms)
                    .text(held.holder)
                    .num(held.epoch)
                    .num(held.attempt)
                    .num(held.assigned_at_ms),
                About::default(),
            )
            .await?;
        Ok(reply.int(0)? == 1)
    }

    /// Raises a type's epoch counter to at least `epoch`, so no epoch the history knows is
    /// handed out again.
    pub async fn restore_epoch(&self, slot: &str, epoch: i64) -> StoreResult<()> {
        self.fcall(
            Function::Restore,
            Target::Slot(slot),
            &Args::new().text("epoch").num(epoch),
            About::default(),
        )
        .await
        .map(|_| ())
    }

    pub async fn restore_finished(&self, finished: RestoredFinished<'_>) -> StoreResult<()> {
        let spec = finished.spec;
        self.bind(
            &self.keys.subtask_directory(&spec.subtask_id),
            finished.slot,
        )
        .await?;
        self.fcall(
            Function::Restore,
            Target::Slot(finished.slot),
            &Args::new()
                .text("subtask")
                .text(&spec.subtask_id)
                .bytes(encode_spec(spec))
                .list(&spec.required_capabilities)
                .flag(spec.require_all_capabilities)
                .num(spec.priority)
                .num(finished.created_at_ms)
                .text(finished.state)
                .num(finished.attempt)
                .text(finished.detail)
                .text(
                    &finished
                        .finished_at_ms
                        .map_or_else(String::new, |at| at.to_string()),
                ),
            About::default(),
        )
        .await
        .map(|_| ())
    }
}
