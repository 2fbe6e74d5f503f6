-- 0001_init: the production store's durable state and history.
--
-- Written behind Redis by the outbox relay (src/store/postgres/history.rs). Events can arrive twice
-- or out of order (a reclaimed outbox entry), so:
--   * append-only tables are keyed by the outbox event id and inserted with ON CONFLICT DO NOTHING;
--   * current-state rows keep the position of the last event applied to them (last_event_ms,
--     last_event_seq: the <millis>-<seq> of `<type>/<millis>-<seq>`) and only take newer events;
--   * a change that arrives before the event that creates its row makes a placeholder row (the
--     registration or spec columns NULL), which the creating event fills in when it arrives.
-- There are no foreign keys between these tables for the same reason; ids join them.
-- Times are timestamptz at millisecond precision (the store's clock is Redis TIME in ms).

-- Specialists as last registered; deregistered ones stay (their history is kept under their id).
-- Three parts, each with the position of the event that last set it, so that any order of events
-- ends where the ordered run ends: the registration (type, capabilities, max_concurrency, labels:
-- the latest registration's), the deregistration (set only by one later than the latest
-- registration, cleared by a later registration) and the state (availability: the latest event's).
CREATE TABLE specialists (
    specialist_id            text PRIMARY KEY,
    specialist_type          text NOT NULL,
    -- NULL only in a placeholder row (see above), all together with registered_at.
    capabilities             text[],
    max_concurrency          integer CHECK (max_concurrency > 0),
    labels                   jsonb,
    -- Time of the latest registration (a re-registration counts).
    registered_at            timestamptz,
    registration_event_ms    bigint,
    registration_event_seq   bigint,
    availability             text NOT NULL
        CHECK (availability IN ('online', 'idle', 'busy', 'away', 'offline')),
    updated_at               timestamptz NOT NULL,
    -- Set by a deregistration, cleared by a later registration.
    deregistered_at          timestamptz,
    deregistration_event_ms  bigint,
    deregistration_event_seq bigint,
    last_event_id            text NOT NULL,
    last_event_ms            bigint NOT NULL,
    last_event_seq           bigint NOT NULL,
    CONSTRAINT specialists_registration_complete CHECK (
        (capabilities IS NULL) = (registered_at IS NULL)
        AND (max_concurrency IS NULL) = (registered_at IS NULL)
        AND (labels IS NULL) = (registered_at IS NULL)
        AND (registration_event_ms IS NULL) = (registered_at IS NULL)
        AND (registration_event_seq IS NULL) = (registered_at IS NULL)
    ),
    CONSTRAINT specialists_deregistration_complete CHECK (
        (deregistration_event_ms IS NULL) = (deregistered_at IS NULL)
        AND (deregistration_event_seq IS NULL) = (deregistered_at IS NULL)
    )
);

CREATE INDEX specialists_registered_by_type ON specialists (specialist_type)
    WHERE deregistered_at IS NULL;

-- Subtasks: the spec as submitted and the current assignment state.
CREATE TABLE subtasks (
    subtask_id               text PRIMARY KEY,
    -- The spec (immutable once set). NULL only in a placeholder row, together with created_at.
    specialist_type          text,
    required_capabilities    text[],
    require_all_capabilities boolean,
    priority                 integer,
    parent_id                text,
    depends_on               text[],
    payload                  bytea,
    created_at               timestamptz,
    -- The type whose queue and specialists serve it (the requested type or the fallback).
    routed_type              text NOT NULL,
    state                    text NOT NULL
        CHECK (state IN ('ASSIGNED', 'QUEUED', 'BLOCKED', 'COMPLETED', 'FAILED', 'CANCELLED')),
    attempt                  integer NOT NULL CHECK (attempt >= 0),
    -- The holder while ASSIGNED; the one a report finished it under afterwards.
    specialist_id            text,
    epoch                    bigint NOT NULL CHECK (epoch >= 0),
    score                    double precision,
    breakdown                jsonb,
    detail                   text NOT NULL,
    assigned_at              timestamptz,
    finished_at              timestamptz,
    updated_at               timestamptz NOT NULL,
    last_event_id            text NOT NULL,
    last_event_ms            bigint NOT NULL,
    last_event_seq           bigint NOT NULL,
    CONSTRAINT subtasks_spec_complete CHECK (
        (specialist_type IS NULL) = (created_at IS NULL)
        AND (required_capabilities IS NULL) = (created_at IS NULL)
        AND (require_all_capabilities IS NULL) = (created_at IS NULL)
        AND (priority IS NULL) = (created_at IS NULL)
        AND (depends_on IS NULL) = (created_at IS NULL)
        AND (payload IS NULL) = (created_at IS NULL)
    )
);

CREATE INDEX subtasks_by_state_and_type ON subtasks (state, routed_type);
-- Unfinished work per type: what a Redis rebuild reads.
CREATE INDEX subtasks_unfinished_by_type ON subtasks (routed_type, created_at)
    WHERE state IN ('ASSIGNED', 'QUEUED', 'BLOCKED');
CREATE INDEX subtasks_by_specialist ON subtasks (specialist_id) WHERE specialist_id IS NOT NULL;
CREATE INDEX subtasks_by_parent ON subtasks (parent_id) WHERE parent_id IS NOT NULL;

-- One row per SubtaskCreated / SubtaskChanged event, never updated.
CREATE TABLE assignment_history (
    event_id      text PRIMARY KEY,
    -- The outbox stream (specialist type) the event came from, and its position in it.
    stream_type   text NOT NULL,
    event_ms      bigint NOT NULL,
    event_seq     bigint NOT NULL,
    subtask_id    text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('created', 'changed')),
    state         text NOT NULL
        CHECK (state IN ('ASSIGNED', 'QUEUED', 'BLOCKED', 'COMPLETED', 'FAILED', 'CANCELLED')),
    attempt       integer NOT NULL CHECK (attempt >= 0),
    specialist_id text,
    epoch         bigint NOT NULL CHECK (epoch >= 0),
    -- The rule score and its factors ({"capability": {"value", "weight", "points"}, ...}) of an
    -- assignment; NULL when the change chose no specialist.
    score         double precision,
    breakdown     jsonb,
    detail        text NOT NULL,
    at            timestamptz NOT NULL
);

CREATE INDEX assignment_history_by_subtask ON assignment_history (subtask_id, event_ms, event_seq);
CREATE INDEX assignment_history_by_specialist ON assignment_history (specialist_id, at)
    WHERE specialist_id IS NOT NULL;

-- One row per completion report that took effect: the learned scorer's labels.
CREATE TABLE performance_reports (
    event_id           text PRIMARY KEY,
    stream_type        text NOT NULL,
    event_ms           bigint NOT NULL,
    event_seq          bigint NOT NULL,
    subtask_id         text NOT NULL,
    specialist_id      text NOT NULL,
    epoch              bigint NOT NULL CHECK (epoch >= 0),
    success            boolean NOT NULL,
    completion_time_ms bigint NOT NULL CHECK (completion_time_ms >= 0),
    quality_score      double precision NOT NULL,
    reported_at        timestamptz NOT NULL,
    -- Fencing lets one report per assignment take effect; a second one would be a double.
    CONSTRAINT performance_reports_one_per_assignment UNIQUE (subtask_id, epoch)
);

CREATE INDEX performance_reports_by_specialist ON performance_reports (specialist_id, reported_at);
CREATE INDEX performance_reports_by_time ON performance_reports (reported_at);

-- What the learned scorer trains on: each report with the assignment it closed (the factors the
-- rule score saw when it picked the specialist) and the subtask and specialist it concerned.
CREATE VIEW scorer_training_examples AS
SELECT
    report.event_id                                        AS report_event_id,
    report.subtask_id,
    report.specialist_id,
    report.epoch,
    report.success,
    report.completion_time_ms,
    report.quality_score,
    report.reported_at,
    assignment.at                                          AS assigned_at,
    assignment.attempt,
    assignment.score,
    (assignment.breakdown -> 'capability' ->> 'value')::double precision   AS capability_factor,
    (assignment.breakdown -> 'load' ->> 'value')::double precision         AS load_factor,
    (assignment.breakdown -> 'availability' ->> 'value')::double precision AS availability_factor,
    (assignment.breakdown -> 'performance' ->> 'value')::double precision  AS performance_factor,
    subtask.routed_type,
    subtask.priority,
    subtask.required_capabilities,
    subtask.require_all_capabilities,
    specialist.capabilities                                AS specialist_capabilities,
    specialist.max_concurrency
FROM performance_reports AS report
LEFT JOIN LATERAL (
    SELECT history.at, history.attempt, history.score, history.breakdown
    FROM assignment_history AS history
    WHERE history.subtask_id = report.subtask_id
      AND history.epoch = report.epoch
      AND history.state = 'ASSIGNED'
    ORDER BY history.event_ms, history.event_seq
    LIMIT 1
) AS assignment ON true
LEFT JOIN subtasks AS subtask ON subtask.subtask_id = report.subtask_id
LEFT JOIN specialists AS specialist ON specialist.specialist_id = report.specialist_id;

-- Trained scorer models. At most one is active (the partial unique index).
CREATE TABLE model_checkpoints (
    version           bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    created_at        timestamptz NOT NULL DEFAULT now(),
    training_set_size bigint NOT NULL CHECK (training_set_size >= 0),
    -- Metrics on the held-out set, e.g. {"log_loss": 0.41, "auc": 0.83, "examples": 2000}.
    holdout_metrics   jsonb NOT NULL DEFAULT '{}',
    format            text NOT NULL DEFAULT 'safetensors',
    weights           bytea NOT NULL,
    active            boolean NOT NULL DEFAULT false
);

CREATE UNIQUE INDEX model_checkpoints_one_active ON model_checkpoints ((true)) WHERE active;

-- Subtasks accepted while Redis was unreachable: the full spec, moved into Redis (and deleted
-- here) once it is back.
CREATE TABLE pending_subtasks (
    subtask_id               text PRIMARY KEY,
    specialist_type          text NOT NULL,
    required_capabilities    text[] NOT NULL,
    require_all_capabilities boolean NOT NULL,
    priority                 integer NOT NULL,
    parent_id                text,
    depends_on               text[] NOT NULL,
    payload                  bytea NOT NULL,
    accepted_at              timestamptz NOT NULL
);

CREATE INDEX pending_subtasks_by_arrival ON pending_subtasks (accepted_at, subtask_id);
