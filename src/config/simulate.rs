//! `switchboard simulate`: policies compared on a seeded synthetic world.

use clap::Args;

/// Everything `switchboard simulate` can be told.
///
/// Specialists have hidden per-capability skill and speed; subtasks arrive as a seeded Poisson
/// stream needing one or two capabilities; outcomes are drawn from the hidden skill. Every policy
/// sees the same stream and the same outcome for the same (subtask, specialist). Progress goes to
/// stderr, the table (or `--json`) to stdout.
#[derive(Debug, Clone, Args)]
pub struct SimulateConfig {
    /// Seed of the world, the stream and the outcomes: the same seed repeats a run exactly.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Subtasks in the stream.
    #[arg(long, default_value_t = 10_000)]
    pub subtasks: usize,

    /// The "after" success rate counts only subtasks after this many.
    #[arg(long, default_value_t = 5_000)]
    pub warmup: usize,

    /// Specialists in the fleet (one type).
    #[arg(long, default_value_t = 24)]
    pub specialists: usize,

    /// Distinct capabilities in the world.
    #[arg(long, default_value_t = 8)]
    pub capabilities: usize,

    /// Capabilities each specialist has.
    #[arg(long, default_value_t = 3)]
    pub capabilities_per_specialist: usize,

    /// Spread of hidden skill around 0.5 (0: everyone equal; 0.9: 0.05..0.95).
    #[arg(long, default_value_t = 0.9)]
    pub skill_spread: f64,

    /// Offered load as a share of the fleet's capacity.
    #[arg(long, default_value_t = 0.7)]
    pub load: f64,

    /// max_concurrency of every specialist.
    #[arg(long, default_value_t = 2)]
    pub max_concurrency: u32,

    /// Mean time a specialist works on a subtask (virtual milliseconds).
    #[arg(long, default_value_t = 1_000.0)]
    pub mean_duration_ms: f64,

    /// Subtask index from which the skills of `--drift-share` of the specialists are redrawn
    /// (0: no drift).
    #[arg(long, default_value_t = 0)]
    pub drift_at: usize,

    /// Share of specialists whose skills change at the drift.
    #[arg(long, default_value_t = 0.5)]
    pub drift_share: f64,

    /// The learned policy retrains after this many reports.
    #[arg(long, default_value_t = 250)]
    pub train_every_reports: u64,

    /// Performance weight of the learned factor once the model has earned full trust.
    #[arg(long, default_value_t = 0.6)]
    pub learned_max_weight: f64,

    /// Write the cumulative regret plot (SVG) to this file.
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,

    /// Print exactly one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,

    /// No progress on stderr.
    #[arg(long)]
    pub quiet: bool,
}
