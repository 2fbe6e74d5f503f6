//! What the simulator prints: per-policy figures as a table or one JSON object, and the
//! cumulative regret against the oracle as a hand-written SVG plot.

use std::fmt::Write as _;

use serde::Serialize;

use super::run::{Policy, PolicyRun};

/// The figures of one policy.
#[derive(Debug, Clone, Serialize)]
pub struct PolicySummary {
    pub success_rate: f64,
    /// Success rate over the subtasks after the warm-up (the first `warmup` subtasks).
    pub success_rate_after_warmup: f64,
    pub mean_quality: f64,
    /// Expected successes lost against the oracle over the run: the sum over subtasks of the
    /// oracle's chosen success probability minus this policy's.
    pub regret: f64,
    pub p95_wait_ms: i64,
    /// Time-weighted mean of max/mean active subtasks over the specialists.
    pub load_imbalance: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<u64>,
}

/// Cumulative regret after each subtask.
pub fn cumulative_regret(run: &PolicyRun, oracle: &PolicyRun) -> Vec<f64> {
    let mut total = 0.0;
    run.chosen_probability
        .iter()
        .zip(&oracle.chosen_probability)
        .map(|(mine, best)| {
            if mine.is_finite() && best.is_finite() {
                total += best - mine;
            }
            total
        })
        .collect()
}

pub fn summarise(run: &PolicyRun, oracle: &PolicyRun, warmup: usize) -> PolicySummary {
    let count = run.success.len().max(1) as f64;
    let rate = |outcomes: &[bool]| {
        outcomes.iter().filter(|success| **success).count() as f64 / outcomes.len().max(1) as f64
    };
    let mut waits = run.wait_ms.clone();
    waits.sort_unstable();
    let p95_index = ((waits.len() as f64 * 0.95).ceil() as usize).saturating_sub(1);
    PolicySummary {
        success_rate: rate(&run.success),
        success_rate_after_warmup: rate(&run.success[warmup.min(run.success.len())..]),
        mean_quality: run.quality.iter().sum::<f64>() / count,
        regret: cumulative_regret(run, oracle)
            .last()
            .copied()
            .unwrap_or(0.0),
        p95_wait_ms: waits.get(p95_index).copied().unwrap_or(0),
        load_imbalance: run.load_imbalance,
        model_version: run.model.as_ref().map(|status| status.version),
    }
}

pub fn table(summaries: &[(Policy, PolicySummary)], warmup: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<13} {:>8} {:>12} {:>8} {:>9} {:>11} {:>9}",
        "policy",
        "success",
        format!("after {warmup}"),
        "quality",
        "regret",
        "p95 wait ms",
        "max/mean"
    );
    for (policy, summary) in summaries {
        let _ = writeln!(
            out,
            "{:<13} {:>7.1}% {:>11.1}% {:>8.3} {:>9.1} {:>11} {:>9.2}",
            policy.name(),
            100.0 * summary.success_rate,
            100.0 * summary.success_rate_after_warmup,
            summary.mean_quality,
            summary.regret,
            summary.p95_wait_ms,
            summary.load_imbalance
        );
    }
    out
}

const COLOURS: [&str; 5] = ["#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#7f7f7f"];

/// Cumulative regret of each policy against the subtask index, as a standalone SVG.
pub fn regret_svg(curves: &[(Policy, Vec<f64>)], title: &str) -> String {
    let (width, height, margin) = (720.0, 420.0, 60.0);
    let points = curves
        .iter()
        .map(|(_, curve)| curve.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let top = curves
        .iter()
        .flat_map(|(_, curve)| curve.iter().copied())
        .fold(1.0_f64, f64::max);
    let x = |index: usize| margin + (width - 2.0 * margin) * index as f64 / (points - 1) as f64;
    let y = |value: f64| height - margin - (height - 2.0 * margin) * value.max(0.0) / top;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="14">{title}</text>"#,
        width / 2.0
    );
    let _ = writeln!(
        svg,
        r#"<line x1="{margin}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{margin}" y1="{margin}" x2="{margin}" y2="{b}" stroke="black"/>"#,
        b = height - margin,
        r = width - margin
    );
    for tick in 0..=4 {
        let value = top * f64::from(tick) / 4.0;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{value:.0}</text>"#,
            margin - 6.0,
            y(value) + 4.0
        );
        let index = (points - 1) * tick as usize / 4;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{index}</text>"#,
            x(index),
            height - margin + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">subtasks</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">cumulative regret (expected successes lost vs oracle)</text>"#,
        width / 2.0,
        height - 16.0,
        height / 2.0,
        height / 2.0
    );
    let step = (points / 400).max(1);
    for (position, (policy, curve)) in curves.iter().enumerate() {
        let colour = COLOURS[position % COLOURS.len()];
        let path: Vec<String> = curve
            .iter()
            .enumerate()
            .filter(|(index, _)| index % step == 0 || *index + 1 == curve.len())
            .map(|(index, value)| format!("{:.1},{:.1}", x(index), y(*value)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let legend_y = margin + 16.0 * position as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{legend_y}" x2="{lx2}" y2="{legend_y}" stroke="{colour}" stroke-width="2"/><text x="{tx}" y="{ty}">{}</text>"#,
            policy.name(),
            lx = margin + 12.0,
            lx2 = margin + 36.0,
            tx = margin + 42.0,
            ty = legend_y + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}
