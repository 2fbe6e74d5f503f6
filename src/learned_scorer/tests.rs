//! The engine on reports with a known answer: a planted rule is learned, checkpoints round-trip,
//! a worse model and a broken checkpoint are refused while the serving model stays.

use std::sync::Arc;

use crate::domain::learned::CandidateInfo;
use crate::domain::specialist::Availability;
use crate::domain::subtask::CompletionReport;

use super::checkpoints::{Checkpoint, CheckpointStore, MemoryCheckpoints};
use super::features::{encode, encode_candidates, SubtaskContext, SubtaskFeatures};
use super::learned::{EngineSettings, LearnedEngine};
use super::trainer::{train, TrainerSettings};
use super::EngineError;

const SPECIALISTS: [&str; 4] = ["ada", "bob", "cy", "dee"];
const CAPABILITIES: [&str; 3] = ["rust", "sql", "css"];

fn settings() -> EngineSettings {
    EngineSettings {
        trainer: TrainerSettings {
            min_examples: 100,
            epochs: 8,
            ..TrainerSettings::default()
        },
        train_every_reports: 400,
        train_every: None,
        background_training: false,
        ..EngineSettings::default()
    }
}

fn candidates() -> Vec<CandidateInfo> {
    SPECIALISTS
        .iter()
        .map(|specialist_id| CandidateInfo {
            specialist_id: specialist_id.to_string(),
            specialist_type: "general".into(),
            capabilities: CAPABILITIES.iter().map(|name| name.to_string()).collect(),
            active: 0,
            max_concurrency: 4,
            availability: Availability::Online,
            recent_successes: 0,
            recent_outcomes: 0,
            rule_performance: 0.75,
        })
        .collect()
}

fn context(capability: &str) -> SubtaskContext {
    SubtaskContext {
        specialist_type: "general".into(),
        required_capabilities: vec![capability.to_string()],
        priority: 0,
        description: None,
        estimated_duration_ms: None,
    }
}

/// The planted rule: "ada" always succeeds on rust; everything else succeeds one time in three
/// (a fixed pattern, so the test repeats exactly).
fn planted_outcome(specialist_id: &str, capability: &str, round: usize) -> bool {
    if specialist_id == "ada" && capability == "rust" {
        return true;
    }
    round.is_multiple_of(3)
}

/// Submits and reports `count` subtasks through the engine, round-robin over pairs.
fn feed(engine: &LearnedEngine, count: usize, offset: usize) {
    let candidates = candidates();
    for index in offset..offset + count {
        let capability = CAPABILITIES[index % CAPABILITIES.len()];
        let specialist_id = SPECIALISTS[(index / CAPABILITIES.len()) % SPECIALISTS.len()];
        let subtask_id = format!("t{index}");
        engine
            .factors_blocking(&subtask_id, context(capability), &candidates)
            .unwrap();
        let success = planted_outcome(specialist_id, capability, index / 12);
        engine.observe(&CompletionReport {
            subtask_id,
            specialist_id: specialist_id.into(),
            epoch: 1,
            success,
            completion_time_ms: 100,
            quality_score: if success { 0.9 } else { 0.1 },
            detail: String::new(),
            incarnation: None,
        });
    }
}

/// The serving model's P(success) for a pair.
fn success_of(engine: &LearnedEngine, specialist_id: &str, capability: &str) -> f32 {
    let candidate = candidates()
        .into_iter()
        .find(|candidate| candidate.specialist_id == specialist_id)
        .unwrap();
    let row = encode(&context(capability), &candidate);
    engine.model().expect("a model serves").predict(&[row])[0].success_probability
}

#[test]
fn learns_a_planted_rule_and_leaves_cold_start() {
    let engine = LearnedEngine::start(settings(), Arc::new(MemoryCheckpoints::default())).unwrap();
    assert_eq!(engine.status().scorer, "rules");
    assert!(engine
        .factors_blocking("t", context("rust"), &candidates())
        .unwrap()
        .is_none());
    feed(&engine, 800, 0);
    let status = engine.status();
    assert_eq!(status.scorer, "learned", "{}", status.detail);
    assert!(status.version >= 1);
    let (holdout, rules) = (status.holdout.unwrap(), status.incumbent_holdout.unwrap());
    assert!(holdout.log_loss < rules.log_loss);
    // Any factor with a model serving is a learned one.
    assert!(engine
        .factors_blocking("probe", context("rust"), &candidates())
        .unwrap()
        .is_some());
    let ada_rust = success_of(&engine, "ada", "rust");
    assert!(ada_rust > 0.85, "ada on rust: {ada_rust}");
    for (specialist_id, capability) in [("bob", "rust"), ("ada", "sql"), ("dee", "css")] {
        let other = success_of(&engine, specialist_id, capability);
        assert!(
            other < ada_rust - 0.3,
            "{specialist_id} on {capability}: {other} vs ada on rust {ada_rust}"
        );
    }
}

#[test]
fn checkpoints_round_trip_through_the_store() {
    let checkpoints = Arc::new(MemoryCheckpoints::default());
    let first = LearnedEngine::start(settings(), checkpoints.clone()).unwrap();
    feed(&first, 500, 0);
    assert_eq!(first.status().scorer, "learned");
    let saved = checkpoints.load_active().unwrap().expect("a checkpoint");
    assert_eq!(saved.version, first.status().version);
    // Another replica starting on the same store serves the same model.
    let second = LearnedEngine::start(settings(), checkpoints).unwrap();
    assert_eq!(second.status().version, saved.version);
    assert_eq!(second.status().scorer, "learned");
    for capability in CAPABILITIES {
        for specialist_id in SPECIALISTS {
            let (mine, theirs) = (
                success_of(&first, specialist_id, capability),
                success_of(&second, specialist_id, capability),
            );
            assert!((mine - theirs).abs() < 1e-6, "{mine} vs {theirs}");
        }
    }
}

#[test]
fn a_worse_model_is_not_swapped_in() {
    let engine = LearnedEngine::start(settings(), Arc::new(MemoryCheckpoints::default())).unwrap();
    feed(&engine, 500, 0);
    let before = engine.status();
    assert_eq!(before.scorer, "learned");
    let serving = engine.model().unwrap();
    // A model trained from scratch for one pass over a few of the examples.
    let weak_settings = TrainerSettings {
        min_examples: 10,
        epochs: 1,
        window: 60,
        learning_rate: 0.001,
        ..TrainerSettings::default()
    };
    let weak = train(None, Some(&serving), &engine.examples(), &weak_settings)
        .unwrap()
        .unwrap();
    assert!(!weak.accepted);
    assert!(!engine.offer(weak).unwrap());
    let after = engine.status();
    assert_eq!(after.version, before.version);
    assert_eq!(after.rejected, before.rejected + 1);
    assert!(Arc::ptr_eq(&engine.model().unwrap(), &serving));
}

#[test]
fn a_checkpoint_that_does_not_load_is_rejected_and_the_model_stays() {
    let engine = LearnedEngine::start(settings(), Arc::new(MemoryCheckpoints::default())).unwrap();
    feed(&engine, 500, 0);
    let before = engine.status();
    let probe = success_of(&engine, "ada", "rust");
    let garbage = Checkpoint {
        version: 99,
        created_at_ms: 0,
        training_set_size: 0,
        holdout: before.holdout.unwrap(),
        weights: b"not a model".to_vec(),
    };
    let error = engine.install_checkpoint(&garbage).unwrap_err();
    assert!(matches!(error, EngineError::Checkpoint(_)));
    assert!(
        error.to_string().contains("not a safetensors model"),
        "{error}"
    );
    // Valid safetensors with a tensor of the wrong shape.
    let wrong_shape =
        candle_core::Tensor::zeros((3, 3), candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap();
    let bytes = safetensors::serialize([("embed", &wrong_shape)], None).unwrap();
    let error = engine
        .install_checkpoint(&Checkpoint {
            weights: bytes,
            ..garbage
        })
        .unwrap_err();
    assert!(error.to_string().contains("tensor embed"), "{error}");
    assert_eq!(engine.status(), before);
    assert_eq!(success_of(&engine, "ada", "rust"), probe);
}

#[test]
fn the_serving_forward_pass_matches_candle() {
    let engine = LearnedEngine::start(settings(), Arc::new(MemoryCheckpoints::default())).unwrap();
    feed(&engine, 500, 0);
    let model = engine.model().unwrap();
    let rows: Vec<_> = CAPABILITIES
        .iter()
        .flat_map(|capability| {
            candidates()
                .into_iter()
                .map(move |candidate| encode(&context(capability), &candidate))
        })
        .collect();
    let served = model.predict(&rows);
    let reference = model.predict_with_candle(&rows).unwrap();
    for (fast, slow) in served.iter().zip(&reference) {
        assert!((fast.success_probability - slow.success_probability).abs() < 1e-5);
        assert!((fast.expected_quality - slow.expected_quality).abs() < 1e-5);
    }
}

#[test]
fn the_batch_forward_passes_are_the_row_forward_pass_bit_for_bit() {
    let engine = LearnedEngine::start(settings(), Arc::new(MemoryCheckpoints::default())).unwrap();
    feed(&engine, 500, 0);
    let model = engine.model().unwrap();
    let hinted = SubtaskContext {
        required_capabilities: vec!["css".into(), "rust".into()],
        priority: 700,
        description: Some("Port the billing screen to the new design system".into()),
        estimated_duration_ms: Some(90_000),
        ..context("rust")
    };
    for subtask in [context("rust"), context("sql"), hinted] {
        let rows = encode_candidates(&subtask, &candidates());
        let by_row = model.predict(&rows.rows);
        assert_eq!(model.predict_candidates(&rows), by_row);
        let features = SubtaskFeatures::new(&subtask);
        assert_eq!(model.predict_encoding(&features, &candidates()), by_row);
    }
}

#[test]
fn factors_are_the_same_scored_inline_or_on_the_inference_thread() {
    let engine = LearnedEngine::start(settings(), Arc::new(MemoryCheckpoints::default())).unwrap();
    feed(&engine, 500, 0);
    // More candidates than are scored inline: this batch goes to the inference thread.
    let many: Vec<CandidateInfo> = (0..300)
        .map(|index| CandidateInfo {
            specialist_id: format!("{}-{index}", SPECIALISTS[index % SPECIALISTS.len()]),
            ..candidates()[index % SPECIALISTS.len()].clone()
        })
        .chain(candidates())
        .collect();
    let on_thread = engine
        .factors_blocking("many", context("rust"), &many)
        .unwrap()
        .expect("a model serves");
    let inline = engine
        .factors_blocking("few", context("rust"), &candidates())
        .unwrap()
        .expect("a model serves");
    assert_eq!(on_thread.performance.len(), many.len());
    assert_eq!(inline.performance_weight, on_thread.performance_weight);
    for (specialist_id, factor) in &inline.performance {
        assert_eq!(
            on_thread.performance[specialist_id], *factor,
            "{specialist_id}"
        );
    }
}
