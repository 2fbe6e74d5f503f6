#!/usr/bin/env bash
# Runs a command against a private three-node Redis Cluster (cluster-enabled, no replicas, no
# persistence, free ports, a temp dir; slots 0-5460, 5461-10922, 10923-16383 one range per node):
# SWITCHBOARD_TEST_REDIS_URL holds the nodes' URLs and SWITCHBOARD_TEST_REDIS_CLUSTER=1, so test
# servers run with --redis-cluster. Each specialist type is one slot, so the store's scripts run
# on different nodes, and Redis refuses a `#!lua` script touching a key outside its slot.
# `make test` runs the conformance suite through it.
set -euo pipefail

dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

poll() { # poll <what> <command...>: up to 10 s
  local what=$1; shift
  for _ in $(seq 200); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  echo "with-cluster: $what did not happen; redis logs:" >&2
  cat "$dir"/*/redis.log >&2
  exit 1
}

ports=()
for node in 0 1 2; do
  port=$(free_port)
  mkdir -p "$dir/$node"
  redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-config-file nodes.conf --save '' --appendonly no --protected-mode no \
    --dir "$dir/$node" --logfile "$dir/$node/redis.log" &
  pids+=($!)
  ports+=("$port")
done
for port in "${ports[@]}"; do
  poll "redis-server answering on port $port" redis-cli -p "$port" ping
done
redis-cli -p "${ports[0]}" CLUSTER ADDSLOTSRANGE 0 5460 >/dev/null
redis-cli -p "${ports[1]}" CLUSTER ADDSLOTSRANGE 5461 10922 >/dev/null
redis-cli -p "${ports[2]}" CLUSTER ADDSLOTSRANGE 10923 16383 >/dev/null
redis-cli -p "${ports[1]}" CLUSTER MEET 127.0.0.1 "${ports[0]}" >/dev/null
redis-cli -p "${ports[2]}" CLUSTER MEET 127.0.0.1 "${ports[0]}" >/dev/null
for port in "${ports[@]}"; do
  poll "cluster_state:ok on port $port" bash -c \
    "redis-cli -p $port CLUSTER INFO | grep -q cluster_state:ok && redis-cli -p $port CLUSTER INFO | grep -q cluster_known_nodes:3"
done

urls=$(printf 'redis://127.0.0.1:%s,' "${ports[@]}")
SWITCHBOARD_TEST_REDIS_URL="${urls%,}" SWITCHBOARD_TEST_REDIS_CLUSTER=1 "$@"
