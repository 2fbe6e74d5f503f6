#!/usr/bin/env bash
# Runs a command against a private three-node Redis Cluster (cluster-enabled, no replicas, no
# persistence, free ports and cluster bus ports, a temp dir; slots 0-5460, 5461-10922, 10923-16383 one range per node):
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

answers() { # answers <port> <pid>: polls PING up to 10 s while the process lives
  for _ in $(seq 200); do
    redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# Each node on a free port, with a free cluster bus port of its own (the default, port + 10,000,
# may be taken or above 65,535). A port someone takes between the probe and the bind: try again.
ports=()
bus_ports=()
for node in 0 1 2; do
  mkdir -p "$dir/$node"
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    bus_port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file nodes.conf --cluster-port "$bus_port" --save '' \
      --appendonly no --protected-mode no \
      --dir "$dir/$node" --logfile "$dir/$node/redis.log" &
    pid=$!
    if answers "$port" "$pid"; then
      pids+=("$pid")
      ports+=("$port")
      bus_ports+=("$bus_port")
      break
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [[ $attempt == 5 ]]; then
      echo "with-cluster: redis-server node $node did not start; its log:" >&2
      cat "$dir/$node/redis.log" >&2
      exit 1
    fi
  done
done
redis-cli -p "${ports[0]}" CLUSTER ADDSLOTSRANGE 0 5460 >/dev/null
redis-cli -p "${ports[1]}" CLUSTER ADDSLOTSRANGE 5461 10922 >/dev/null
redis-cli -p "${ports[2]}" CLUSTER ADDSLOTSRANGE 10923 16383 >/dev/null
redis-cli -p "${ports[1]}" CLUSTER MEET 127.0.0.1 "${ports[0]}" "${bus_ports[0]}" >/dev/null
redis-cli -p "${ports[2]}" CLUSTER MEET 127.0.0.1 "${ports[0]}" "${bus_ports[0]}" >/dev/null
for port in "${ports[@]}"; do
  poll "cluster_state:ok on port $port" bash -c \
    "redis-cli -p $port CLUSTER INFO | grep -q cluster_state:ok && redis-cli -p $port CLUSTER INFO | grep -q cluster_known_nodes:3"
done

urls=$(printf 'redis://127.0.0.1:%s,' "${ports[@]}")
SWITCHBOARD_TEST_REDIS_URL="${urls%,}" SWITCHBOARD_TEST_REDIS_CLUSTER=1 "$@"
