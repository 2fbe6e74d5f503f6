//! Randomised operation sequences on the embedded state, checking its invariants after every step.

use std::collections::{BTreeMap, HashMap};

use crate::domain::learned::LearnedFactors;
use crate::domain::policy::RoutingPolicy;
use crate::domain::specialist::{capabilities_suffice, Availability, Incarnation, Registration};
use crate::domain::subtask::{CompletionReport, ReleaseRequest, SubtaskSpec, SubtaskState};

use super::state::Machine;

/// A small deterministic generator (xorshift), so failures replay from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const CAPABILITIES: [&str; 4] = ["react", "css", "rust", "sql"];
const TYPES: [&str; 2] = ["frontend", "general"];

fn check_invariants(state: &Machine, now_ms: i64) {
    for specialist in state.specialists.values() {
        assert!(
            specialist.active.len() <= specialist.max_concurrency as usize,
            "{} holds {} > {}",
            specialist.specialist_id,
            specialist.active.len(),
            specialist.max_concurrency
        );
        for subtask_id in &specialist.active {
            let record = &state.subtasks[subtask_id];
            assert_eq!(
                record.state,
                SubtaskState::Assigned,
                "{subtask_id} held but not assigned"
            );
            assert_eq!(
                record.holder.as_ref().unwrap().specialist_id,
                specialist.specialist_id
            );
        }
    }
    let mut queued = 0;
    for (subtask_id, record) in &state.subtasks {
        match record.state {
            SubtaskState::Assigned => {
                let holder = record.holder.as_ref().expect("assigned without holder");
                assert!(state.specialists[&holder.specialist_id]
                    .active
                    .contains(subtask_id));
                assert!(record.queue_key.is_none());
            }
            SubtaskState::Queued => {
                queued += 1;
                let key = record.queue_key.expect("queued without key");
                assert_eq!(state.queues[&record.routed_type].get(key), Some(subtask_id));
                assert!(record.holder.is_none());
                // No head-of-line blocking: nobody eligible right now could take it.
                assert!(
                    state.pick(record, now_ms).is_none(),
                    "{subtask_id} queued while servable"
                );
            }
            SubtaskState::Blocked => assert!(!record.waiting_on.is_empty()),
            _ => assert!(record.queue_key.is_none()),
        }
    }
    let queue_entries: usize = state.queues.values().map(|queue| queue.len()).sum();
    assert_eq!(queue_entries, queued);
    check_indexes(state, now_ms);
}

/// The indexes agree with brute force: the free index lists exactly the specialists with room,
/// and the indexed pick and capability check give what scanning everyone gives.
fn check_indexes(state: &Machine, now_ms: i64) {
    let indexed: usize = state.index.free.values().map(|free| free.len()).sum();
    let with_room = state
        .specialists
        .values()
        .filter(|specialist| {
            specialist.availability != Availability::Offline
                && specialist.active.len() < specialist.max_concurrency as usize
        })
        .count();
    assert_eq!(indexed, with_room, "free index size");
    for record in state.subtasks.values() {
        if record.state.is_terminal() {
            continue;
        }
        assert_eq!(
            state.pick(record, now_ms),
            state.pick_by_scan(record, now_ms),
            "indexed pick differs for {}",
            record.subtask.spec.subtask_id
        );
        let spec = &record.subtask.spec;
        for specialist_type in TYPES {
            let by_scan = state.specialists.values().any(|specialist| {
                specialist.specialist_type == specialist_type
                    && capabilities_suffice(
                        &specialist.capabilities,
                        &spec.required_capabilities,
                        spec.require_all_capabilities,
                    )
            });
            assert_eq!(
                state.any_capable(
                    specialist_type,
                    &spec.required_capabilities,
                    spec.require_all_capabilities
                ),
                by_scan
            );
        }
    }
}

/// Factors as a model might give them: any value in 0..1 per candidate, any weight.
fn learned_factors(
    state: &Machine,
    spec: &SubtaskSpec,
    now_ms: i64,
    rng: &mut Rng,
) -> LearnedFactors {
    let mut performance = HashMap::new();
    for candidate in state.candidates(spec, now_ms) {
        assert!(candidate.active < candidate.max_concurrency);
        if rng.below(4) != 0 {
            performance.insert(candidate.specialist_id, rng.below(101) as f64 / 100.0);
        }
    }
    LearnedFactors {
        performance_weight: rng.below(11) as f64 / 10.0,
        performance,
    }
}

fn run(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let policy = RoutingPolicy {
        specialist_types: TYPES.map(String::from).to_vec(),
        max_attempts: 2,
        lease_ttl_ms: 1_000,
        ..RoutingPolicy::default()
    };
    let mut state = Machine::new(policy);
    let mut now_ms: i64 = 1_000_000;
    let mut subtask_count = 0;
    for _ in 0..steps {
        now_ms += rng.below(200) as i64;
        let specialist_ids: Vec<String> = state.specialists.keys().cloned().collect();
        let subtask_ids: Vec<String> = state.subtasks.keys().cloned().collect();
        match rng.below(10) {
            0 => {
                let specialist_type = rng.pick(&TYPES).to_string();
                let mut capabilities: Vec<String> = (0..1 + rng.below(2))
                    .map(|_| rng.pick(&CAPABILITIES).to_string())
                    .collect();
                capabilities.sort();
                capabilities.dedup();
                let slot = rng.below(6);
                let specialist_id = format!("s{slot}");
                // Half update the live incarnation, the rest start a new one (some taking over).
                let incarnation = match state.specialists.get(&specialist_id) {
                    Some(live) if rng.below(2) == 0 => Incarnation::Keep(live.incarnation.clone()),
                    _ => Incarnation::Start {
                        incarnation: format!("i{now_ms}"),
                        take_over: rng.below(2) == 0,
                    },
                };
                let _ = state.register(
                    Registration {
                        specialist_id: Some(specialist_id),
                        specialist_type,
                        capabilities,
                        // Fixed per id: lowering it on re-register legitimately leaves a specialist over.
                        max_concurrency: Some(1 + (slot % 3) as u32),
                        labels: BTreeMap::new(),
                        availability: Availability::Online,
                        incarnation,
                    },
                    now_ms,
                );
            }
            1 if !specialist_ids.is_empty() => {
                let specialist_id =
                    &specialist_ids[rng.below(specialist_ids.len() as u64) as usize];
                let availability = [None, Some(Availability::Busy), Some(Availability::Offline)]
                    [rng.below(3) as usize];
                let incarnation = state.specialists[specialist_id].incarnation.clone();
                state
                    .heartbeat(specialist_id, &incarnation, availability, now_ms)
                    .unwrap();
            }
            2 if !specialist_ids.is_empty() && rng.below(4) == 0 => {
                let specialist_id =
                    &specialist_ids[rng.below(specialist_ids.len() as u64) as usize];
                state.deregister(specialist_id, now_ms).unwrap();
            }
            3..=5 => {
                subtask_count += 1;
                let mut depends_on: Vec<String> = Vec::new();
                if !subtask_ids.is_empty() && rng.below(3) == 0 {
                    depends_on
                        .push(subtask_ids[rng.below(subtask_ids.len() as u64) as usize].clone());
                }
                let mut required: Vec<String> = (0..rng.below(3))
                    .map(|_| rng.pick(&CAPABILITIES).to_string())
                    .collect();
                required.sort();
                required.dedup();
                let spec = SubtaskSpec {
                    subtask_id: format!("t{subtask_count}"),
                    specialist_type: "frontend".into(),
                    required_capabilities: required,
                    priority: rng.below(3) as i32,
                    parent_id: None,
                    depends_on,
                    payload: Vec::new(),
                    require_all_capabilities: rng.below(2) == 0,
                };
                // Half the subtasks come with learned factors for the candidates the store names
                // (some left out, so the rule-based fallback is exercised too).
                let learned =
                    (rng.below(2) == 0).then(|| learned_factors(&state, &spec, now_ms, &mut rng));
                state.assign_with(spec, learned, now_ms).unwrap();
            }
            6 | 7 => {
                let held: Vec<(String, String, u64)> = state
                    .subtasks
                    .values()
                    .filter_map(|record| {
                        let holder = record.holder.as_ref()?;
                        (record.state == SubtaskState::Assigned).then(|| {
                            (
                                record.subtask.spec.subtask_id.clone(),
                                holder.specialist_id.clone(),
                                holder.epoch,
                            )
                        })
                    })
                    .collect();
                if let Some((subtask_id, specialist_id, epoch)) = held
                    .get(rng.below(held.len().max(1) as u64) as usize)
                    .cloned()
                {
                    // The holder's incarnation, or (sometimes) none: fenced by the epoch alone.
                    let incarnation = (rng.below(2) == 0)
                        .then(|| state.specialists[&specialist_id].incarnation.clone());
                    if rng.below(4) == 0 {
                        state
                            .release(
                                ReleaseRequest {
                                    subtask_id,
                                    specialist_id,
                                    epoch,
                                    reason: String::new(),
                                    incarnation,
                                },
                                now_ms,
                            )
                            .unwrap();
                    } else {
                        let success = rng.below(5) != 0;
                        state
                            .report_completion(
                                CompletionReport {
                                    subtask_id,
                                    specialist_id,
                                    epoch,
                                    success,
                                    completion_time_ms: 10,
                                    quality_score: 0.5,
                                    detail: String::new(),
                                    incarnation,
                                },
                                now_ms,
                            )
                            .unwrap();
                    }
                }
            }
            8 if !subtask_ids.is_empty() && rng.below(3) == 0 => {
                let subtask_id = &subtask_ids[rng.below(subtask_ids.len() as u64) as usize];
                let _ = state.cancel(subtask_id, "test", now_ms);
            }
            _ => {
                state.expire_leases(now_ms);
            }
        }
        check_invariants(&state, now_ms);
    }
    // Everything routed to a type whose specialists could serve it was served or is waiting fairly.
    let servable_waiting = state.subtasks.values().filter(|record| {
        record.state == SubtaskState::Queued
            && state.specialists.values().any(|specialist| {
                specialist.specialist_type == record.routed_type
                    && specialist.free_slots(now_ms) > 0
                    && capabilities_suffice(
                        &specialist.capabilities,
                        &record.subtask.spec.required_capabilities,
                        record.subtask.spec.require_all_capabilities,
                    )
                    && !record.excluded.contains(&specialist.specialist_id)
            })
    });
    assert_eq!(servable_waiting.count(), 0);
}

#[test]
fn invariants_hold_over_random_sequences() {
    for seed in 1..=40u64 {
        run(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 600);
    }
}
