//! The history checker: reads what Postgres recorded (every subtask's state changes in stream order,
//! every report, the subtasks table) together with what a test's clients saw, and lists every
//! anomaly it finds:
//! - a subtask held by two specialists at once (an ASSIGNED while another holding is open), or an
//!   epoch that did not grow;
//! - a change after a subtask finished;
//! - a report applied under an epoch or by a specialist that did not hold the subtask then (a
//!   stale write that took effect);
//! - an acknowledged subtask missing from the history, or whose last recorded state disagrees with
//!   the subtasks table;
//! - an assignment a watch stream delivered, or a report the API acknowledged, missing from the
//!   history (an entry lost);
//! - a specialist whose active count (as the server reports it) differs from the subtasks the
//!   history leaves it holding.
//!
//! Doubled entries cannot exist: every entry's id is its stream position, a primary key.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Client;

/// One recorded state change of a subtask.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub subtask_id: String,
    /// Stream position: (ms, seq) of the outbox entry.
    pub position: (i64, i64),
    pub state: String,
    pub specialist_id: Option<String>,
    pub epoch: i64,
}

/// One recorded report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub subtask_id: String,
    pub position: (i64, i64),
    pub specialist_id: String,
    pub epoch: i64,
}

/// What the test's clients saw.
#[derive(Debug, Default)]
pub struct Observed {
    /// Subtask ids the API acknowledged (Assign answered OK).
    pub acknowledged: BTreeSet<String>,
    /// (subtask, specialist, epoch) of every ASSIGNED event a watch stream delivered.
    pub delivered: Vec<(String, String, u64)>,
    /// (subtask, specialist, epoch) of every report the API answered OK.
    pub reported: Vec<(String, String, u64)>,
    /// Active assignments per specialist, as GetSpecialist said at the end.
    pub active: BTreeMap<String, u32>,
}

fn is_terminal(state: &str) -> bool {
    matches!(state, "COMPLETED" | "FAILED" | "CANCELLED")
}

/// Every anomaly in `changes` and `reports` (any order) against `table` (subtask -> state) and
/// `observed`; empty when the history is sound.
pub fn anomalies(
    mut changes: Vec<Change>,
    reports: &[Report],
    table: &BTreeMap<String, String>,
    observed: &Observed,
) -> Vec<String> {
    let mut found = Vec::new();
    changes.sort_by(|a, b| (&a.subtask_id, a.position).cmp(&(&b.subtask_id, b.position)));
    let mut by_subtask: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
    for change in &changes {
        by_subtask
            .entry(&change.subtask_id)
            .or_default()
            .push(change);
    }
    let mut reports_of: BTreeMap<&str, Vec<&Report>> = BTreeMap::new();
    for report in reports {
        reports_of
            .entry(&report.subtask_id)
            .or_default()
            .push(report);
    }
    let mut holding_at_end: BTreeMap<String, u32> = BTreeMap::new();
    let mut assigned: BTreeSet<(String, String, i64)> = BTreeSet::new();

    for (subtask, history) in &by_subtask {
        let mut holder: Option<(&str, i64)> = None;
        let mut last_epoch = 0;
        let mut finished = false;
        // Who held it just before each position a change happened at.
        let mut held_before: BTreeMap<(i64, i64), Option<(&str, i64)>> = BTreeMap::new();
        for change in history {
            if finished {
                found.push(format!(
                    "{subtask}: changed to {} at {:?} after it finished",
                    change.state, change.position
                ));
            }
            held_before.insert(change.position, holder);
            if change.state == "ASSIGNED" {
                let specialist = change.specialist_id.as_deref().unwrap_or_default();
                if let Some((other, other_epoch)) = holder {
                    found.push(format!(
                        "{subtask}: assigned to {specialist} (epoch {}) while {other} held it (epoch {other_epoch})",
                        change.epoch
                    ));
                }
                if change.epoch <= last_epoch {
                    found.push(format!(
                        "{subtask}: epoch {} after epoch {last_epoch}",
                        change.epoch
                    ));
                }
                last_epoch = last_epoch.max(change.epoch);
                holder = Some((specialist, change.epoch));
                assigned.insert((subtask.to_string(), specialist.to_string(), change.epoch));
            } else {
                holder = None;
                finished = is_terminal(&change.state);
            }
        }
        if let Some((specialist, _)) = holder {
            *holding_at_end.entry(specialist.to_string()).or_default() += 1;
        }
        let last = history.last().map(|change| change.state.as_str());
        match (last, table.get(*subtask)) {
            (Some(last), Some(row)) if last != row => found.push(format!(
                "{subtask}: the history ends {last}, the subtasks table says {row}"
            )),
            (Some(_), None) => found.push(format!("{subtask}: no row in the subtasks table")),
            _ => {}
        }
        for report in reports_of.get(subtask).into_iter().flatten() {
            match held_before.get(&report.position) {
                Some(Some((specialist, epoch)))
                    if *specialist == report.specialist_id && *epoch == report.epoch => {}
                Some(held) => found.push(format!(
                    "{subtask}: a report by {} under epoch {} took effect while {held:?} held it",
                    report.specialist_id, report.epoch
                )),
                None => found.push(format!(
                    "{subtask}: a report at {:?} with no state change beside it",
                    report.position
                )),
            }
        }
    }
    for subtask in &observed.acknowledged {
        if !by_subtask.contains_key(subtask.as_str()) {
            found.push(format!(
                "{subtask}: acknowledged, but absent from the history"
            ));
        }
    }
    for (subtask, specialist, epoch) in &observed.delivered {
        if !assigned.contains(&(subtask.clone(), specialist.clone(), *epoch as i64)) {
            found.push(format!(
                "{subtask}: delivered to {specialist} under epoch {epoch}, not in the history"
            ));
        }
    }
    let recorded: BTreeSet<(&str, &str, i64)> = reports
        .iter()
        .map(|report| {
            (
                report.subtask_id.as_str(),
                report.specialist_id.as_str(),
                report.epoch,
            )
        })
        .collect();
    for (subtask, specialist, epoch) in &observed.reported {
        if !recorded.contains(&(subtask.as_str(), specialist.as_str(), *epoch as i64)) {
            found.push(format!(
                "{subtask}: report by {specialist} under epoch {epoch} acknowledged, not in the history"
            ));
        }
    }
    for (specialist, active) in &observed.active {
        let held = holding_at_end.get(specialist).copied().unwrap_or(0);
        if held != *active {
            found.push(format!(
                "{specialist}: the server counts {active} active, the history leaves it holding {held}"
            ));
        }
    }
    found
}

/// Reads the whole history of the database `client` is on and checks it against `observed`.
pub async fn check(client: &Client, observed: &Observed) -> Vec<String> {
    let changes = client
        .query(
            "SELECT subtask_id, event_ms, event_seq, state, specialist_id, epoch \
             FROM assignment_history",
            &[],
        )
        .await
        .expect("read assignment_history")
        .iter()
        .map(|row| Change {
            subtask_id: row.get("subtask_id"),
            position: (row.get("event_ms"), row.get("event_seq")),
            state: row.get("state"),
            specialist_id: row.get("specialist_id"),
            epoch: row.get("epoch"),
        })
        .collect();
    let reports: Vec<Report> = client
        .query(
            "SELECT subtask_id, event_ms, event_seq, specialist_id, epoch FROM performance_reports",
            &[],
        )
        .await
        .expect("read performance_reports")
        .iter()
        .map(|row| Report {
            subtask_id: row.get("subtask_id"),
            position: (row.get("event_ms"), row.get("event_seq")),
            specialist_id: row.get("specialist_id"),
            epoch: row.get("epoch"),
        })
        .collect();
    let table = client
        .query("SELECT subtask_id, state FROM subtasks", &[])
        .await
        .expect("read subtasks")
        .iter()
        .map(|row| (row.get("subtask_id"), row.get("state")))
        .collect();
    anomalies(changes, &reports, &table, observed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(subtask: &str, ms: i64, state: &str, holder: Option<(&str, i64)>) -> Change {
        Change {
            subtask_id: subtask.into(),
            position: (ms, 0),
            state: state.into(),
            specialist_id: holder.map(|(specialist, _)| specialist.to_string()),
            epoch: holder.map_or(0, |(_, epoch)| epoch),
        }
    }

    fn report(subtask: &str, ms: i64, specialist: &str, epoch: i64) -> Report {
        Report {
            subtask_id: subtask.into(),
            position: (ms, 0),
            specialist_id: specialist.into(),
            epoch,
        }
    }

    fn table(rows: &[(&str, &str)]) -> BTreeMap<String, String> {
        rows.iter()
            .map(|(id, state)| (id.to_string(), state.to_string()))
            .collect()
    }

    #[test]
    fn a_sound_history_has_no_anomalies() {
        let changes = vec![
            change("t", 1, "QUEUED", None),
            change("t", 2, "ASSIGNED", Some(("a", 1))),
            change("t", 3, "QUEUED", None),
            change("t", 4, "ASSIGNED", Some(("b", 2))),
            change("t", 5, "COMPLETED", Some(("b", 2))),
        ];
        let observed = Observed {
            acknowledged: ["t".to_string()].into(),
            delivered: vec![("t".into(), "a".into(), 1), ("t".into(), "b".into(), 2)],
            reported: vec![("t".into(), "b".into(), 2)],
            active: [("a".to_string(), 0), ("b".to_string(), 0)].into(),
        };
        let found = anomalies(
            changes,
            &[report("t", 5, "b", 2)],
            &table(&[("t", "COMPLETED")]),
            &observed,
        );
        assert!(found.is_empty(), "{found:#?}");
    }

    /// Planted faults, as a store without fencing would record them: each one is reported.
    #[test]
    fn planted_faults_are_caught() {
        let changes = vec![
            // Double holding: assigned to b while a still holds it (no change in between).
            change("double", 1, "ASSIGNED", Some(("a", 1))),
            change("double", 2, "ASSIGNED", Some(("b", 2))),
            // A stale report took effect: a held epoch 1, b holds epoch 2, a's report finishes it.
            change("stale", 1, "ASSIGNED", Some(("a", 1))),
            change("stale", 2, "QUEUED", None),
            change("stale", 3, "ASSIGNED", Some(("b", 2))),
            change("stale", 4, "COMPLETED", Some(("a", 1))),
            // A change after it finished.
            change("after", 1, "CANCELLED", None),
            change("after", 2, "ASSIGNED", Some(("c", 1))),
        ];
        let observed = Observed {
            acknowledged: ["double", "stale", "after", "lost"]
                .map(String::from)
                .into(),
            delivered: vec![("gone".into(), "a".into(), 7)],
            reported: vec![("gone".into(), "a".into(), 7)],
            active: [("a".to_string(), 3)].into(),
        };
        let found = anomalies(
            changes,
            &[report("stale", 4, "a", 1)],
            &table(&[
                ("double", "ASSIGNED"),
                ("stale", "COMPLETED"),
                ("after", "CANCELLED"),
            ]),
            &observed,
        );
        let text = found.join("\n");
        for expected in [
            "double: assigned to b (epoch 2) while a held it (epoch 1)",
            "stale: a report by a under epoch 1 took effect while Some((\"b\", 2)) held it",
            "after: changed to ASSIGNED at (2, 0) after it finished",
            "after: the history ends ASSIGNED, the subtasks table says CANCELLED",
            "lost: acknowledged, but absent from the history",
            "gone: delivered to a under epoch 7, not in the history",
            "gone: report by a under epoch 7 acknowledged, not in the history",
            "a: the server counts 3 active, the history leaves it holding 0",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }
}
