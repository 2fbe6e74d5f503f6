//! History events Postgres refused for good (`history_dead_letters`, sql/0002): written by the
//! outbox relay so that one bad event never blocks the events behind it.

use std::time::SystemTime;

use super::{PgError, PgPool};

/// Longest `fields` text kept (a subtask's payload can be a MiB).
const FIELDS_LIMIT: usize = 64 * 1024;

/// Records a refused event (once per event id). `fields` is the event as escaped text.
pub async fn dead_letter(
    pool: &PgPool,
    event_id: &str,
    stream_type: &str,
    fields: &str,
    reason: &str,
    attempts: u32,
) -> Result<(), PgError> {
    let client = pool.get().await?;
    let fields = printable(truncated(fields));
    let reason = printable(reason);
    client
        .execute(
            "INSERT INTO history_dead_letters \
             (event_id, stream_type, fields, reason, attempts, dead_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
            &[
                &event_id,
                &stream_type,
                &fields,
                &reason,
                &(attempts.min(i32::MAX as u32) as i32),
                &SystemTime::now(),
            ],
        )
        .await?;
    Ok(())
}

fn truncated(text: &str) -> &str {
    if text.len() <= FIELDS_LIMIT {
        return text;
    }
    let mut end = FIELDS_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Postgres text cannot hold NUL.
fn printable(text: &str) -> String {
    text.replace('\0', "\\0")
}
