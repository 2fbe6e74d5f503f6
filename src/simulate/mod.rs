//! `switchboard simulate`: the real engine (embedded store, learned scorer) against a seeded
//! synthetic world, comparing routing policies on the same stream of subtasks.
//!
//! - `world`: specialists with hidden skill and speed, the subtask stream, outcomes
//! - `run`: one policy through the store on a virtual clock
//! - `report`: figures, table, JSON, the regret plot

pub mod report;
pub mod run;
pub mod world;

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::config::SimulateConfig;
use crate::learned_scorer::trainer::TrainerSettings;
use crate::learned_scorer::{EngineError, EngineSettings};
use crate::store::StoreError;

use report::{cumulative_regret, regret_svg, summarise, table, PolicySummary};
use run::{run_policy, Policy, PolicyRun};
use world::{Scenario, World};

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("invalid scenario: {0}")]
    Scenario(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// The `--json` output: `{"policies": {"random": {...}, ...}}`.
#[derive(Debug, Serialize)]
pub struct SimulationResult {
    pub policies: BTreeMap<&'static str, PolicySummary>,
}

impl SimulateConfig {
    pub fn scenario(&self) -> Result<Scenario, SimulateError> {
        if self.specialists == 0 || self.capabilities == 0 || self.subtasks == 0 {
            return Err(SimulateError::Scenario(
                "--specialists, --capabilities and --subtasks must be at least 1".into(),
            ));
        }
        if !(self.load > 0.0 && self.load.is_finite()) || self.max_concurrency == 0 {
            return Err(SimulateError::Scenario(
                "--load must be above 0 and --max-concurrency at least 1".into(),
            ));
        }
        Ok(Scenario {
            seed: self.seed,
            subtasks: self.subtasks,
            specialists: self.specialists,
            capabilities: self.capabilities,
            capabilities_per_specialist: self.capabilities_per_specialist,
            skill_spread: self.skill_spread.clamp(0.0, 1.0),
            load: self.load,
            max_concurrency: self.max_concurrency,
            mean_duration_ms: self.mean_duration_ms.max(1.0),
            drift_at: self.drift_at,
            drift_share: self.drift_share.clamp(0.0, 1.0),
        })
    }

    /// The learned engine as the simulator runs it: training inline (repeatable), by report count.
    pub fn engine_settings(&self) -> EngineSettings {
        EngineSettings {
            trainer: TrainerSettings {
                seed: self.seed,
                ..TrainerSettings::default()
            },
            train_every_reports: self.train_every_reports,
            train_every: None,
            max_performance_weight: self.learned_max_weight,
            background_training: false,
            ..EngineSettings::default()
        }
    }
}

/// Runs every policy and returns their runs, oracle last.
pub async fn simulate(config: &SimulateConfig) -> Result<Vec<PolicyRun>, SimulateError> {
    let world = std::sync::Arc::new(World::new(config.scenario()?));
    let settings = config.engine_settings();
    let mut runs = Vec::with_capacity(Policy::ALL.len());
    for policy in Policy::ALL {
        let started = Instant::now();
        let total = world.subtasks.len();
        let quiet = config.quiet;
        let run = run_policy(&world, policy, &settings, |done| {
            if !quiet && done % (total / 5).max(1) == 0 {
                eprintln!("{:<13} {done:>7}/{total} subtasks", policy.name());
            }
        })
        .await?;
        if !config.quiet {
            eprintln!(
                "{:<13} done in {:.1} s",
                policy.name(),
                started.elapsed().as_secs_f64()
            );
        }
        runs.push(run);
    }
    Ok(runs)
}

/// The command: simulate, then print the table (or JSON) and write the plot.
pub async fn main(config: SimulateConfig) -> Result<(), SimulateError> {
    let runs = simulate(&config).await?;
    let oracle = runs
        .iter()
        .find(|run| run.policy == Policy::Oracle)
        .expect("the oracle always runs");
    let summaries: Vec<(Policy, PolicySummary)> = runs
        .iter()
        .map(|run| (run.policy, summarise(run, oracle, config.warmup)))
        .collect();
    if let Some(path) = &config.plot {
        let curves: Vec<(Policy, Vec<f64>)> = runs
            .iter()
            .map(|run| (run.policy, cumulative_regret(run, oracle)))
            .collect();
        let title = format!(
            "cumulative regret, seed {}, {} specialists, {} capabilities, load {}{}",
            config.seed,
            config.specialists,
            config.capabilities,
            config.load,
            if config.drift_at > 0 {
                format!(", drift at {}", config.drift_at)
            } else {
                String::new()
            }
        );
        std::fs::write(path, regret_svg(&curves, &title)).map_err(|source| {
            SimulateError::Write {
                path: path.display().to_string(),
                source,
            }
        })?;
    }
    if config.json {
        let result = SimulationResult {
            policies: summaries
                .into_iter()
                .map(|(policy, summary)| (policy.name(), summary))
                .collect(),
        };
        println!(
            "{}",
            serde_json::to_string(&result).expect("plain numbers serialise")
        );
    } else {
        print!("{}", table(&summaries, config.warmup));
        if let Some(status) = runs.iter().find_map(|run| run.model.as_ref()) {
            println!(
                "learned model: {} version {}, {} examples, {} trainings ({} rejected), performance weight {:.2}",
                status.scorer,
                status.version,
                status.examples,
                status.trainings,
                status.rejected,
                status.performance_weight
            );
        }
    }
    Ok(())
}
