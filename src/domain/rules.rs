//! The constants of the assignment rules, written once: the scoring, performance and queue code in
//! Rust reads them, and the production store's Lua library gets them in a prelude generated from
//! them at load time (`store/redis/library.rs`), so changing a band is one edit here.

use super::specialist::Availability;

/// Load bands: a specialist holding at most `.0` subtasks (and more than the band before) gets
/// load factor `.1`; past the last band it gets `LOAD_FACTOR_OVERLOADED`.
pub const LOAD_BANDS: [(u32, f64); 4] = [(0, 1.0), (2, 0.8), (4, 0.6), (9, 0.4)];
/// Load factor past the last band (10 or more held).
pub const LOAD_FACTOR_OVERLOADED: f64 = 0.1;

/// Availability factor of each availability; OFFLINE specialists are never candidates.
pub const AVAILABILITY_FACTORS: [(Availability, f64); 5] = [
    (Availability::Online, 1.0),
    (Availability::Idle, 0.9),
    (Availability::Busy, 0.7),
    (Availability::Away, 0.3),
    (Availability::Offline, 0.0),
];

/// Reported outcomes the rule-based performance factor looks back over.
pub const PERFORMANCE_WINDOW: usize = 20;
/// Pseudo-outcomes added to the window (the strength of the Beta prior).
pub const PRIOR_WEIGHT: f64 = 2.0;
/// Performance factor of a specialist with no history: optimistic, so newcomers get tried.
pub const PERFORMANCE_PRIOR: f64 = 0.75;
/// Pseudo-successes added to the window's successes.
pub const PRIOR_SUCCESSES: f64 = PRIOR_WEIGHT * PERFORMANCE_PRIOR;

/// Queue order as one number (the production store's queue score): `-priority x QUEUE_BAND +
/// sequence`, so higher priority first, then arrival. Sequences stay below the band.
pub const QUEUE_BAND: i64 = 1 << 40;

/// Why a store refuses a call, as the Lua library reports it: one number each. The production
/// store turns a code (and the values that come with it) into a typed `StoreError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCode {
    SpecialistNotFound = 1,
    SubtaskNotFound = 2,
    /// Reported on a subtask that is not ASSIGNED (with its state).
    NotAssigned = 3,
    /// Reported by another specialist than the holder.
    WrongHolder = 4,
    /// Reported under an older epoch (with the current one).
    StaleEpoch = 5,
    /// A queue position asked of a subtask that is not QUEUED (with its state).
    NotQueued = 6,
    /// A cancel of a COMPLETED or FAILED subtask (with its state).
    CannotCancel = 7,
    /// The same subtask id with other content.
    AlreadyExists = 8,
    /// A dependency no store knows (with its id).
    UnknownDependency = 9,
    /// The history backlog is full (with the bound).
    BacklogFull = 10,
    /// The id is registered as another type (with that type).
    TypeMismatch = 11,
    /// A page token this server did not issue.
    BadPageToken = 12,
    /// The slot runs under another policy or library fingerprint (with the one found).
    Policy = 13,
    /// A Register without take_over while another incarnation's lease is live (with the ms left).
    SpecialistLive = 14,
    /// A call for an incarnation that is not the specialist's current one (with the one given).
    IncarnationEnded = 15,
}

impl RefusalCode {
    pub const ALL: [RefusalCode; 15] = [
        RefusalCode::SpecialistNotFound,
        RefusalCode::SubtaskNotFound,
        RefusalCode::NotAssigned,
        RefusalCode::WrongHolder,
        RefusalCode::StaleEpoch,
        RefusalCode::NotQueued,
        RefusalCode::CannotCancel,
        RefusalCode::AlreadyExists,
        RefusalCode::UnknownDependency,
        RefusalCode::BacklogFull,
        RefusalCode::TypeMismatch,
        RefusalCode::BadPageToken,
        RefusalCode::Policy,
        RefusalCode::SpecialistLive,
        RefusalCode::IncarnationEnded,
    ];

    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|refusal| *refusal as i64 == code)
    }

    /// The name the Lua library knows it by (`E.<NAME>`).
    pub fn lua_name(self) -> &'static str {
        match self {
            RefusalCode::SpecialistNotFound => "SPECIALIST_NOT_FOUND",
            RefusalCode::SubtaskNotFound => "SUBTASK_NOT_FOUND",
            RefusalCode::NotAssigned => "NOT_ASSIGNED",
            RefusalCode::WrongHolder => "WRONG_HOLDER",
            RefusalCode::StaleEpoch => "STALE_EPOCH",
            RefusalCode::NotQueued => "NOT_QUEUED",
            RefusalCode::CannotCancel => "CANNOT_CANCEL",
            RefusalCode::AlreadyExists => "ALREADY_EXISTS",
            RefusalCode::UnknownDependency => "UNKNOWN_DEPENDENCY",
            RefusalCode::BacklogFull => "BACKLOG_FULL",
            RefusalCode::TypeMismatch => "TYPE_MISMATCH",
            RefusalCode::BadPageToken => "BAD_PAGE_TOKEN",
            RefusalCode::Policy => "POLICY",
            RefusalCode::SpecialistLive => "SPECIALIST_LIVE",
            RefusalCode::IncarnationEnded => "INCARNATION_ENDED",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_round_trip() {
        for (index, refusal) in RefusalCode::ALL.iter().enumerate() {
            assert_eq!(*refusal as usize, index + 1);
            assert_eq!(RefusalCode::from_code(*refusal as i64), Some(*refusal));
        }
        assert_eq!(RefusalCode::from_code(0), None);
    }

    #[test]
    fn bands_grow() {
        assert!(LOAD_BANDS.windows(2).all(|pair| pair[0].0 < pair[1].0));
        assert_eq!(PRIOR_SUCCESSES, 1.5);
    }
}
