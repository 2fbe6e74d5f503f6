//! Retention: a finished subtask leaves Redis `--retention-ms` after it finished (Postgres keeps
//! it). The lease sweep's `expire` lists those due; the store removes what other slots keep of
//! them (the forward or void mark a type kept, then the directory entry), and `purge` deletes the
//! records. Marks go before the directory entry, so an id taken again in between never meets a
//! stale mark; `purge` leaves a record alone whose id was taken again meanwhile. Each step can run
//! twice without harm, so a replica that dies between them leaves nothing the next sweep does not
//! finish.

use redis::Value;

use crate::store::StoreResult;

use super::call::{About, Args, Target};
use super::library::Function;
use super::replies::text;
use super::RedisStore;

impl RedisStore {
    /// `retirable`: id, forwarding type ('' none), voided type ('' none), ... (from `expire`).
    pub(super) async fn retire_finished(&self, slot: &str, retirable: &[Value]) -> StoreResult<()> {
        let mut ids = Vec::with_capacity(retirable.len() / 3);
        let mut marks = Vec::new();
        let mut directory = Vec::with_capacity(retirable.len() / 3);
        for entry in retirable.chunks(3) {
            let [id, forwarded_by, voided_in] = entry else {
                continue;
            };
            let id = text(id)?;
            for other in [text(forwarded_by)?, text(voided_in)?] {
                if !other.is_empty() {
                    marks.push(self.keys.subtask_mark(&other, &id));
                }
            }
            directory.push(self.keys.subtask_directory(&id));
            self.placements.forget(&id);
            ids.push(id);
        }
        if self.single {
            // One command: atomic, marks and entries together.
            let mut delete = redis::cmd("DEL");
            delete.arg(&marks).arg(&directory);
            let _: i64 = self.query(&delete).await?;
        } else {
            for key in marks.iter().chain(directory.iter()) {
                let _: i64 = self.query(redis::cmd("DEL").arg(key)).await?;
            }
        }
        self.fcall(
            Function::Purge,
            Target::Slot(slot),
            &Args::new().list(&ids),
            About::default(),
        )
        .await?;
        Ok(())
    }
}
