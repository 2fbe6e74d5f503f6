//! Features of one (subtask, specialist) pair, hashed into a fixed number of buckets: a sparse row
//! of at most `SLOTS` (bucket, value) pairs, padded with value 0.
//!
//! Crossing the specialist's identity with each required capability lets the model learn individual
//! skill per capability; the identity alone, its capabilities, their overlap with the requirement,
//! the type, the priority, the optional hints and the recent outcomes let it generalise.

use crate::domain::learned::CandidateInfo;
use crate::domain::scoring::capability_factor;

/// Hash buckets of the sparse input (rows of the model's first layer).
pub const BUCKETS: usize = 4096;
/// Features per row; unused slots are (0, 0.0).
pub const SLOTS: usize = 48;

const MAX_REQUIRED: usize = 8;
const MAX_SPECIALIST_CAPABILITIES: usize = 12;
const MAX_DESCRIPTION_WORDS: usize = 8;

/// What the scorer knows about a subtask: its spec fields plus the optional Assign hints.
#[derive(Debug, Clone, PartialEq)]
pub struct SubtaskContext {
    pub specialist_type: String,
    /// Sorted.
    pub required_capabilities: Vec<String>,
    pub priority: i32,
    pub description: Option<String>,
    pub estimated_duration_ms: Option<u64>,
}

/// One encoded row.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseRow {
    pub buckets: [u32; SLOTS],
    pub values: [f32; SLOTS],
}

impl SparseRow {
    fn new() -> Self {
        Self {
            buckets: [0; SLOTS],
            values: [0.0; SLOTS],
        }
    }
}

const HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;
const HASH_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// Continues a hash over one part, eight bytes at a time (the names are short; a byte-at-a-time
/// hash was most of the cost of encoding an Assign's candidates), ending with its length so that
/// ("ab","c") and ("a","bc") differ.
fn extend(mut hash: u64, part: &str) -> u64 {
    let bytes = part.as_bytes();
    let mut chunks = bytes.chunks_exact(8);
    for chunk in chunks.by_ref() {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        hash = (hash.rotate_left(5) ^ word).wrapping_mul(HASH_MULTIPLIER);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    hash = (hash.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(HASH_MULTIPLIER);
    (hash.rotate_left(5) ^ bytes.len() as u64).wrapping_mul(HASH_MULTIPLIER)
}

/// Mixes the high bits down before taking the bucket.
fn bucket_of(hash: u64) -> u32 {
    let mixed = (hash ^ (hash >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    ((mixed ^ (mixed >> 29)) % BUCKETS as u64) as u32
}

#[derive(Clone)]
struct RowWriter {
    row: SparseRow,
    used: usize,
}

impl RowWriter {
    fn push_hash(&mut self, hash: u64, value: f32) {
        if self.used == SLOTS {
            return;
        }
        self.row.buckets[self.used] = bucket_of(hash);
        self.row.values[self.used] = value;
        self.used += 1;
    }

    fn push(&mut self, parts: &[&str], value: f32) {
        let hash = parts
            .iter()
            .fold(HASH_SEED, |hash, part| extend(hash, part));
        self.push_hash(hash, value);
    }
}

/// Smoothed recent success rate, the same shape as the rule-based window.
pub fn recent_rate(candidate: &CandidateInfo) -> f32 {
    (candidate.recent_successes as f32 + 1.0) / (candidate.recent_outcomes as f32 + 2.0)
}

fn required(subtask: &SubtaskContext) -> &[String] {
    &subtask.required_capabilities[..subtask.required_capabilities.len().min(MAX_REQUIRED)]
}

/// The features of the subtask alone, shared by all its candidates' rows.
fn subtask_part(subtask: &SubtaskContext) -> RowWriter {
    let mut writer = RowWriter {
        row: SparseRow::new(),
        used: 0,
    };
    writer.push(&["bias"], 1.0);
    writer.push(&["type", &subtask.specialist_type], 1.0);
    writer.push(&["priority"], subtask.priority as f32 / 1000.0);
    let required = required(subtask);
    let required_scale = 1.0 / (required.len().max(1) as f32).sqrt();
    for capability in required {
        writer.push(&["rcap", capability], required_scale);
    }
    match subtask.estimated_duration_ms {
        Some(duration_ms) => writer.push(&["duration"], ((duration_ms as f32) + 1.0).ln() / 10.0),
        None => writer.push(&["no_duration"], 1.0),
    }
    if let Some(description) = &subtask.description {
        let words = description
            .split(|character: char| !character.is_alphanumeric())
            .filter(|word| word.len() > 2)
            .take(MAX_DESCRIPTION_WORDS);
        for word in words {
            writer.push(&["word", &word.to_lowercase()], 0.5);
        }
    }
    writer
}

/// Adds the candidate's features (and the crosses with the subtask's) to the subtask's part.
fn candidate_row(
    subtask: &SubtaskContext,
    base: &RowWriter,
    candidate: &CandidateInfo,
) -> SparseRow {
    let mut writer = base.clone();
    let specialist_id = candidate.specialist_id.as_str();
    writer.push(&["id", specialist_id], 1.0);
    writer.push(&["stype", &candidate.specialist_type], 1.0);
    let required = required(subtask);
    let required_scale = 1.0 / (required.len().max(1) as f32).sqrt();
    // The cross that carries individual skill per capability.
    let identity = extend(extend(HASH_SEED, "idcap"), specialist_id);
    for capability in required {
        writer.push_hash(extend(identity, capability), required_scale);
    }
    writer.push(
        &["overlap"],
        capability_factor(&candidate.capabilities, &subtask.required_capabilities) as f32,
    );
    let own = &candidate.capabilities[..candidate
        .capabilities
        .len()
        .min(MAX_SPECIALIST_CAPABILITIES)];
    let own_scale = 1.0 / (own.len().max(1) as f32).sqrt();
    for capability in own {
        writer.push(&["scap", capability], own_scale);
    }
    writer.push(&["recent"], recent_rate(candidate));
    writer.push(&["recent_n"], candidate.recent_outcomes as f32 / 20.0);
    writer.row
}

/// Encodes one (subtask, candidate) pair.
pub fn encode(subtask: &SubtaskContext, candidate: &CandidateInfo) -> SparseRow {
    candidate_row(subtask, &subtask_part(subtask), candidate)
}

/// Encodes every candidate of one subtask (the subtask's own features computed once).
pub fn encode_all(subtask: &SubtaskContext, candidates: &[CandidateInfo]) -> Vec<SparseRow> {
    let base = subtask_part(subtask);
    candidates
        .iter()
        .map(|candidate| candidate_row(subtask, &base, candidate))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::specialist::Availability;

    fn candidate(specialist_id: &str) -> CandidateInfo {
        CandidateInfo {
            specialist_id: specialist_id.into(),
            specialist_type: "general".into(),
            capabilities: vec!["css".into(), "react".into()],
            active: 0,
            max_concurrency: 2,
            availability: Availability::Online,
            recent_successes: 3,
            recent_outcomes: 4,
            rule_performance: 0.75,
        }
    }

    #[test]
    fn rows_are_stable_and_identity_matters() {
        let subtask = SubtaskContext {
            specialist_type: "general".into(),
            required_capabilities: vec!["react".into()],
            priority: 10,
            description: Some("Fix the login form".into()),
            estimated_duration_ms: Some(60_000),
        };
        let first = encode(&subtask, &candidate("a"));
        assert_eq!(first, encode(&subtask, &candidate("a")));
        assert_eq!(
            encode_all(&subtask, &[candidate("b"), candidate("a")])[1],
            first
        );
        assert_ne!(first.buckets, encode(&subtask, &candidate("b")).buckets);
        assert!(first
            .buckets
            .iter()
            .all(|bucket| (*bucket as usize) < BUCKETS));
        let used = first.values.iter().filter(|value| **value != 0.0).count();
        assert!(used > 10 && used <= SLOTS);
    }
}
