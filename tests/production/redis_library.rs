//! The production store's Lua library on its own private Redis: its score is `domain::score` bit
//! for bit over a grid of inputs and weights, each hot function makes at most the Redis calls it
//! was measured to make (a regression fails here), and a replica with other rules is refused.

use crate::support;

use std::collections::BTreeMap;

use redis::Value;

use support::redis_server::PrivateRedis;
use switchboard::domain::performance::window_performance;
use switchboard::domain::policy::{RoutingPolicy, ScoringWeights};
use switchboard::domain::scoring::{capability_share, score_of_factors};
use switchboard::domain::specialist::{Availability, Incarnation, Registration};
use switchboard::domain::subtask::{CompletionReport, ReleaseRequest, SubtaskSpec};
use switchboard::store::redis::library::{include, prelude};
use switchboard::store::redis::{RedisStore, RedisStoreConfig};
use switchboard::store::{Store, StoreError};

/// Runs the library's scoring (prelude, text and scoring includes) on a grid of inputs: for each
/// case its matched and required capabilities, held subtasks, availability, window successes and
/// outcomes, it returns the score as %.17g text.
const GRID_DRIVER: &str = r#"
local weights = {tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])}
local scores = {}
for i = 5, #ARGV, 6 do
  local matched, required = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local capability = 1.0
  if required > 0 then capability = matched / required end
  local score = score_of(capability, load_factor(tonumber(ARGV[i + 2])), AVAILABILITY[ARGV[i + 3]],
    clamp_unit(rule_performance(tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5]))), weights)
  scores[#scores + 1] = string.format('%.17g', score)
end
return scores
"#;

#[tokio::test]
async fn the_lua_score_is_the_domain_score_bit_for_bit() {
    let redis = PrivateRedis::start().await;
    let mut connection = redis.connection().await;
    let source = format!(
        "{}\n{}\n{}\n{}",
        prelude(),
        include("text").unwrap(),
        include("scoring").unwrap(),
        GRID_DRIVER
    );
    let capability_pairs = [
        (0, 0),
        (0, 1),
        (1, 1),
        (1, 2),
        (2, 3),
        (3, 3),
        (1, 7),
        (5, 9),
    ];
    let windows = [(0, 0), (0, 20), (20, 20), (7, 13), (1, 3)];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut compared = 0;
    for round in 0..24 {
        let parts: Vec<f64> = (0..4).map(|_| (next() % 1000) as f64 + 1.0).collect();
        let total: f64 = parts.iter().sum();
        let weights = if round == 0 {
            ScoringWeights::default()
        } else {
            ScoringWeights {
                capability: parts[0] / total,
                load: parts[1] / total,
                availability: parts[2] / total,
                performance: parts[3] / total,
            }
        };
        let mut call = redis::cmd("EVAL");
        call.arg(&source)
            .arg(0)
            .arg(weights.capability)
            .arg(weights.load);
        call.arg(weights.availability).arg(weights.performance);
        let mut expected = Vec::new();
        for (matched, required) in capability_pairs {
            for active in 0..13u32 {
                for availability in Availability::ALL {
                    for (successes, outcomes) in windows {
                        call.arg(matched).arg(required).arg(active);
                        call.arg(availability.as_str()).arg(successes).arg(outcomes);
                        expected.push(
                            score_of_factors(
                                &weights,
                                capability_share(matched, required),
                                active,
                                availability,
                                window_performance(successes, outcomes),
                            )
                            .score,
                        );
                    }
                }
            }
        }
        let scores: Vec<String> = call.query_async(&mut connection).await.unwrap();
        assert_eq!(scores.len(), expected.len());
        for (lua, rust) in scores.iter().zip(&expected) {
            let lua: f64 = lua.parse().unwrap();
            assert_eq!(
                lua.to_bits(),
                rust.to_bits(),
                "lua {lua} rust {rust} ({weights:?})"
            );
            compared += 1;
        }
    }
    assert!(compared > 40_000);
}

fn registration(id: &str, capabilities: &[&str]) -> Registration {
    Registration {
        specialist_id: Some(id.into()),
        specialist_type: "backend".into(),
        capabilities: capabilities.iter().map(|name| name.to_string()).collect(),
        max_concurrency: Some(8),
        labels: BTreeMap::new(),
        availability: Availability::Online,
        incarnation: Incarnation::Start {
            incarnation: "a1".into(),
            take_over: true,
        },
    }
}

fn spec(id: &str) -> SubtaskSpec {
    SubtaskSpec {
        subtask_id: id.into(),
        specialist_type: "backend".into(),
        required_capabilities: vec!["rust".into()],
        priority: 0,
        parent_id: None,
        depends_on: Vec::new(),
        payload: vec![1; 256],
        require_all_capabilities: false,
    }
}

/// Commands Redis ran since the last reset: (the FCALLs, every other command), from INFO
/// commandstats (commands a function runs are counted there too).
async fn calls_since_reset(redis: &PrivateRedis) -> (u64, u64) {
    let info = match redis.command(&["INFO", "commandstats"]).await {
        Value::BulkString(bytes) => String::from_utf8(bytes).unwrap(),
        Value::VerbatimString { text, .. } => text,
        other => panic!("INFO: {other:?}"),
    };
    let mut fcalls = 0;
    let mut others = 0;
    if std::env::var("SHOW_CALLS").is_ok() {
        eprintln!("{info}");
    }
    for line in info.lines() {
        let Some((name, stats)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let calls: u64 = stats
            .split(',')
            .find_map(|field| field.strip_prefix("calls="))
            .unwrap()
            .parse()
            .unwrap();
        match name {
            "fcall" => fcalls += calls,
            "config|resetstat" | "info" => {}
            _ => others += calls,
        }
    }
    (fcalls, others)
}

async fn reset(redis: &PrivateRedis) {
    redis.command(&["CONFIG", "RESETSTAT"]).await;
}

/// The common path of each hot call, counted: one round trip each, and at most the Redis calls
/// measured when the lean library was written (with Postgres's outbox on, as in production).
#[tokio::test]
async fn each_hot_call_is_one_round_trip_with_few_redis_calls() {
    let redis = PrivateRedis::start().await;
    let mut config = RedisStoreConfig::new(redis.url());
    config.outbox = true;
    let policy = RoutingPolicy::default();
    let store = RedisStore::connect(&config, &policy).unwrap();
    let _monitor = std::env::var("SHOW_CALLS").is_ok().then(|| {
        std::process::Command::new("redis-cli")
            .args(["-p", &redis.port().to_string(), "monitor"])
            .spawn()
            .unwrap()
    });
    store.prepare().await.unwrap();
    store.register(registration("s1", &["rust"])).await.unwrap();
    store
        .register(registration("s2", &["rust", "go"]))
        .await
        .unwrap();
    // Warm up: the first call of a slot decodes its policy into the library's memory.
    let warm = store.assign(spec("warm")).await.unwrap();
    let warm_holder = warm.holder.unwrap();
    store
        .report_completion(CompletionReport {
            subtask_id: "warm".into(),
            specialist_id: warm_holder.specialist_id.clone(),
            epoch: warm_holder.epoch,
            success: true,
            completion_time_ms: 5,
            quality_score: 0.5,
            detail: String::new(),
            incarnation: None,
        })
        .await
        .unwrap();

    let mut measured = Vec::new();
    reset(&redis).await;
    let view = store.assign(spec("t1")).await.unwrap();
    measured.push(("assign", calls_since_reset(&redis).await));
    let holder = view.holder.unwrap();

    reset(&redis).await;
    store
        .heartbeat(&holder.specialist_id, "a1", None)
        .await
        .unwrap();
    measured.push(("heartbeat", calls_since_reset(&redis).await));

    reset(&redis).await;
    let released = store
        .release(ReleaseRequest {
            subtask_id: "t1".into(),
            specialist_id: holder.specialist_id.clone(),
            epoch: holder.epoch,
            reason: String::new(),
            incarnation: None,
        })
        .await
        .unwrap();
    measured.push(("release", calls_since_reset(&redis).await));
    let holder = released.holder.unwrap();

    reset(&redis).await;
    store
        .report_completion(CompletionReport {
            subtask_id: "t1".into(),
            specialist_id: holder.specialist_id,
            epoch: holder.epoch,
            success: true,
            completion_time_ms: 5,
            quality_score: 0.5,
            detail: String::new(),
            incarnation: None,
        })
        .await
        .unwrap();
    measured.push(("complete", calls_since_reset(&redis).await));

    eprintln!("redis calls per call (fcalls, others): {measured:?}");
    // The numbers reached when this library was written; lower is fine, higher fails.
    let ceilings = [
        ("assign", 12),
        ("heartbeat", 5),
        // One of them the history entry of the holding's end when the release hands it on.
        ("release", 21),
        ("complete", 11),
    ];
    for ((name, (fcalls, others)), (_, ceiling)) in measured.iter().zip(ceilings) {
        assert_eq!(*fcalls, 1, "{name}: one round trip");
        assert!(
            *others <= ceiling,
            "{name} made {others} redis calls, more than {ceiling}: {measured:?}"
        );
    }
}

/// A replica whose rules differ from those the deployment's slots run under is refused, with a
/// message naming both fingerprints; once no replica with the old rules is alive, a replica with
/// the new ones takes the slots over and refiles the specialists under its weights.
#[tokio::test]
async fn a_replica_with_other_rules_is_refused_while_the_old_ones_live() {
    let redis = PrivateRedis::start().await;
    let config = RedisStoreConfig::new(redis.url());
    let old_policy = RoutingPolicy::default();
    let old = std::sync::Arc::new(RedisStore::connect(&config, &old_policy).unwrap());
    old.prepare().await.unwrap();
    old.register(registration("s1", &["rust"])).await.unwrap();
    // The old replica stays alive as a server would keep it (redis/policy.rs).
    let alive = {
        let old = old.clone();
        tokio::spawn(async move {
            loop {
                old.keep_alive().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        })
    };

    let new_policy = RoutingPolicy {
        weights: ScoringWeights {
            capability: 0.1,
            load: 0.2,
            availability: 0.3,
            performance: 0.4,
        },
        ..RoutingPolicy::default()
    };
    let new = RedisStore::connect(&config, &new_policy).unwrap();
    let refused = new.prepare().await.unwrap_err();
    let message = refused.to_string();
    assert!(
        matches!(refused, StoreError::Unavailable(_))
            && message.contains(old.fingerprint())
            && message.contains(new.fingerprint()),
        "{message}"
    );
    // Its calls are refused too, rather than run under the other rules.
    assert!(matches!(
        new.assign(spec("t1")).await,
        Err(StoreError::Unavailable(_))
    ));

    alive.abort();
    let _ = alive.await;
    old.leave().await.unwrap();
    new.prepare().await.unwrap();
    let view = new.assign(spec("t2")).await.unwrap();
    let breakdown = view.holder.unwrap().breakdown;
    assert_eq!(
        breakdown.performance.weight, 0.4,
        "scored under the new rules"
    );
    assert!(matches!(
        old.assign(spec("t3")).await,
        Err(StoreError::Unavailable(_))
    ));
}
