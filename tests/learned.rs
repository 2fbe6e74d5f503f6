//! Learned scoring end to end: GetModelStatus leaves the rules once enough reports trained a model
//! that beats them, and `switchboard simulate --json` runs a small scenario with the real engine.

mod support;

use std::process::Command;

use support::*;

/// A specialist that always succeeds on "rust" and one that always fails on it, both also holding
/// "sql" where they succeed every other time: a pattern the model can learn and the rules cannot.
fn outcome(specialist_id: &str, capability: &str, round: usize) -> bool {
    match (specialist_id, capability) {
        ("ls-good", "rust") => true,
        ("ls-bad", "rust") => false,
        _ => round.is_multiple_of(2),
    }
}

#[tokio::test]
async fn model_status_moves_from_rules_to_learned_after_enough_reports() {
    let server = TestServer::start_with(&[
        "--scorer",
        "learned",
        "--train-every-reports",
        "100",
        "--train-every-secs",
        "0",
        "--train-min-examples",
        "80",
    ])
    .await;
    let mut c = server.clients.clone();
    let status = c.model_status().await;
    assert_eq!(status.scorer, "rules");
    assert_eq!(status.model_version, 0);
    assert!(status.detail.contains("cold start"), "{}", status.detail);

    for specialist_id in ["ls-good", "ls-bad"] {
        c.register(specialist_id, "backend", &["rust", "sql"]).await;
    }
    for round in 0..300 {
        let capability = if round % 3 == 0 { "sql" } else { "rust" };
        let mut request = task(&format!("ls-{round}"), "backend", &[capability]);
        request.description = format!("change the {capability} code");
        request.estimated_duration_ms = Some(1_000);
        let assignment = c.assign(request).await;
        assert_state(&assignment, AssignmentState::Assigned);
        let success = outcome(&assignment.specialist_id, capability, round);
        c.report(&assignment, success).await;
    }
    let status = poll_until("a learned model to serve", EVENTUALLY, || {
        let mut clients = c.clone();
        async move {
            let status = clients.model_status().await;
            (status.scorer == "learned").then_some(status)
        }
    })
    .await;
    assert!(status.model_version >= 1);
    assert!(status.training_set_size >= 80);
    assert!(status.examples >= 100);
    assert!(status.last_trained_at.is_some());
    let holdout = status.holdout.expect("hold-out metrics");
    assert!(holdout.examples > 0 && holdout.log_loss.is_finite());
    assert!(status.learned_performance_weight >= 0.1);

    // Rust work now goes to the specialist that succeeds at it while both have room.
    let assignment = c.assign_simple("ls-after", "backend", &["rust"]).await;
    assert_assigned_to(&assignment, "ls-good");
}

#[test]
fn simulate_json_smoke() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "simulate",
            "--json",
            "--quiet",
            "--seed",
            "3",
            "--subtasks",
            "600",
            "--warmup",
            "300",
            "--specialists",
            "8",
            "--capabilities",
            "4",
            "--train-every-reports",
            "150",
        ])
        .output()
        .expect("switchboard simulate runs");
    assert!(
        output.status.success(),
        "simulate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let result: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("not one JSON object ({error}): {stdout}"));
    let policies = result["policies"].as_object().expect("policies");
    let names: Vec<&str> = policies.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["learned", "least_loaded", "oracle", "random", "rules"],
        "policy names"
    );
    for (name, figures) in policies {
        for field in [
            "success_rate",
            "mean_quality",
            "regret",
            "p95_wait_ms",
            "load_imbalance",
        ] {
            assert!(figures[field].is_number(), "{name}.{field} in {figures}");
        }
        let success_rate = figures["success_rate"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&success_rate));
    }
    assert_eq!(policies["oracle"]["regret"].as_f64(), Some(0.0));
    // The oracle knows the hidden skills: nobody beats it by more than noise, random is worst.
    let rate = |name: &str| policies[name]["success_rate"].as_f64().unwrap();
    assert!(rate("oracle") > rate("random"));
}
