//! The rule-based score of one (subtask, specialist) pair, and its upper bound used by the pick index.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use switchboard::domain::policy::ScoringWeights;
use switchboard::domain::scoring::{score, score_upper_bound, CandidateFacts};
use switchboard::domain::specialist::Availability;

fn capabilities(names: &[&str]) -> Vec<String> {
    let mut sorted: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    sorted.sort();
    sorted
}

fn bench_score(criterion: &mut Criterion) {
    let weights = ScoringWeights::default();
    let have = capabilities(&["css", "graphql", "react", "typescript", "webpack", "a11y"]);
    let required = capabilities(&["react", "typescript", "vue"]);
    criterion.bench_function("score/3 required of 6", |bencher| {
        bencher.iter(|| {
            score(
                black_box(&weights),
                black_box(&required),
                CandidateFacts {
                    capabilities: black_box(&have),
                    active: black_box(3),
                    availability: Availability::Busy,
                    performance: 0.8,
                },
            )
        })
    });
    criterion.bench_function("score_upper_bound", |bencher| {
        bencher.iter(|| {
            score_upper_bound(black_box(&weights), black_box(3), Availability::Online, 0.8)
        })
    });
}

criterion_group!(benches, bench_score);
criterion_main!(benches);
