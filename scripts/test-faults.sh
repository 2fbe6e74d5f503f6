#!/usr/bin/env bash
# The seeded fault scenarios of tests/soak (fault_scenario, process_faults, cluster_faults,
# postgres_outage) over many seeds: a line per run, then one summary row per scenario. `make
# test-faults`; SEEDS=N for another count (default 20; the minute-long Postgres outage runs 3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seeds=${SEEDS:-20}
cargo test --test soak --no-run

# scenario filter | its description in the table | seeds (default: all of them)
scenarios=(
  "fault_scenario::|Redis stopped twice (2 s), Postgres cut (3 s), one replica cut off from Redis (2 s); two in-process replicas, six agents, mixed load"
  "process_faults::|one replica process SIGKILLed and restarted three times, Redis (appendfsync always) SIGKILLed and restarted twice; two replica processes, six agents, mixed load"
  "cluster_faults::|three-node Redis Cluster: two nodes stopped in turn (2 s each), Postgres cut (3 s); two in-process replicas, six agents, mixed load"
  "postgres_outage::|Postgres down for 60 s; two in-process replicas, six agents, mixed load spread over the outage|3"
)
rows=()
for scenario in "${scenarios[@]}"; do
  IFS='|' read -r filter description count <<<"$scenario"
  runs=0 subtasks=0 anomalies=0 worst=0
  for seed in $(seq 1 "${count:-$seeds}"); do
    if ! out=$(SWITCHBOARD_FAULT_SEED=$seed cargo test -q --test soak "$filter" -- --nocapture 2>&1); then
      log=$(mktemp -t "test-faults-${filter%::}-$seed-XXXX.log")
      printf '%s\n' "$out" >"$log"
      echo "$filter seed $seed FAILED (whole output: $log):" >&2
      grep -A12 "panicked at" <<<"$out" | grep -v "^ *[0-9]*: \|^ *at " | head -40 >&2
      exit 1
    fi
    line=$(grep -E '^seed [0-9]+:' <<<"$out")
    echo "$filter $line"
    acknowledged=$(sed -E 's/^seed [0-9]+: ([0-9]+) acknowledged.*/\1/' <<<"$line")
    found=$(sed -E 's/.* ([0-9]+) anomalies.*/\1/' <<<"$line")
    recovery=$(sed -E 's/.*worst recovery ([0-9]+) ms.*/\1/' <<<"$line")
    runs=$((runs + 1))
    subtasks=$((subtasks + acknowledged))
    anomalies=$((anomalies + found))
    if ((recovery > worst)); then worst=$recovery; fi
  done
  rows+=("| $description | $runs | $subtasks | $anomalies | $worst ms |")
done
echo
echo "| fault | runs | subtasks | anomalies | worst recovery |"
echo "| --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
