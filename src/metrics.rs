//! Metric names and their descriptions: what the server exposes at `/metrics`.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub const ASSIGN_DURATION: &str = "switchboard_assign_duration_seconds";
pub const ASSIGNMENTS: &str = "switchboard_assignments_total";
pub const QUEUE_DEPTH: &str = "switchboard_queue_depth";
pub const SPECIALISTS: &str = "switchboard_specialists";
pub const ACTIVE_ASSIGNMENTS: &str = "switchboard_active_assignments";
pub const RATE_LIMITED: &str = "switchboard_rate_limited_total";
pub const CONNECTIONS_REFUSED: &str = "switchboard_connections_refused_total";
pub const CONNECTIONS_IDLE_CLOSED: &str = "switchboard_connections_idle_closed_total";
pub const GRPC_REQUESTS: &str = "switchboard_grpc_requests_total";
pub const LEASES_EXPIRED: &str = "switchboard_leases_expired_total";
pub const OUTBOX_RELAYED: &str = "switchboard_outbox_relayed_total";
pub const OUTBOX_WRITE_FAILURES: &str = "switchboard_outbox_write_failures_total";
pub const OUTBOX_BACKLOG: &str = "switchboard_outbox_backlog";
pub const OUTBOX_DEAD_LETTERS: &str = "switchboard_outbox_dead_letters_total";
pub const PENDING_ACCEPTED: &str = "switchboard_pending_accepted_total";
pub const PENDING_MOVED: &str = "switchboard_pending_moved_total";
pub const SCORER_INFERENCE: &str = "switchboard_scorer_inference_seconds";
pub const SCORER_MODEL_VERSION: &str = "switchboard_scorer_model_version";
pub const SCORER_HOLDOUT_LOG_LOSS: &str = "switchboard_scorer_holdout_log_loss";
pub const SCORER_HOLDOUT_AUC: &str = "switchboard_scorer_holdout_auc";
pub const SCORER_TRAININGS: &str = "switchboard_scorer_trainings_total";

/// Buckets of the Assign latency histogram, in seconds.
pub const ASSIGN_DURATION_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

pub fn describe() {
    describe_histogram!(
        ASSIGN_DURATION,
        Unit::Seconds,
        "Time to handle one Assign call in the store"
    );
    describe_counter!(
        ASSIGNMENTS,
        "Assign calls by outcome (assigned, queued, blocked, failed, existing, rejected)"
    );
    describe_gauge!(QUEUE_DEPTH, "Queued subtasks per specialist type");
    describe_gauge!(
        SPECIALISTS,
        "Registered specialists per availability (a lapsed lease counts as offline)"
    );
    describe_gauge!(
        ACTIVE_ASSIGNMENTS,
        "Subtasks held by specialists per specialist type"
    );
    describe_counter!(
        RATE_LIMITED,
        "Calls refused by the per-caller rate limit, by method"
    );
    describe_counter!(GRPC_REQUESTS, "gRPC calls by method and status code");
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections closed on accept because --max-connections were open"
    );
    describe_counter!(
        CONNECTIONS_IDLE_CLOSED,
        "Connections closed after --idle-timeout-ms without an open call"
    );
    describe_counter!(LEASES_EXPIRED, "Specialists whose lease lapsed");
    describe_counter!(
        OUTBOX_DEAD_LETTERS,
        "History events Postgres refused for good, moved to history_dead_letters"
    );
    describe_histogram!(
        SCORER_INFERENCE,
        Unit::Seconds,
        "Learned scorer inference for one Assign's candidates, channel round trip included"
    );
    describe_gauge!(
        SCORER_MODEL_VERSION,
        "Version of the serving learned model (0: the rules serve)"
    );
    describe_gauge!(
        SCORER_HOLDOUT_LOG_LOSS,
        "Hold-out log loss of the serving learned model"
    );
    describe_gauge!(
        SCORER_HOLDOUT_AUC,
        "Hold-out AUC of the serving learned model"
    );
    describe_counter!(
        SCORER_TRAININGS,
        "Training runs of the learned scorer by outcome (accepted, rejected)"
    );
}
