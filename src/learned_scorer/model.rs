//! The learned scorer: a small wide-and-deep network over hashed sparse features (candle, CPU).
//!
//! A row's features select rows of two tables: `embed` (BUCKETS x HIDDEN, summed with the feature
//! values, then bias and ReLU, then `out`: the deep part) and `wide` (BUCKETS x 2, summed: the
//! linear part, which learns per-(specialist, capability) skill from few outcomes). Two logits come
//! out: success (sigmoid: P(success)) and quality (sigmoid: expected quality in 0..1).
//! Checkpoints are safetensors bytes with exactly these five tensors.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::domain::learned::CandidateInfo;

use super::features::{CandidateRows, SparseRow, SubtaskFeatures, BUCKETS, SLOTS};
use super::EngineError;

/// Width of the hidden layer.
pub const HIDDEN: usize = 16;

const TENSOR_NAMES: [&str; 5] = ["embed", "hidden_bias", "out", "wide", "out_bias"];

/// What the model says about one (subtask, specialist) pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub success_probability: f32,
    pub expected_quality: f32,
}

/// The parameters, as tensors (trainable `Var`s during training, plain tensors when serving).
#[derive(Debug, Clone)]
pub struct Params {
    pub embed: Tensor,
    pub hidden_bias: Tensor,
    pub out: Tensor,
    pub wide: Tensor,
    pub out_bias: Tensor,
}

/// A batch of encoded rows as the forward pass wants them.
pub struct Batch {
    pub rows: usize,
    /// rows x SLOTS bucket indices, flat.
    pub buckets: Tensor,
    /// (rows x SLOTS, 1) feature values.
    pub values: Tensor,
}

impl Batch {
    pub fn new(rows: &[SparseRow]) -> Result<Self, EngineError> {
        let mut buckets = Vec::with_capacity(rows.len() * SLOTS);
        let mut values = Vec::with_capacity(rows.len() * SLOTS);
        for row in rows {
            buckets.extend_from_slice(&row.buckets);
            values.extend_from_slice(&row.values);
        }
        let count = rows.len() * SLOTS;
        Ok(Self {
            rows: rows.len(),
            buckets: Tensor::from_vec(buckets, count, &Device::Cpu)?,
            values: Tensor::from_vec(values, (count, 1), &Device::Cpu)?,
        })
    }
}

impl Params {
    /// Fresh parameters: small uniform values from a seeded generator (so runs repeat), zero biases.
    pub fn initial(seed: u64) -> Result<Self, EngineError> {
        let mut state = seed | 1;
        let mut uniform = |count: usize, scale: f32| -> Vec<f32> {
            (0..count)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
                })
                .collect()
        };
        let device = Device::Cpu;
        Ok(Self {
            embed: Tensor::from_vec(uniform(BUCKETS * HIDDEN, 0.1), (BUCKETS, HIDDEN), &device)?,
            hidden_bias: Tensor::zeros(HIDDEN, DType::F32, &device)?,
            out: Tensor::from_vec(
                uniform(HIDDEN * 2, 1.0 / (HIDDEN as f32).sqrt()),
                (HIDDEN, 2),
                &device,
            )?,
            wide: Tensor::zeros((BUCKETS, 2), DType::F32, &device)?,
            out_bias: Tensor::zeros(2, DType::F32, &device)?,
        })
    }

    /// (rows, 2) logits: success, quality.
    pub fn logits(&self, batch: &Batch) -> Result<Tensor, EngineError> {
        let embedded = self
            .embed
            .index_select(&batch.buckets, 0)?
            .broadcast_mul(&batch.values)?
            .reshape((batch.rows, SLOTS, HIDDEN))?
            .sum(1)?
            .broadcast_add(&self.hidden_bias)?
            .relu()?;
        let deep = embedded.matmul(&self.out)?;
        let wide = self
            .wide
            .index_select(&batch.buckets, 0)?
            .broadcast_mul(&batch.values)?
            .reshape((batch.rows, SLOTS, 2))?
            .sum(1)?;
        Ok((deep + wide)?.broadcast_add(&self.out_bias)?)
    }

    fn named(&self) -> [(&'static str, &Tensor); 5] {
        [
            ("embed", &self.embed),
            ("hidden_bias", &self.hidden_bias),
            ("out", &self.out),
            ("wide", &self.wide),
            ("out_bias", &self.out_bias),
        ]
    }
}

/// A trained model ready to serve.
#[derive(Debug, Clone)]
pub struct ScorerModel {
    params: Params,
    dense: DenseWeights,
}

/// The same weights as plain arrays, for serving: the forward pass of one Assign's candidates
/// touches a few dozen table rows per candidate, which a loop over the non-zero slots does without
/// materialising (rows x SLOTS x HIDDEN) tensors. `logits` (candle) stays the definition; a test
/// holds the two to the same outputs.
#[derive(Debug, Clone)]
struct DenseWeights {
    embed: Vec<f32>,
    hidden_bias: Vec<f32>,
    out: Vec<f32>,
    wide: Vec<f32>,
    out_bias: Vec<f32>,
}

/// The running sums of one row's forward pass, before the ReLU and the output layer. Slots are
/// added in row order, so the slots all of a subtask's rows start with, summed once and copied,
/// give the same bits as each whole row summed from the start.
#[derive(Debug, Clone, Copy)]
struct Sums {
    hidden: [f32; HIDDEN],
    logits: [f32; 2],
}

impl DenseWeights {
    fn of(params: &Params) -> Result<Self, EngineError> {
        let flat = |tensor: &Tensor| tensor.flatten_all()?.to_vec1::<f32>();
        Ok(Self {
            embed: flat(&params.embed)?,
            hidden_bias: flat(&params.hidden_bias)?,
            out: flat(&params.out)?,
            wide: flat(&params.wide)?,
            out_bias: flat(&params.out_bias)?,
        })
    }

    fn start(&self) -> Sums {
        let mut hidden = [0.0f32; HIDDEN];
        hidden.copy_from_slice(&self.hidden_bias);
        Sums {
            hidden,
            logits: [self.out_bias[0], self.out_bias[1]],
        }
    }

    /// Adds slots to the sums; slots with value 0 (padding) add nothing.
    fn add(&self, sums: &mut Sums, buckets: &[u32], values: &[f32]) {
        for (bucket, value) in buckets.iter().zip(values) {
            if *value == 0.0 {
                continue;
            }
            let bucket = *bucket as usize;
            let embedding = &self.embed[bucket * HIDDEN..(bucket + 1) * HIDDEN];
            for (sum, weight) in sums.hidden.iter_mut().zip(embedding) {
                *sum += value * weight;
            }
            sums.logits[0] += value * self.wide[bucket * 2];
            sums.logits[1] += value * self.wide[bucket * 2 + 1];
        }
    }

    /// ReLU, then the output layer: the two logits.
    fn finish(&self, sums: &Sums) -> [f32; 2] {
        let mut logits = sums.logits;
        for (unit, activation) in sums.hidden.iter().enumerate() {
            let activation = activation.max(0.0);
            logits[0] += activation * self.out[unit * 2];
            logits[1] += activation * self.out[unit * 2 + 1];
        }
        logits
    }

    fn logits(&self, row: &SparseRow) -> [f32; 2] {
        let mut sums = self.start();
        self.add(&mut sums, &row.buckets, &row.values);
        self.finish(&sums)
    }
}

fn sigmoid(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit).exp())
}

fn prediction([success, quality]: [f32; 2]) -> Prediction {
    Prediction {
        success_probability: sigmoid(success),
        expected_quality: sigmoid(quality),
    }
}

impl ScorerModel {
    pub fn from_params(params: &Params) -> Result<Self, EngineError> {
        // Detached copies: serving never tracks gradients, and training may go on with the vars.
        let copy = |tensor: &Tensor| tensor.detach().copy();
        Self::serving(Params {
            embed: copy(&params.embed)?,
            hidden_bias: copy(&params.hidden_bias)?,
            out: copy(&params.out)?,
            wide: copy(&params.wide)?,
            out_bias: copy(&params.out_bias)?,
        })
    }

    fn serving(params: Params) -> Result<Self, EngineError> {
        let dense = DenseWeights::of(&params)?;
        Ok(Self { params, dense })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Predictions for each row, in order (the serving path).
    pub fn predict(&self, rows: &[SparseRow]) -> Vec<Prediction> {
        rows.iter()
            .map(|row| prediction(self.dense.logits(row)))
            .collect()
    }

    /// `predict` for the rows of one subtask's candidates, the same bits: the slots all rows share
    /// are summed once, then each row's own are added to a copy.
    pub fn predict_candidates(&self, candidates: &CandidateRows) -> Vec<Prediction> {
        let Some(first) = candidates.rows.first() else {
            return Vec::new();
        };
        let shared_slots = candidates.shared_slots.min(SLOTS);
        let mut shared = self.dense.start();
        self.dense.add(
            &mut shared,
            &first.buckets[..shared_slots],
            &first.values[..shared_slots],
        );
        candidates
            .rows
            .iter()
            .map(|row| {
                debug_assert_eq!(row.buckets[..shared_slots], first.buckets[..shared_slots]);
                debug_assert_eq!(row.values[..shared_slots], first.values[..shared_slots]);
                let mut sums = shared;
                self.dense.add(
                    &mut sums,
                    &row.buckets[shared_slots..],
                    &row.values[shared_slots..],
                );
                prediction(self.dense.finish(&sums))
            })
            .collect()
    }

    /// `predict` for the candidates of one subtask, encoding each row as it goes (no rows kept):
    /// the same bits, with the subtask's slots summed once.
    pub fn predict_encoding(
        &self,
        features: &SubtaskFeatures,
        candidates: &[CandidateInfo],
    ) -> Vec<Prediction> {
        let (shared_buckets, shared_values) = features.shared();
        let mut shared = self.dense.start();
        self.dense.add(&mut shared, shared_buckets, shared_values);
        let mut predictions = Vec::with_capacity(candidates.len());
        features.for_each_candidate(candidates, |buckets, values| {
            let mut sums = shared;
            self.dense.add(&mut sums, buckets, values);
            predictions.push(prediction(self.dense.finish(&sums)));
        });
        predictions
    }

    /// `predict` through candle's forward pass (the definition the serving path must match).
    pub fn predict_with_candle(&self, rows: &[SparseRow]) -> Result<Vec<Prediction>, EngineError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let batch = Batch::new(rows)?;
        let probabilities = candle_nn::ops::sigmoid(&self.params.logits(&batch)?)?;
        let pairs: Vec<Vec<f32>> = probabilities.to_vec2()?;
        Ok(pairs
            .into_iter()
            .map(|pair| Prediction {
                success_probability: pair[0],
                expected_quality: pair[1],
            })
            .collect())
    }

    /// The checkpoint format: safetensors with the five named tensors.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, EngineError> {
        let named = self.params.named();
        let metadata = HashMap::from([("format".to_string(), "switchboard-scorer-v1".to_string())]);
        safetensors::serialize(
            named.iter().map(|(name, tensor)| (*name, *tensor)),
            Some(metadata),
        )
        .map_err(|error| EngineError::Checkpoint(format!("cannot serialise the model: {error}")))
    }

    /// Loads a checkpoint, checking every tensor's presence, type, shape and values.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, EngineError> {
        let mut tensors =
            candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|error| {
                EngineError::Checkpoint(format!("not a safetensors model: {error}"))
            })?;
        let expected: [(&str, &[usize]); 5] = [
            ("embed", &[BUCKETS, HIDDEN]),
            ("hidden_bias", &[HIDDEN]),
            ("out", &[HIDDEN, 2]),
            ("wide", &[BUCKETS, 2]),
            ("out_bias", &[2]),
        ];
        debug_assert_eq!(expected.map(|(name, _)| name), TENSOR_NAMES);
        let mut take = |name: &str, shape: &[usize]| -> Result<Tensor, EngineError> {
            let tensor = tensors
                .remove(name)
                .ok_or_else(|| EngineError::Checkpoint(format!("tensor {name} is missing")))?;
            if tensor.dtype() != DType::F32 || tensor.dims() != shape {
                return Err(EngineError::Checkpoint(format!(
                    "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                    tensor.dtype(),
                    tensor.dims()
                )));
            }
            let all_finite = tensor
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .all(|value| value.is_finite());
            if !all_finite {
                return Err(EngineError::Checkpoint(format!(
                    "tensor {name} holds values that are not finite"
                )));
            }
            Ok(tensor)
        };
        let params = Params {
            embed: take(expected[0].0, expected[0].1)?,
            hidden_bias: take(expected[1].0, expected[1].1)?,
            out: take(expected[2].0, expected[2].1)?,
            wide: take(expected[3].0, expected[3].1)?,
            out_bias: take(expected[4].0, expected[4].1)?,
        };
        Self::serving(params)
    }
}
