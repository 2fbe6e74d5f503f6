//! The score formula and how the best specialist is chosen: factors, weights, ties, capability rules,
//! fallback to `general`, queueing when nobody is free, the performance factor.

use crate::support;

use support::*;

/// Asserts one factor of a breakdown: value, weight and points = 100 x value x weight.
#[track_caller]
fn assert_factor(factor: &Option<pb::ScoreFactor>, value: f64, weight: f64, what: &str) {
    let factor = factor
        .as_ref()
        .unwrap_or_else(|| panic!("{what} factor missing"));
    assert_close(factor.value, value, &format!("{what}.value"));
    assert_close(factor.weight, weight, &format!("{what}.weight"));
    assert_close(
        factor.points,
        100.0 * value * weight,
        &format!("{what}.points"),
    );
}

/// Asserts the score and that the breakdown's points add up to it.
#[track_caller]
fn assert_score(assignment: &pb::Assignment, expected: f64) {
    assert_close(assignment.score, expected, "score");
    let breakdown = assignment
        .breakdown
        .as_ref()
        .expect("breakdown is set with the score");
    let sum: f64 = [
        &breakdown.capability,
        &breakdown.load,
        &breakdown.availability,
        &breakdown.performance,
    ]
    .iter()
    .map(|factor| factor.as_ref().expect("factor").points)
    .sum();
    assert_close(sum, assignment.score, "sum of breakdown points");
}

fn load_value(assignment: &pb::Assignment) -> f64 {
    assignment
        .breakdown
        .as_ref()
        .unwrap()
        .load
        .as_ref()
        .unwrap()
        .value
}

#[tokio::test]
async fn idle_online_newcomer_with_every_capability_scores_97_5() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("sc-new", "frontend", &["react", "css"]).await;
    let assignment = c
        .assign_simple("sc-task", "frontend", &["react", "css"])
        .await;
    assert_assigned_to(&assignment, "sc-new");
    assert_eq!(assignment.routed_type, "frontend");
    assert_eq!(assignment.attempt, 1);
    assert_eq!(
        assignment.queue_position, 0,
        "queue_position only while QUEUED"
    );
    assert!(assignment.assigned_at.is_some());
    assert_score(&assignment, 97.5);
    let breakdown = &assignment.breakdown.as_ref().unwrap();
    assert_factor(&breakdown.capability, 1.0, 0.4, "capability");
    assert_factor(&breakdown.load, 1.0, 0.3, "load");
    assert_factor(&breakdown.availability, 1.0, 0.2, "availability");
    assert_factor(&breakdown.performance, 0.75, 0.1, "performance");

    // GetAssignment reports the same score.
    let stored = c.get("sc-task").await;
    assert_close(stored.score, 97.5, "stored score");
    assert_eq!(stored.epoch, assignment.epoch);
}

#[tokio::test]
async fn no_required_capabilities_counts_as_full_capability() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("nc-1", "docs", &[]).await;
    let assignment = c.assign_simple("nc-task", "docs", &[]).await;
    assert_assigned_to(&assignment, "nc-1");
    assert_score(&assignment, 97.5);
    assert_factor(
        &assignment.breakdown.as_ref().unwrap().capability,
        1.0,
        0.4,
        "capability",
    );
}

#[tokio::test]
async fn capability_factor_is_the_share_of_required_capabilities() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("cs-1", "frontend", &["react"]).await;
    let assignment = c
        .assign_simple("cs-task", "frontend", &["react", "css", "typescript"])
        .await;
    assert_assigned_to(&assignment, "cs-1");
    let capability = 1.0 / 3.0;
    assert_factor(
        &assignment.breakdown.as_ref().unwrap().capability,
        capability,
        0.4,
        "capability",
    );
    assert_score(&assignment, 100.0 * (0.4 * capability + 0.3 + 0.2 + 0.075));

    c.register("cs-2", "backend", &["rust", "sql", "grpc", "k8s"])
        .await;
    let half = c
        .assign_simple("cs-task-2", "backend", &["rust", "sql", "go", "java"])
        .await;
    assert_assigned_to(&half, "cs-2");
    assert_score(&half, 100.0 * (0.4 * 0.5 + 0.3 + 0.2 + 0.075));
}

#[tokio::test]
async fn load_factor_follows_the_bands() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register_full("lb-1", "backend", &["rust"], 20, Availability::Online)
        .await;
    // Active count before each hand-out: 0..=10.
    let expected = [1.0, 0.8, 0.8, 0.6, 0.6, 0.4, 0.4, 0.4, 0.4, 0.4, 0.1, 0.1];
    for (active, load) in expected.iter().enumerate() {
        let assignment = c
            .assign_simple(&format!("lb-task-{active}"), "backend", &["rust"])
            .await;
        assert_assigned_to(&assignment, "lb-1");
        assert_close(
            load_value(&assignment),
            *load,
            &format!("load factor with {active} active"),
        );
        assert_score(&assignment, 100.0 * (0.4 + 0.3 * load + 0.2 + 0.075));
    }
    assert_eq!(
        c.specialist("lb-1").await.active_assignments,
        expected.len() as u32
    );
}

#[tokio::test]
async fn availability_factor_per_state() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let cases = [
        ("frontend", Availability::Online, 1.0),
        ("backend", Availability::Idle, 0.9),
        ("testing", Availability::Busy, 0.7),
        ("docs", Availability::Away, 0.3),
    ];
    for (specialist_type, availability, factor) in cases {
        let id = format!("av-{specialist_type}");
        c.register_full(&id, specialist_type, &["x"], 0, availability)
            .await;
        let assignment = c
            .assign_simple(
                &format!("av-task-{specialist_type}"),
                specialist_type,
                &["x"],
            )
            .await;
        assert_assigned_to(&assignment, &id);
        assert_factor(
            &assignment.breakdown.as_ref().unwrap().availability,
            factor,
            0.2,
            &format!("availability {availability:?}"),
        );
        assert_score(&assignment, 100.0 * (0.4 + 0.3 + 0.2 * factor + 0.075));
    }

    // OFFLINE gets no work at all.
    c.register_full("av-offline", "general", &["x"], 0, Availability::Offline)
        .await;
    let queued = c.assign_simple("av-task-general", "general", &["x"]).await;
    assert_state(&queued, AssignmentState::Queued);
    assert_eq!(queued.specialist_id, "");
    assert_eq!(queued.score, 0.0);
    assert_eq!(queued.epoch, 0);
    assert!(queued.breakdown.is_none(), "no breakdown without a holder");
}

#[tokio::test]
async fn the_best_score_wins_even_when_away() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    // AWAY with every capability: 40 + 30 + 6 + 7.5 = 83.5
    // ONLINE with half of them:   20 + 30 + 20 + 7.5 = 77.5
    c.register_full(
        "best-away",
        "frontend",
        &["react", "css"],
        0,
        Availability::Away,
    )
    .await;
    c.register_full("best-half", "frontend", &["react"], 0, Availability::Online)
        .await;
    let assignment = c
        .assign_simple("best-task", "frontend", &["react", "css"])
        .await;
    assert_assigned_to(&assignment, "best-away");
    assert_score(&assignment, 83.5);

    // With only react required both have full capability and ONLINE wins: 97.5 vs 83.5 - 30*0.2.
    let second = c.assign_simple("best-task-2", "frontend", &["react"]).await;
    assert_assigned_to(&second, "best-half");
    assert_score(&second, 97.5);
}

#[tokio::test]
async fn ties_go_to_rotation_then_fewer_active() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("tie-z", "backend", &[]).await;
    let t1 = c.assign_simple("tie-1", "backend", &[]).await;
    assert_assigned_to(&t1, "tie-z");
    c.register("tie-a", "backend", &[]).await;
    // tie-a is idle: a better load factor.
    let t2 = c.assign_simple("tie-2", "backend", &[]).await;
    assert_assigned_to(&t2, "tie-a");
    // Both hold one (same band, same score): assigned longest ago wins over the smaller id.
    let t3 = c.assign_simple("tie-3", "backend", &[]).await;
    assert_assigned_to(&t3, "tie-z");
    assert_close(t3.score, t2.score - 0.3 * 20.0, "same load band 0.8");
    // tie-z holds 2, tie-a holds 1: same band 0.8, fewer active wins.
    let t4 = c.assign_simple("tie-4", "backend", &[]).await;
    assert_assigned_to(&t4, "tie-a");
    // Now tie-a (assigned most recently) is made lighter: fewer active beats rotation.
    c.cancel("tie-2").await;
    assert_eq!(c.specialist("tie-a").await.active_assignments, 1);
    assert_eq!(c.specialist("tie-z").await.active_assignments, 2);
    let t5 = c.assign_simple("tie-5", "backend", &[]).await;
    assert_assigned_to(&t5, "tie-a");
    assert_close(t5.score, t3.score, "equal scores");
}

#[tokio::test]
async fn ties_between_never_used_specialists_go_to_the_smaller_id() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("tid-b", "testing", &["pytest"]).await;
    c.register("tid-a", "testing", &["pytest"]).await;
    let first = c.assign_simple("tid-1", "testing", &["pytest"]).await;
    assert_assigned_to(&first, "tid-a");
    let second = c.assign_simple("tid-2", "testing", &["pytest"]).await;
    assert_assigned_to(&second, "tid-b");
}

#[tokio::test]
async fn at_least_one_capability_is_required_by_default() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("al-vue", "frontend", &["vue"]).await;
    // Nobody of frontend has react and there is no general specialist: queued on frontend.
    let none = c.assign_simple("al-react", "frontend", &["react"]).await;
    assert_state(&none, AssignmentState::Queued);
    assert_eq!(none.routed_type, "frontend");
    assert_eq!(none.queue_position, 1);
    // One of two is enough.
    let one = c
        .assign_simple("al-one", "frontend", &["vue", "svelte"])
        .await;
    assert_assigned_to(&one, "al-vue");
    assert_factor(
        &one.breakdown.as_ref().unwrap().capability,
        0.5,
        0.4,
        "capability",
    );
    // A react specialist arrives: the queued subtask is handed to it.
    c.register("al-react-dev", "frontend", &["react"]).await;
    assert_assigned_to(&c.get("al-react").await, "al-react-dev");
}

#[tokio::test]
async fn require_all_capabilities_excludes_partial_matches() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("ra-partial", "frontend", &["react"]).await;
    let mut request = task("ra-task", "frontend", &["react", "css"]);
    request.require_all_capabilities = true;
    let queued = c.assign(request).await;
    assert_state(&queued, AssignmentState::Queued);
    assert_eq!(queued.routed_type, "frontend");
    assert_eq!(c.specialist("ra-partial").await.active_assignments, 0);

    // Without the flag the partial match is eligible.
    let relaxed = c
        .assign_simple("ra-relaxed", "frontend", &["react", "css"])
        .await;
    assert_assigned_to(&relaxed, "ra-partial");

    c.register("ra-full", "frontend", &["react", "css", "html"])
        .await;
    let assigned = c.get("ra-task").await;
    assert_assigned_to(&assigned, "ra-full");
    assert_factor(
        &assigned.breakdown.as_ref().unwrap().capability,
        1.0,
        0.4,
        "capability",
    );
}

#[tokio::test]
async fn falls_back_to_general_when_no_specialist_of_the_type_has_the_capabilities() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("fb-front", "frontend", &["react"]).await;
    c.register_full(
        "fb-general",
        "general",
        &["python"],
        1,
        Availability::Online,
    )
    .await;

    let fallback = c.assign_simple("fb-python", "frontend", &["python"]).await;
    assert_assigned_to(&fallback, "fb-general");
    assert_eq!(fallback.routed_type, "general");
    let (_, subtask) = c.get_full("fb-python").await;
    assert_eq!(
        subtask.specialist_type, "frontend",
        "the requested type is kept on the subtask"
    );

    // The general specialist is full: the next one queues on general's queue.
    let queued = c
        .assign_simple("fb-python-2", "frontend", &["python"])
        .await;
    assert_state(&queued, AssignmentState::Queued);
    assert_eq!(queued.routed_type, "general");
    assert_eq!(c.queued_ids("general").await, strings(&["fb-python-2"]));
    assert!(c.queued_ids("frontend").await.is_empty());

    // A capable frontend specialist, even if busy or full, keeps the subtask on frontend.
    let front_work = c.assign_simple("fb-react", "frontend", &["react"]).await;
    assert_assigned_to(&front_work, "fb-front");
    assert_eq!(front_work.routed_type, "frontend");

    // Nobody anywhere has the capability: it waits on the requested type.
    let nowhere = c.assign_simple("fb-cobol", "frontend", &["cobol"]).await;
    assert_state(&nowhere, AssignmentState::Queued);
    assert_eq!(nowhere.routed_type, "frontend");
}

#[tokio::test]
async fn fallback_can_be_turned_off() {
    let server = TestServer::start_with(&["--fallback-type", ""]).await;
    let mut c = server.clients.clone();
    c.register("nf-general", "general", &["python"]).await;
    let queued = c.assign_simple("nf-python", "frontend", &["python"]).await;
    assert_state(&queued, AssignmentState::Queued);
    assert_eq!(queued.routed_type, "frontend");
}

#[tokio::test]
async fn queued_when_nobody_is_free() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register_full("qf-1", "testing", &["pytest"], 1, Availability::Online)
        .await;
    let first = c.assign_simple("qf-task-1", "testing", &["pytest"]).await;
    assert_assigned_to(&first, "qf-1");
    let second = c.assign_simple("qf-task-2", "testing", &["pytest"]).await;
    assert_state(&second, AssignmentState::Queued);
    assert_eq!(second.queue_position, 1);
    assert_eq!(second.specialist_id, "");
    assert_eq!(second.epoch, 0);
    assert!(second.assigned_at.is_none(), "no assigned_at while queued");
    assert_eq!(second.routed_type, "testing");
}

#[tokio::test]
async fn custom_weights_change_the_score() {
    let server = TestServer::start_with(&[
        "--weight-capability",
        "0.25",
        "--weight-load",
        "0.25",
        "--weight-availability",
        "0.25",
        "--weight-performance",
        "0.25",
    ])
    .await;
    let mut c = server.clients.clone();
    c.register_full("cw-1", "backend", &["rust"], 0, Availability::Idle)
        .await;
    let assignment = c.assign_simple("cw-task", "backend", &["rust", "go"]).await;
    assert_assigned_to(&assignment, "cw-1");
    // 100 x 0.25 x (0.5 + 1.0 + 0.9 + 0.75) = 78.75
    assert_score(&assignment, 78.75);
    let breakdown = assignment.breakdown.as_ref().unwrap();
    assert_factor(&breakdown.capability, 0.5, 0.25, "capability");
    assert_factor(&breakdown.load, 1.0, 0.25, "load");
    assert_factor(&breakdown.availability, 0.9, 0.25, "availability");
    assert_factor(&breakdown.performance, 0.75, 0.25, "performance");

    let status = c.model_status().await;
    let weights = status.weights.expect("weights");
    assert_close(weights.capability, 0.25, "capability weight");
    assert_close(weights.load, 0.25, "load weight");
    assert_close(weights.availability, 0.25, "availability weight");
    assert_close(weights.performance, 0.25, "performance weight");
}

#[tokio::test]
async fn default_model_status() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    let status = c.model_status().await;
    assert_eq!(status.scorer, "rules");
    let weights = status.weights.expect("weights");
    assert_close(weights.capability, 0.4, "capability weight");
    assert_close(weights.load, 0.3, "load weight");
    assert_close(weights.availability, 0.2, "availability weight");
    assert_close(weights.performance, 0.1, "performance weight");
    assert_close(status.performance_prior, 0.75, "prior");
    assert_eq!(status.performance_window, 20);
}

#[tokio::test]
async fn weights_that_do_not_add_up_refuse_to_start() {
    let args = server_args(&["--weight-capability", "0.9"]);
    let config = switchboard::config::ServeConfig::from_args(&args).expect("flags parse");
    assert!(
        switchboard::server::start(config).await.is_err(),
        "weights adding up to 1.5 must be refused"
    );
}

#[tokio::test]
async fn performance_factor_tracks_reported_outcomes() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("pf-1", "docs", &["markdown"]).await;
    let outcomes = [(true, 0.9, 100), (true, 0.7, 200), (false, 0.2, 600)];
    for (n, (success, quality, time_ms)) in outcomes.iter().enumerate() {
        let held = c
            .assign_simple(&format!("pf-task-{n}"), "docs", &["markdown"])
            .await;
        assert_assigned_to(&held, "pf-1");
        c.perf
            .report_completion(pb::ReportCompletionRequest {
                subtask_id: held.subtask_id.clone(),
                specialist_id: "pf-1".into(),
                epoch: held.epoch,
                success: *success,
                completion_time_ms: *time_ms,
                quality_score: *quality,
                detail: String::new(),
                incarnation: c.incarnations.get("pf-1"),
            })
            .await
            .expect("report");
    }
    let performance = c
        .perf
        .get_performance(pb::GetPerformanceRequest {
            specialist_id: "pf-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(performance.specialist_id, "pf-1");
    assert_eq!(performance.completed, 3);
    assert_eq!(performance.succeeded, 2);
    assert_eq!(performance.recent_outcomes, 3);
    assert_close(performance.success_rate, 2.0 / 3.0, "success rate");
    assert_close(
        performance.mean_quality,
        (0.9 + 0.7 + 0.2) / 3.0,
        "mean quality",
    );
    assert_close(
        performance.mean_completion_time_ms,
        300.0,
        "mean completion time",
    );
    // (2 successes + 1.5) / (3 outcomes + 2)
    assert_close(performance.performance, 0.7, "performance factor");
    assert_close(
        c.specialist("pf-1").await.performance,
        0.7,
        "Specialist.performance",
    );

    let next = c.assign_simple("pf-next", "docs", &["markdown"]).await;
    assert_factor(
        &next.breakdown.as_ref().unwrap().performance,
        0.7,
        0.1,
        "performance",
    );
    assert_score(&next, 40.0 + 30.0 + 20.0 + 7.0);

    // A newcomer (0.75) now beats the below-average performer.
    c.report(&next, false).await;
    c.register("pf-2", "docs", &["markdown"]).await;
    let newcomer = c.assign_simple("pf-after", "docs", &["markdown"]).await;
    assert_assigned_to(&newcomer, "pf-2");

    // A fresh specialist has a summary with no history.
    let fresh = c
        .perf
        .get_performance(pb::GetPerformanceRequest {
            specialist_id: "pf-2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fresh.completed, 0);
    assert_close(fresh.performance, 0.75, "newcomer prior");
}

#[tokio::test]
async fn a_proven_performer_beats_a_newcomer() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register("pp-proven", "backend", &["rust"]).await;
    for n in 0..3 {
        let held = c
            .assign_simple(&format!("pp-warmup-{n}"), "backend", &["rust"])
            .await;
        c.report(&held, true).await;
    }
    // (3 + 1.5) / (3 + 2) = 0.9
    c.register("pp-newcomer", "backend", &["rust"]).await;
    let assignment = c.assign_simple("pp-task", "backend", &["rust"]).await;
    assert_assigned_to(&assignment, "pp-proven");
    assert_score(&assignment, 40.0 + 30.0 + 20.0 + 9.0);
}

#[tokio::test]
async fn an_offline_but_capable_specialist_keeps_the_subtask_on_its_type() {
    let server = TestServer::start().await;
    let mut c = server.clients.clone();
    c.register_full(
        "ok-front",
        "frontend",
        &["python"],
        0,
        Availability::Offline,
    )
    .await;
    c.register("ok-general", "general", &["python"]).await;
    let queued = c.assign_simple("ok-task", "frontend", &["python"]).await;
    assert_state(&queued, AssignmentState::Queued);
    assert_eq!(
        queued.routed_type, "frontend",
        "a registered capable specialist of the type exists, whatever its availability"
    );
    c.heartbeat("ok-front", Availability::Online).await;
    assert_assigned_to(&c.get("ok-task").await, "ok-front");
}
