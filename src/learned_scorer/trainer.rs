//! Training on the recent window of completion reports, validated on the most recent of them.
//!
//! The window is split in arrival order: the older part trains (AdamW, seeded minibatch order,
//! warm-started from the serving model when there is one), the newest `holdout_fraction` judges.
//! The new model is accepted only if its held-out log loss beats the incumbent's: the serving
//! model, or at cold start the rule-based prior (each example keeps the rule factor it had).

use candle_core::{Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::Serialize;

use super::features::SparseRow;
use super::model::{Batch, Params, Prediction, ScorerModel};
use super::EngineError;

/// One completion report with the features its assignment had.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub row: SparseRow,
    pub success: bool,
    pub quality: f32,
    /// The rule-based performance factor of the specialist when it was picked.
    pub rule_prior: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainerSettings {
    /// Newest examples a training run looks at.
    pub window: usize,
    pub holdout_fraction: f64,
    /// Fewer examples than this: no training (the rules stay, or the model stays).
    pub min_examples: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

impl Default for TrainerSettings {
    fn default() -> Self {
        Self {
            window: 4_000,
            holdout_fraction: 0.2,
            min_examples: 200,
            epochs: 6,
            batch_size: 64,
            learning_rate: 0.02,
            seed: 7,
        }
    }
}

/// How well a model (or the rules) predicted the held-out reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct HoldoutMetrics {
    /// Mean binary cross-entropy of P(success); lower is better.
    pub log_loss: f64,
    /// Area under the ROC curve of P(success); 0.5 is guessing.
    pub auc: f64,
    /// Share of outcomes on the right side of 0.5.
    pub accuracy: f64,
    /// Mean absolute error of the expected quality.
    pub quality_mae: f64,
    pub examples: usize,
}

/// The result of one training run.
#[derive(Debug, Clone)]
pub struct Trained {
    pub model: ScorerModel,
    pub metrics: HoldoutMetrics,
    /// The serving model's (or the rules') metrics on the same hold-out.
    pub incumbent_metrics: HoldoutMetrics,
    pub training_set_size: usize,
    /// Whether it beat the incumbent and should serve.
    pub accepted: bool,
}

/// Trains a model on `examples` (oldest first), from `start` (or fresh parameters), and judges it
/// against `incumbent` (or the rules) on the hold-out; None when there are too few examples.
pub fn train(
    start: Option<&ScorerModel>,
    incumbent: Option<&ScorerModel>,
    examples: &[Example],
    settings: &TrainerSettings,
) -> Result<Option<Trained>, EngineError> {
    let window = &examples[examples.len().saturating_sub(settings.window)..];
    if window.len() < settings.min_examples.max(10) {
        return Ok(None);
    }
    let holdout_size = ((window.len() as f64 * settings.holdout_fraction) as usize).max(1);
    let (training, holdout) = window.split_at(window.len() - holdout_size);
    let start = match start {
        Some(model) => model.params().clone(),
        None => Params::initial(settings.seed)?,
    };
    let model = fit(start, training, settings)?;
    let metrics = evaluate(&model.predict(&rows(holdout)), holdout);
    let incumbent_predictions = match incumbent {
        Some(model) => model.predict(&rows(holdout)),
        None => rules_predictions(training, holdout),
    };
    let incumbent_metrics = evaluate(&incumbent_predictions, holdout);
    Ok(Some(Trained {
        accepted: metrics.log_loss < incumbent_metrics.log_loss,
        model,
        metrics,
        incumbent_metrics,
        training_set_size: training.len(),
    }))
}

fn rows(examples: &[Example]) -> Vec<SparseRow> {
    examples.iter().map(|example| example.row.clone()).collect()
}

/// The rules as a predictor: the specialist's rule factor, and the mean training quality.
fn rules_predictions(training: &[Example], holdout: &[Example]) -> Vec<Prediction> {
    let mean_quality =
        training.iter().map(|example| example.quality).sum::<f32>() / training.len().max(1) as f32;
    holdout
        .iter()
        .map(|example| Prediction {
            success_probability: example.rule_prior,
            expected_quality: mean_quality,
        })
        .collect()
}

fn fit(
    start: Params,
    training: &[Example],
    settings: &TrainerSettings,
) -> Result<ScorerModel, EngineError> {
    let var = |tensor: &Tensor| Var::from_tensor(&tensor.detach().copy()?);
    let vars = [
        var(&start.embed)?,
        var(&start.hidden_bias)?,
        var(&start.out)?,
        var(&start.wide)?,
        var(&start.out_bias)?,
    ];
    let params = Params {
        embed: vars[0].as_tensor().clone(),
        hidden_bias: vars[1].as_tensor().clone(),
        out: vars[2].as_tensor().clone(),
        wide: vars[3].as_tensor().clone(),
        out_bias: vars[4].as_tensor().clone(),
    };
    let mut optimizer = AdamW::new(
        vars.to_vec(),
        ParamsAdamW {
            lr: settings.learning_rate,
            weight_decay: 1e-4,
            ..ParamsAdamW::default()
        },
    )?;
    let mut order: Vec<usize> = (0..training.len()).collect();
    let mut shuffle_state = settings.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..settings.epochs {
        // Fisher-Yates with a seeded xorshift: the same data trains the same model.
        for index in (1..order.len()).rev() {
            shuffle_state ^= shuffle_state << 13;
            shuffle_state ^= shuffle_state >> 7;
            shuffle_state ^= shuffle_state << 17;
            order.swap(index, (shuffle_state % (index as u64 + 1)) as usize);
        }
        for chunk in order.chunks(settings.batch_size.max(1)) {
            let loss = batch_loss(&params, chunk.iter().map(|index| &training[*index]))?;
            optimizer.backward_step(&loss)?;
        }
    }
    ScorerModel::from_params(&params)
}

/// Cross-entropy of the success logit (in the stable softplus form) plus squared quality error.
fn batch_loss<'a>(
    params: &Params,
    examples: impl Iterator<Item = &'a Example>,
) -> Result<Tensor, EngineError> {
    let examples: Vec<&Example> = examples.collect();
    let rows: Vec<SparseRow> = examples.iter().map(|example| example.row.clone()).collect();
    let batch = Batch::new(&rows)?;
    let device = &candle_core::Device::Cpu;
    let successes: Vec<f32> = examples
        .iter()
        .map(|example| f32::from(u8::from(example.success)))
        .collect();
    let qualities: Vec<f32> = examples.iter().map(|example| example.quality).collect();
    let success_target = Tensor::from_vec(successes, examples.len(), device)?;
    let quality_target = Tensor::from_vec(qualities, examples.len(), device)?;
    let logits = params.logits(&batch)?;
    let success_logit = logits.narrow(1, 0, 1)?.squeeze(1)?;
    let quality_logit = logits.narrow(1, 1, 1)?.squeeze(1)?;
    let softplus = (success_logit.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let cross_entropy =
        ((success_logit.relu()? - (&success_logit * &success_target)?)? + softplus)?.mean_all()?;
    let quality_error = (candle_nn::ops::sigmoid(&quality_logit)? - quality_target)?
        .sqr()?
        .mean_all()?;
    Ok((cross_entropy + quality_error)?)
}

/// Held-out metrics of predictions against what happened.
pub fn evaluate(predictions: &[Prediction], examples: &[Example]) -> HoldoutMetrics {
    debug_assert_eq!(predictions.len(), examples.len());
    let count = examples.len().max(1) as f64;
    let mut log_loss = 0.0;
    let mut correct = 0usize;
    let mut quality_error = 0.0;
    for (prediction, example) in predictions.iter().zip(examples) {
        let probability = f64::from(prediction.success_probability).clamp(1e-6, 1.0 - 1e-6);
        log_loss -= if example.success {
            probability.ln()
        } else {
            (1.0 - probability).ln()
        };
        if (probability >= 0.5) == example.success {
            correct += 1;
        }
        quality_error += f64::from((prediction.expected_quality - example.quality).abs());
    }
    HoldoutMetrics {
        log_loss: log_loss / count,
        auc: auc(predictions, examples),
        accuracy: correct as f64 / count,
        quality_mae: quality_error / count,
        examples: examples.len(),
    }
}

/// Rank-sum AUC, ties counted half.
fn auc(predictions: &[Prediction], examples: &[Example]) -> f64 {
    let mut scored: Vec<(f32, bool)> = predictions
        .iter()
        .zip(examples)
        .map(|(prediction, example)| (prediction.success_probability, example.success))
        .collect();
    scored.sort_by(|left, right| left.0.total_cmp(&right.0));
    let positives = scored.iter().filter(|(_, success)| *success).count() as f64;
    let negatives = scored.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return 0.5;
    }
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < scored.len() {
        let mut end = start;
        while end + 1 < scored.len() && scored[end + 1].0 == scored[start].0 {
            end += 1;
        }
        let mean_rank = (start + end) as f64 / 2.0 + 1.0;
        rank_sum += mean_rank
            * scored[start..=end]
                .iter()
                .filter(|(_, success)| *success)
                .count() as f64;
        start = end + 1;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}
