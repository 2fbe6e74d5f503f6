#!/usr/bin/env bash
# Runs a command with SWITCHBOARD_TEST_REDIS_URL pointing at a private one-node Redis Cluster
# (cluster-enabled, all 16384 slots on it, no persistence, its own port and temp dir). Plain
# connections are served as on a standalone Redis, while Redis enforces Cluster's rule for the
# store's `#!lua` scripts: a script touching a key outside its type's slot fails. `make test`
# runs the conformance suite through it.
set -euo pipefail

dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
  --cluster-config-file nodes.conf --save '' --appendonly no --protected-mode no \
  --dir "$dir" --logfile "$dir/redis.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT

poll() { # poll <what> <command...>: up to 10 s
  local what=$1; shift
  for _ in $(seq 200); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  echo "with-cluster-node: $what did not happen; redis log:" >&2
  cat "$dir/redis.log" >&2
  exit 1
}
poll "redis-server answering on port $port" redis-cli -p "$port" ping
redis-cli -p "$port" CLUSTER ADDSLOTSRANGE 0 16383 >/dev/null
poll "cluster_state:ok" bash -c "redis-cli -p $port CLUSTER INFO | grep -q cluster_state:ok"

SWITCHBOARD_TEST_REDIS_URL="redis://127.0.0.1:$port" "$@"
