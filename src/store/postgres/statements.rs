//! The statements of the history applier, prepared once per batch (in one pipelined round trip).
//!
//! Every current-state write carries the event's position and takes effect only where the event is
//! later than the position the row (or the part of it) holds: `later_than_state` compares with
//! `last_event_*`, `later_than_registration` with `registration_event_*`, `later_than_both` with
//! the registration's and the deregistration's. `specialist_sql` spells these guards out.

use tokio_postgres::{Statement, Transaction};

use super::error::PgError;

/// A registration sets the registration part if it is the latest registration, clears a
/// deregistration older than itself, and sets the state part if it is the latest event. `$1` id,
/// `$2` type, `$3` capabilities, `$4` max_concurrency, `$5` labels, `$6` at, `$7` availability,
/// `$8` event id, `$9` event millis, `$10` event seq.
const SPECIALIST_REGISTERED: &str = "
    INSERT INTO specialists AS s (
        specialist_id, specialist_type, capabilities, max_concurrency, labels, registered_at,
        registration_event_ms, registration_event_seq, availability, updated_at,
        last_event_id, last_event_ms, last_event_seq)
    VALUES ($1, $2, $3, $4, $5, $6, $9, $10, $7, $6, $8, $9, $10)
    ON CONFLICT (specialist_id) DO UPDATE SET
        specialist_type = CASE WHEN later_than_registration THEN EXCLUDED.specialist_type
            ELSE s.specialist_type END,
        capabilities = CASE WHEN later_than_registration THEN EXCLUDED.capabilities
            ELSE s.capabilities END,
        max_concurrency = CASE WHEN later_than_registration THEN EXCLUDED.max_concurrency
            ELSE s.max_concurrency END,
        labels = CASE WHEN later_than_registration THEN EXCLUDED.labels ELSE s.labels END,
        registered_at = CASE WHEN later_than_registration THEN EXCLUDED.registered_at
            ELSE s.registered_at END,
        registration_event_ms = CASE WHEN later_than_registration
            THEN EXCLUDED.registration_event_ms ELSE s.registration_event_ms END,
        registration_event_seq = CASE WHEN later_than_registration
            THEN EXCLUDED.registration_event_seq ELSE s.registration_event_seq END,
        deregistered_at = CASE WHEN later_than_both THEN NULL ELSE s.deregistered_at END,
        deregistration_event_ms = CASE WHEN later_than_both THEN NULL
            ELSE s.deregistration_event_ms END,
        deregistration_event_seq = CASE WHEN later_than_both THEN NULL
            ELSE s.deregistration_event_seq END,
        STATE_COLUMNS
    WHERE later_than_registration OR later_than_state";

/// `$1` id, `$2` type (of the stream: the row may be a placeholder), `$3` availability, `$4` at,
/// `$5` event id, `$6` event millis, `$7` event seq.
const SPECIALIST_AVAILABILITY: &str = "
    INSERT INTO specialists AS s (
        specialist_id, specialist_type, availability, updated_at,
        last_event_id, last_event_ms, last_event_seq)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (specialist_id) DO UPDATE SET STATE_COLUMNS
    WHERE later_than_state";

/// A deregistration takes effect if it is later than the latest registration (and than an earlier
/// deregistration). `$1` id, `$2` type, `$3` at, `$4` event id, `$5` event millis, `$6` event seq.
const SPECIALIST_DEREGISTERED: &str = "
    INSERT INTO specialists AS s (
        specialist_id, specialist_type, availability, updated_at, deregistered_at,
        deregistration_event_ms, deregistration_event_seq,
        last_event_id, last_event_ms, last_event_seq)
    VALUES ($1, $2, 'offline', $3, $3, $5, $6, $4, $5, $6)
    ON CONFLICT (specialist_id) DO UPDATE SET
        deregistered_at = CASE WHEN later_than_both THEN EXCLUDED.deregistered_at
            ELSE s.deregistered_at END,
        deregistration_event_ms = CASE WHEN later_than_both THEN EXCLUDED.deregistration_event_ms
            ELSE s.deregistration_event_ms END,
        deregistration_event_seq = CASE WHEN later_than_both
            THEN EXCLUDED.deregistration_event_seq ELSE s.deregistration_event_seq END,
        STATE_COLUMNS
    WHERE later_than_both OR later_than_state";

/// The state part: the latest event's availability and time.
const STATE_COLUMNS: &str = "
        availability = CASE WHEN later_than_state THEN EXCLUDED.availability
            ELSE s.availability END,
        updated_at = CASE WHEN later_than_state THEN EXCLUDED.updated_at ELSE s.updated_at END,
        last_event_id = CASE WHEN later_than_state THEN EXCLUDED.last_event_id
            ELSE s.last_event_id END,
        last_event_ms = CASE WHEN later_than_state THEN EXCLUDED.last_event_ms
            ELSE s.last_event_ms END,
        last_event_seq = CASE WHEN later_than_state THEN EXCLUDED.last_event_seq
            ELSE s.last_event_seq END";

/// Guards of the specialist statements: the event (its position is the row's new `last_event_*`)
/// is later than the part's position. A missing position counts as -1 (positions are >= 0).
fn specialist_sql(template: &str) -> String {
    let event = "(EXCLUDED.last_event_ms, EXCLUDED.last_event_seq)";
    let after_registration = format!(
        "((COALESCE(s.registration_event_ms, -1), COALESCE(s.registration_event_seq, -1)) < {event})"
    );
    let after_deregistration = format!(
        "((COALESCE(s.deregistration_event_ms, -1), COALESCE(s.deregistration_event_seq, -1)) < {event})"
    );
    template
        .replace("STATE_COLUMNS", STATE_COLUMNS)
        .replace(
            "later_than_both",
            &format!("({after_registration} AND {after_deregistration})"),
        )
        .replace("later_than_registration", &after_registration)
        .replace(
            "later_than_state",
            &format!("((s.last_event_ms, s.last_event_seq) < {event})"),
        )
}

const SUBTASK_HISTORY: &str = "
    INSERT INTO assignment_history (
        event_id, stream_type, event_ms, event_seq, subtask_id, kind, state, attempt,
        specialist_id, epoch, score, breakdown, detail, at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
    ON CONFLICT (event_id) DO NOTHING";

/// `$1` id, `$2` routed type, `$3` state, `$4` attempt, `$5` specialist, `$6` epoch, `$7` score,
/// `$8` breakdown, `$9` detail, `$10` assigned_at (set when ASSIGNED), `$11` finished_at (set when
/// terminal), `$12` at, `$13` event id, `$14` event millis, `$15` event seq. A change that names
/// no breakdown or assignment time keeps the row's as long as the holder and epoch are the same
/// (a report finishing the assignment).
const SUBTASK_STATE: &str = "
    INSERT INTO subtasks AS t (
        subtask_id, routed_type, state, attempt, specialist_id, epoch, score, breakdown, detail,
        assigned_at, finished_at, updated_at, last_event_id, last_event_ms, last_event_seq)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
    ON CONFLICT (subtask_id) DO UPDATE SET
        state = EXCLUDED.state,
        attempt = EXCLUDED.attempt,
        specialist_id = EXCLUDED.specialist_id,
        epoch = EXCLUDED.epoch,
        score = CASE
            WHEN EXCLUDED.breakdown IS NOT NULL THEN EXCLUDED.score
            WHEN EXCLUDED.specialist_id = t.specialist_id AND EXCLUDED.epoch = t.epoch THEN t.score
            END,
        breakdown = CASE
            WHEN EXCLUDED.breakdown IS NOT NULL THEN EXCLUDED.breakdown
            WHEN EXCLUDED.specialist_id = t.specialist_id AND EXCLUDED.epoch = t.epoch THEN t.breakdown
            END,
        detail = EXCLUDED.detail,
        assigned_at = CASE
            WHEN EXCLUDED.assigned_at IS NOT NULL THEN EXCLUDED.assigned_at
            WHEN EXCLUDED.specialist_id = t.specialist_id AND EXCLUDED.epoch = t.epoch
                THEN t.assigned_at
            END,
        finished_at = EXCLUDED.finished_at,
        updated_at = EXCLUDED.updated_at,
        last_event_id = EXCLUDED.last_event_id,
        last_event_ms = EXCLUDED.last_event_ms,
        last_event_seq = EXCLUDED.last_event_seq
    WHERE (t.last_event_ms, t.last_event_seq) < (EXCLUDED.last_event_ms, EXCLUDED.last_event_seq)";

/// Sets the spec of a row that has none yet (new, or a placeholder). `$1` id, `$2` requested type,
/// `$3` capabilities, `$4` require_all, `$5` priority, `$6` parent, `$7` depends_on, `$8` payload,
/// `$9` created_at, `$10` routed type.
const SUBTASK_FILL: &str = "
    UPDATE subtasks SET
        specialist_type = $2, required_capabilities = $3, require_all_capabilities = $4,
        priority = $5, parent_id = $6, depends_on = $7, payload = $8, created_at = $9,
        routed_type = $10
    WHERE subtask_id = $1 AND created_at IS NULL";

/// An ASSIGNED event that arrived after a later one of the same assignment still gives the row
/// its score, breakdown and assignment time, as it would have in order. `$1` id, `$2` specialist,
/// `$3` epoch, `$4` score, `$5` breakdown, `$6` assigned_at.
const SUBTASK_HOLDER_FILL: &str = "
    UPDATE subtasks SET
        score = COALESCE(score, $4),
        breakdown = COALESCE(breakdown, $5),
        assigned_at = COALESCE(assigned_at, $6)
    WHERE subtask_id = $1 AND specialist_id = $2 AND epoch = $3";

/// A second report for the same subtask and epoch counts as a duplicate, whatever its event id.
const REPORT: &str = "
    INSERT INTO performance_reports (
        event_id, stream_type, event_ms, event_seq, subtask_id, specialist_id, epoch, success,
        completion_time_ms, quality_score, reported_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    ON CONFLICT DO NOTHING";

pub(super) struct Statements {
    pub specialist_registered: Statement,
    pub specialist_availability: Statement,
    pub specialist_deregistered: Statement,
    pub subtask_history: Statement,
    pub subtask_state: Statement,
    pub subtask_fill: Statement,
    pub subtask_holder_fill: Statement,
    pub report: Statement,
}

impl Statements {
    pub async fn prepare(transaction: &Transaction<'_>) -> Result<Self, PgError> {
        let registered_sql = specialist_sql(SPECIALIST_REGISTERED);
        let availability_sql = specialist_sql(SPECIALIST_AVAILABILITY);
        let deregistered_sql = specialist_sql(SPECIALIST_DEREGISTERED);
        let (
            specialist_registered,
            specialist_availability,
            specialist_deregistered,
            subtask_history,
            subtask_state,
            subtask_fill,
            subtask_holder_fill,
            report,
        ) = futures::try_join!(
            transaction.prepare(&registered_sql),
            transaction.prepare(&availability_sql),
            transaction.prepare(&deregistered_sql),
            transaction.prepare(SUBTASK_HISTORY),
            transaction.prepare(SUBTASK_STATE),
            transaction.prepare(SUBTASK_FILL),
            transaction.prepare(SUBTASK_HOLDER_FILL),
            transaction.prepare(REPORT),
        )?;
        Ok(Statements {
            specialist_registered,
            specialist_availability,
            specialist_deregistered,
            subtask_history,
            subtask_state,
            subtask_fill,
            subtask_holder_fill,
            report,
        })
    }
}
