//! Model checkpoints round-trip through Postgres: saved bytes and hold-out metrics come back as
//! saved, one checkpoint is active (the newest accepted), and none before the first save.

use crate::pg;

use pg::{count, TestDb};
use switchboard::learned_scorer::checkpoints::{Checkpoint, CheckpointStore};
use switchboard::learned_scorer::trainer::HoldoutMetrics;
use switchboard::store::postgres::checkpoints::PgCheckpoints;

fn checkpoint(version: u64, weights: Vec<u8>, auc: f64) -> Checkpoint {
    Checkpoint {
        version,
        created_at_ms: 1_790_000_000_000 + version as i64,
        training_set_size: 400 * version,
        holdout: HoldoutMetrics {
            log_loss: 0.41,
            auc,
            accuracy: 0.8,
            quality_mae: 0.12,
            examples: 100,
        },
        weights,
    }
}

#[tokio::test]
async fn checkpoints_round_trip_and_one_is_active() {
    let db = TestDb::create().await;
    let client = db.migrated().await;
    let store = PgCheckpoints::new(db.url());
    assert_eq!(store.load_active().unwrap(), None, "nothing saved yet");

    let first = checkpoint(1, vec![1, 2, 3, 0, 255], 0.7);
    store.save(&first).unwrap();
    let loaded = store.load_active().unwrap().expect("the saved checkpoint");
    assert_eq!(loaded.weights, first.weights);
    assert_eq!(loaded.holdout, first.holdout);
    assert_eq!(loaded.training_set_size, first.training_set_size);
    assert_eq!(loaded.created_at_ms, first.created_at_ms);

    let second = checkpoint(2, vec![9; 4096], 0.8);
    store.save(&second).unwrap();
    let loaded = store.load_active().unwrap().expect("the newest checkpoint");
    assert_eq!(loaded.weights, second.weights);
    assert_eq!(loaded.holdout.auc, 0.8);
    assert_eq!(
        count(&client, "SELECT count(*) FROM model_checkpoints").await,
        2
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM model_checkpoints WHERE active"
        )
        .await,
        1
    );
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let store = PgCheckpoints::new("postgres://postgres@127.0.0.1:1/nowhere");
    let error = store.load_active().unwrap_err().to_string();
    assert!(error.starts_with("checkpoint storage:"), "{error}");
}
