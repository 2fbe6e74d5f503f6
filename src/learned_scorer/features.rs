//! Features of one (subtask, specialist) pair, hashed into a fixed number of buckets: a sparse row
//! of at most `SLOTS` (bucket, value) pairs, padded with value 0.
//!
//! Crossing the specialist's identity with each required capability lets the model learn individual
//! skill per capability; the identity alone, its capabilities, their overlap with the requirement,
//! the type, the priority, the optional hints and the recent outcomes let it generalise.

use std::sync::LazyLock;

use crate::domain::learned::CandidateInfo;

use super::names::overlap;

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
    let tail = tail_word(chunks.remainder());
    hash = (hash.rotate_left(5) ^ tail).wrapping_mul(HASH_MULTIPLIER);
    (hash.rotate_left(5) ^ bytes.len() as u64).wrapping_mul(HASH_MULTIPLIER)
}

/// The last bytes of a part (fewer than eight) as a little-endian word padded with zeros, without
/// a call to copy them: four to seven bytes are read as two overlapping four-byte loads.
fn tail_word(tail: &[u8]) -> u64 {
    debug_assert!(tail.len() < 8);
    match (tail.first_chunk::<4>(), tail.last_chunk::<4>()) {
        (Some(first), Some(last)) => {
            let high = u64::from(u32::from_le_bytes(*last)) << (8 * (tail.len() - 4));
            u64::from(u32::from_le_bytes(*first)) | high
        }
        _ => tail
            .iter()
            .rev()
            .fold(0, |word, byte| (word << 8) | u64::from(*byte)),
    }
}

/// Mixes the high bits down before taking the bucket.
fn bucket_of(hash: u64) -> u32 {
    let mixed = (hash ^ (hash >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    ((mixed ^ (mixed >> 29)) % BUCKETS as u64) as u32
}

/// The hash of each feature name, the start of every hash of a feature with that name: taken
/// once, so that a candidate's row hashes only the candidate's own strings.
struct NameHashes {
    bias: u64,
    specialist_type: u64,
    priority: u64,
    required_capability: u64,
    duration: u64,
    no_duration: u64,
    word: u64,
    identity: u64,
    candidate_type: u64,
    identity_capability: u64,
    overlap: u64,
    own_capability: u64,
    recent: u64,
    recent_count: u64,
}

static NAMES: LazyLock<NameHashes> = LazyLock::new(|| {
    let name = |name: &str| extend(HASH_SEED, name);
    NameHashes {
        bias: name("bias"),
        specialist_type: name("type"),
        priority: name("priority"),
        required_capability: name("rcap"),
        duration: name("duration"),
        no_duration: name("no_duration"),
        word: name("word"),
        identity: name("id"),
        candidate_type: name("stype"),
        identity_capability: name("idcap"),
        overlap: name("overlap"),
        own_capability: name("scap"),
        recent: name("recent"),
        recent_count: name("recent_n"),
    }
});

#[derive(Clone)]
struct RowWriter {
    row: SparseRow,
    used: usize,
}

impl RowWriter {
    fn push(&mut self, hash: u64, value: f32) {
        if self.used == SLOTS {
            return;
        }
        self.row.buckets[self.used] = bucket_of(hash);
        self.row.values[self.used] = value;
        self.used += 1;
    }
}

/// Smoothed recent success rate, the same shape as the rule-based window.
pub fn recent_rate(candidate: &CandidateInfo) -> f32 {
    (candidate.recent_successes as f32 + 1.0) / (candidate.recent_outcomes as f32 + 2.0)
}

fn required(subtask: &SubtaskContext) -> &[String] {
    &subtask.required_capabilities[..subtask.required_capabilities.len().min(MAX_REQUIRED)]
}

/// The features of one subtask, computed once for all its candidates: the leading slots every
/// candidate's row shares, then each candidate's own.
pub struct SubtaskFeatures<'a> {
    subtask: &'a SubtaskContext,
    shared: RowWriter,
    required_scale: f32,
}

impl<'a> SubtaskFeatures<'a> {
    pub fn new(subtask: &'a SubtaskContext) -> Self {
        let names = &*NAMES;
        let mut writer = RowWriter {
            row: SparseRow::new(),
            used: 0,
        };
        writer.push(names.bias, 1.0);
        writer.push(extend(names.specialist_type, &subtask.specialist_type), 1.0);
        writer.push(names.priority, subtask.priority as f32 / 1000.0);
        let required = required(subtask);
        let required_scale = 1.0 / (required.len().max(1) as f32).sqrt();
        for capability in required {
            writer.push(
                extend(names.required_capability, capability),
                required_scale,
            );
        }
        match subtask.estimated_duration_ms {
            Some(duration_ms) => {
                writer.push(names.duration, ((duration_ms as f32) + 1.0).ln() / 10.0)
            }
            None => writer.push(names.no_duration, 1.0),
        }
        if let Some(description) = &subtask.description {
            let words = description
                .split(|character: char| !character.is_alphanumeric())
                .filter(|word| word.len() > 2)
                .take(MAX_DESCRIPTION_WORDS);
            for word in words {
                writer.push(extend(names.word, &word.to_lowercase()), 0.5);
            }
        }
        Self {
            subtask,
            shared: writer,
            required_scale,
        }
    }

    /// How many leading slots of every candidate's row are the subtask's own (the same in all).
    pub fn shared_slots(&self) -> usize {
        self.shared.used
    }

    /// Those leading slots: buckets and values.
    pub fn shared(&self) -> (&[u32], &[f32]) {
        let used = self.shared.used;
        (
            &self.shared.row.buckets[..used],
            &self.shared.row.values[..used],
        )
    }

    /// The row of one candidate: the subtask's slots, then the candidate's features and their
    /// crosses with the subtask's, then padding.
    pub fn row(&self, candidate: &CandidateInfo) -> SparseRow {
        let mut writer = self.shared.clone();
        self.write_candidate(&mut writer, candidate);
        writer.row
    }

    /// Calls `visit` with each candidate's own slots (those after the shared ones, no padding),
    /// in order: the rows without materialising them.
    pub fn for_each_candidate(
        &self,
        candidates: &[CandidateInfo],
        mut visit: impl FnMut(&[u32], &[f32]),
    ) {
        let shared_slots = self.shared.used;
        let mut writer = self.shared.clone();
        for candidate in candidates {
            writer.used = shared_slots;
            self.write_candidate(&mut writer, candidate);
            visit(
                &writer.row.buckets[shared_slots..writer.used],
                &writer.row.values[shared_slots..writer.used],
            );
        }
    }

    fn write_candidate(&self, writer: &mut RowWriter, candidate: &CandidateInfo) {
        let names = &*NAMES;
        let subtask = self.subtask;
        let specialist_id = candidate.specialist_id.as_str();
        writer.push(extend(names.identity, specialist_id), 1.0);
        writer.push(
            extend(names.candidate_type, &candidate.specialist_type),
            1.0,
        );
        // The cross that carries individual skill per capability.
        let identity = extend(names.identity_capability, specialist_id);
        for capability in required(subtask) {
            writer.push(extend(identity, capability), self.required_scale);
        }
        writer.push(
            names.overlap,
            overlap(&candidate.capabilities, &subtask.required_capabilities) as f32,
        );
        let own = &candidate.capabilities[..candidate
            .capabilities
            .len()
            .min(MAX_SPECIALIST_CAPABILITIES)];
        let own_scale = 1.0 / (own.len().max(1) as f32).sqrt();
        for capability in own {
            writer.push(extend(names.own_capability, capability), own_scale);
        }
        writer.push(names.recent, recent_rate(candidate));
        writer.push(names.recent_count, candidate.recent_outcomes as f32 / 20.0);
    }
}

/// The rows of one subtask's candidates, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateRows {
    pub rows: Vec<SparseRow>,
    /// The leading slots that are the same in every row (the subtask's own features).
    pub shared_slots: usize,
}

/// Encodes one (subtask, candidate) pair.
pub fn encode(subtask: &SubtaskContext, candidate: &CandidateInfo) -> SparseRow {
    SubtaskFeatures::new(subtask).row(candidate)
}

/// Encodes every candidate of one subtask (the subtask's own features computed once).
pub fn encode_candidates(subtask: &SubtaskContext, candidates: &[CandidateInfo]) -> CandidateRows {
    let features = SubtaskFeatures::new(subtask);
    CandidateRows {
        rows: candidates
            .iter()
            .map(|candidate| features.row(candidate))
            .collect(),
        shared_slots: features.shared_slots(),
    }
}

/// Encodes every candidate of one subtask, the rows alone.
pub fn encode_all(subtask: &SubtaskContext, candidates: &[CandidateInfo]) -> Vec<SparseRow> {
    encode_candidates(subtask, candidates).rows
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

    /// Pairs that reach every branch of the encoding: names of every length around the eight-byte
    /// chunks, non-ASCII text, no and too many capabilities, every hint present and absent.
    fn golden_pairs() -> Vec<(SubtaskContext, CandidateInfo)> {
        let names = |count: usize, prefix: &str| -> Vec<String> {
            let mut names: Vec<String> = (0..count)
                .map(|index| format!("{prefix}{index:02}"))
                .collect();
            names.sort();
            names
        };
        let identities = [
            "",
            "a",
            "ada",
            "seven77",
            "eight888",
            "nine99999",
            "specialist-0123456789abcdef",
            "ünïcödé-名前",
        ];
        let requirements = [
            Vec::new(),
            vec!["react".to_string()],
            vec!["css".to_string(), "react".to_string()],
            names(10, "cap"),
        ];
        let owned = [
            Vec::new(),
            vec!["css".to_string(), "react".to_string()],
            names(14, "cap"),
        ];
        let hints = [
            (0, None, None),
            (
                10,
                Some("Fix the login form, ASAP! Übermäßig lange Beschreibung: a b cd efg"),
                Some(60_000),
            ),
            (1000, Some(""), Some(0)),
        ];
        let mut pairs = Vec::new();
        for (index, identity) in identities.iter().enumerate() {
            for required in &requirements {
                for capabilities in &owned {
                    for (priority, description, duration) in hints {
                        let subtask = SubtaskContext {
                            specialist_type: if index % 2 == 0 {
                                "general"
                            } else {
                                "frontend"
                            }
                            .into(),
                            required_capabilities: required.clone(),
                            priority,
                            description: description.map(str::to_string),
                            estimated_duration_ms: duration,
                        };
                        let candidate = CandidateInfo {
                            specialist_id: identity.to_string(),
                            specialist_type: if index % 3 == 0 { "backend" } else { "general" }
                                .into(),
                            capabilities: capabilities.clone(),
                            active: 0,
                            max_concurrency: 2,
                            availability: Availability::Online,
                            recent_successes: index as u32,
                            recent_outcomes: 2 * index as u32,
                            rule_performance: 0.5,
                        };
                        pairs.push((subtask, candidate));
                    }
                }
            }
        }
        pairs
    }

    /// A digest of every bucket and every value's bits of the rows of `golden_pairs`.
    fn golden_digest(rows: impl Iterator<Item = SparseRow>) -> u64 {
        rows.fold(HASH_SEED, |digest, row| {
            row.buckets
                .iter()
                .zip(&row.values)
                .fold(digest, |digest, (bucket, value)| {
                    let word = (u64::from(*bucket) << 32) | u64::from(value.to_bits());
                    (digest.rotate_left(5) ^ word).wrapping_mul(HASH_MULTIPLIER)
                })
        })
    }

    /// The encoding is part of the model: a checkpoint's weights mean something only for the rows
    /// they were trained on. The digest was taken from the encoder before it was restructured
    /// (commit e057596), so any change to a bucket or a value shows here.
    #[test]
    fn rows_are_the_same_bits_as_before() {
        let pairs = golden_pairs();
        assert_eq!(pairs.len(), 288);
        let digest = golden_digest(
            pairs
                .iter()
                .map(|(subtask, candidate)| encode(subtask, candidate)),
        );
        assert_eq!(digest, 0xd44f_06ce_b1e1_2e03);
    }

    #[test]
    fn candidates_rows_share_the_subtask_slots() {
        let pairs = golden_pairs();
        for (subtask, _) in pairs.iter().step_by(7) {
            let candidates: Vec<CandidateInfo> = pairs
                .iter()
                .take(24)
                .map(|(_, candidate)| candidate.clone())
                .collect();
            let encoded = encode_candidates(subtask, &candidates);
            assert!(encoded.shared_slots >= 3);
            for (row, candidate) in encoded.rows.iter().zip(&candidates) {
                assert_eq!(*row, encode(subtask, candidate));
                assert_eq!(
                    row.buckets[..encoded.shared_slots],
                    encoded.rows[0].buckets[..encoded.shared_slots]
                );
                assert_eq!(
                    row.values[..encoded.shared_slots],
                    encoded.rows[0].values[..encoded.shared_slots]
                );
            }
        }
    }
}
