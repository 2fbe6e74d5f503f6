//! The statements of the history applier, prepared once per batch (in one pipelined round trip).
//!
//! Each works on a whole batch at once: its rows arrive as one array per column (`unnest`), so a
//! batch costs the same handful of statements whatever its size. The rules that decide what a
//! current-state row becomes are applied in Rust (`collapse.rs`) between the reads, which lock the
//! rows (FOR UPDATE, in key order), and the writes; the append-only tables are inserted with
//! ON CONFLICT DO NOTHING and report which rows were new (RETURNING).
//!
//! Array columns (`text[]`) travel as JSON text, since an array of arrays cannot be unnested row by
//! row; so do jsonb columns, whose text a write parses back to the same value.

use tokio_postgres::{Statement, Transaction};

use super::error::PgError;

/// The specialists of `$1`, locked in key order.
const SPECIALIST_LOCK: &str = "
    SELECT specialist_id, specialist_type, to_jsonb(capabilities)::text, max_concurrency,
        labels::text, registered_at, registration_event_ms, registration_event_seq, availability,
        updated_at, deregistered_at, deregistration_event_ms, deregistration_event_seq,
        last_event_id, last_event_ms, last_event_seq, incarnation
    FROM specialists WHERE specialist_id = ANY($1::text[])
    ORDER BY specialist_id FOR UPDATE";

/// Whole `specialists` rows, one array per column.
const SPECIALIST_ROWS: &str = "
    unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::timestamptz[],
        $7::int8[], $8::int8[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::int8[],
        $13::int8[], $14::text[], $15::int8[], $16::int8[], $17::text[])
    AS u(specialist_id, specialist_type, capabilities, max_concurrency, labels, registered_at,
        registration_event_ms, registration_event_seq, availability, updated_at, deregistered_at,
        deregistration_event_ms, deregistration_event_seq, last_event_id, last_event_ms,
        last_event_seq, incarnation)";

/// Rows locked by SPECIALIST_LOCK, rewritten whole.
const SPECIALIST_UPDATE: &str = "
    UPDATE specialists AS s SET
        specialist_type = u.specialist_type, capabilities = CAPABILITIES,
        max_concurrency = u.max_concurrency, labels = u.labels::jsonb,
        registered_at = u.registered_at, registration_event_ms = u.registration_event_ms,
        registration_event_seq = u.registration_event_seq, availability = u.availability,
        updated_at = u.updated_at, deregistered_at = u.deregistered_at,
        deregistration_event_ms = u.deregistration_event_ms,
        deregistration_event_seq = u.deregistration_event_seq, last_event_id = u.last_event_id,
        last_event_ms = u.last_event_ms, last_event_seq = u.last_event_seq,
        incarnation = u.incarnation
    FROM ROWS WHERE s.specialist_id = u.specialist_id";

/// Rows SPECIALIST_LOCK found missing. No ON CONFLICT: a relay that created one of them since
/// fails this batch with a unique violation, and the batch is retried (`history.rs`).
const SPECIALIST_INSERT: &str = "
    INSERT INTO specialists (
        specialist_id, specialist_type, capabilities, max_concurrency, labels, registered_at,
        registration_event_ms, registration_event_seq, availability, updated_at, deregistered_at,
        deregistration_event_ms, deregistration_event_seq, last_event_id, last_event_ms,
        last_event_seq, incarnation)
    SELECT u.specialist_id, u.specialist_type, CAPABILITIES, u.max_concurrency, u.labels::jsonb,
        u.registered_at, u.registration_event_ms, u.registration_event_seq, u.availability,
        u.updated_at, u.deregistered_at, u.deregistration_event_ms, u.deregistration_event_seq,
        u.last_event_id, u.last_event_ms, u.last_event_seq, u.incarnation
    FROM ROWS";

/// The history rows of the batch (each event id once); RETURNING names those that were new.
const HISTORY_INSERT: &str = "
    INSERT INTO assignment_history (
        event_id, stream_type, event_ms, event_seq, subtask_id, kind, state, attempt,
        specialist_id, epoch, score, breakdown, detail, at)
    SELECT u.event_id, u.stream_type, u.event_ms, u.event_seq, u.subtask_id, u.kind, u.state,
        u.attempt, u.specialist_id, u.epoch, u.score, u.breakdown::jsonb, u.detail, u.at
    FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[],
        $7::text[], $8::int4[], $9::text[], $10::int8[], $11::float8[], $12::text[], $13::text[],
        $14::timestamptz[])
    AS u(event_id, stream_type, event_ms, event_seq, subtask_id, kind, state, attempt,
        specialist_id, epoch, score, breakdown, detail, at)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id";

/// The subtasks of `$1`, locked in key order: the state part and whether the spec is there.
const SUBTASK_LOCK: &str = "
    SELECT subtask_id, created_at IS NOT NULL, routed_type, state, attempt, specialist_id, epoch,
        score, breakdown::text, detail, assigned_at, finished_at, updated_at, last_event_id,
        last_event_ms, last_event_seq
    FROM subtasks WHERE subtask_id = ANY($1::text[])
    ORDER BY subtask_id FOR UPDATE";

/// `subtasks` rows, one array per column; the spec columns count where `fill` is set.
const SUBTASK_ROWS: &str = "
    unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::int8[],
        $7::float8[], $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[],
        $12::timestamptz[], $13::text[], $14::int8[], $15::int8[], $16::bool[], $17::text[],
        $18::text[], $19::bool[], $20::int4[], $21::text[], $22::text[], $23::bytea[],
        $24::timestamptz[])
    AS u(subtask_id, routed_type, state, attempt, specialist_id, epoch, score, breakdown, detail,
        assigned_at, finished_at, updated_at, last_event_id, last_event_ms, last_event_seq, fill,
        specialist_type, required_capabilities, require_all_capabilities, priority, parent_id,
        depends_on, payload, created_at)";

/// Rows locked by SUBTASK_LOCK: the state part rewritten, the spec set where the batch fills it.
const SUBTASK_UPDATE: &str = "
    UPDATE subtasks AS t SET
        routed_type = u.routed_type, state = u.state, attempt = u.attempt,
        specialist_id = u.specialist_id, epoch = u.epoch, score = u.score,
        breakdown = u.breakdown::jsonb, detail = u.detail, assigned_at = u.assigned_at,
        finished_at = u.finished_at, updated_at = u.updated_at, last_event_id = u.last_event_id,
        last_event_ms = u.last_event_ms, last_event_seq = u.last_event_seq,
        specialist_type = CASE WHEN u.fill THEN u.specialist_type ELSE t.specialist_type END,
        required_capabilities = CASE WHEN u.fill THEN REQUIRED_CAPABILITIES
            ELSE t.required_capabilities END,
        require_all_capabilities = CASE WHEN u.fill THEN u.require_all_capabilities
            ELSE t.require_all_capabilities END,
        priority = CASE WHEN u.fill THEN u.priority ELSE t.priority END,
        parent_id = CASE WHEN u.fill THEN u.parent_id ELSE t.parent_id END,
        depends_on = CASE WHEN u.fill THEN DEPENDS_ON ELSE t.depends_on END,
        payload = CASE WHEN u.fill THEN u.payload ELSE t.payload END,
        created_at = CASE WHEN u.fill THEN u.created_at ELSE t.created_at END
    FROM ROWS WHERE t.subtask_id = u.subtask_id";

/// Rows SUBTASK_LOCK found missing (a placeholder where `fill` is not set: the spec stays NULL).
/// No ON CONFLICT, as SPECIALIST_INSERT.
const SUBTASK_INSERT: &str = "
    INSERT INTO subtasks (
        subtask_id, routed_type, state, attempt, specialist_id, epoch, score, breakdown, detail,
        assigned_at, finished_at, updated_at, last_event_id, last_event_ms, last_event_seq,
        specialist_type, required_capabilities, require_all_capabilities, priority, parent_id,
        depends_on, payload, created_at)
    SELECT u.subtask_id, u.routed_type, u.state, u.attempt, u.specialist_id, u.epoch, u.score,
        u.breakdown::jsonb, u.detail, u.assigned_at, u.finished_at, u.updated_at,
        u.last_event_id, u.last_event_ms, u.last_event_seq, u.specialist_type,
        REQUIRED_CAPABILITIES, u.require_all_capabilities, u.priority, u.parent_id, DEPENDS_ON,
        u.payload, u.created_at
    FROM ROWS";

/// The reports of the batch (none sharing an event id or a subtask and epoch); RETURNING names
/// those that were new. A report for a subtask and epoch recorded already counts as a duplicate.
const REPORT_INSERT: &str = "
    INSERT INTO performance_reports (
        event_id, stream_type, event_ms, event_seq, subtask_id, specialist_id, epoch, success,
        completion_time_ms, quality_score, reported_at)
    SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[],
        $7::int8[], $8::bool[], $9::int8[], $10::float8[], $11::timestamptz[])
    ON CONFLICT DO NOTHING
    RETURNING event_id";

/// A `text[]` value from the JSON array text in `column` (NULL stays NULL).
fn text_array(column: &str) -> String {
    format!(
        "CASE WHEN {column} IS NULL THEN NULL \
         ELSE ARRAY(SELECT jsonb_array_elements_text({column}::jsonb)) END"
    )
}

fn specialist_sql(template: &str) -> String {
    template
        .replace("ROWS", SPECIALIST_ROWS)
        .replace("CAPABILITIES", &text_array("u.capabilities"))
}

fn subtask_sql(template: &str) -> String {
    template
        .replace("ROWS", SUBTASK_ROWS)
        .replace(
            "REQUIRED_CAPABILITIES",
            &text_array("u.required_capabilities"),
        )
        .replace("DEPENDS_ON", &text_array("u.depends_on"))
}

pub(super) struct Statements {
    pub specialist_lock: Statement,
    pub specialist_update: Statement,
    pub specialist_insert: Statement,
    pub history_insert: Statement,
    pub subtask_lock: Statement,
    pub subtask_update: Statement,
    pub subtask_insert: Statement,
    pub report_insert: Statement,
}

impl Statements {
    pub async fn prepare(transaction: &Transaction<'_>) -> Result<Self, PgError> {
        let specialist_update = specialist_sql(SPECIALIST_UPDATE);
        let specialist_insert = specialist_sql(SPECIALIST_INSERT);
        let subtask_update = subtask_sql(SUBTASK_UPDATE);
        let subtask_insert = subtask_sql(SUBTASK_INSERT);
        let (
            specialist_lock,
            specialist_update,
            specialist_insert,
            history_insert,
            subtask_lock,
            subtask_update,
            subtask_insert,
            report_insert,
        ) = futures::try_join!(
            transaction.prepare(SPECIALIST_LOCK),
            transaction.prepare(&specialist_update),
            transaction.prepare(&specialist_insert),
            transaction.prepare(HISTORY_INSERT),
            transaction.prepare(SUBTASK_LOCK),
            transaction.prepare(&subtask_update),
            transaction.prepare(&subtask_insert),
            transaction.prepare(REPORT_INSERT),
        )?;
        Ok(Statements {
            specialist_lock,
            specialist_update,
            specialist_insert,
            history_insert,
            subtask_lock,
            subtask_update,
            subtask_insert,
            report_insert,
        })
    }
}
