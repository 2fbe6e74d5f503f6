#!/usr/bin/env bash
# Drives a production-store server (Redis, optionally Postgres) with `switchboard bench` and reports
# what the bench cannot see: Redis CPU seconds, the Redis time per full cycle (INFO commandstats:
# the functions' FCALL time, which includes the commands they run, plus the commands sent
# outside them: the relay's stream reads and acknowledgements), Redis memory, and, with Postgres,
# the outbox backlog (XLEN, summed over the types' streams) every 5 s and the subtasks Postgres
# holds afterwards.
#
#   scripts/bench-production.sh [--postgres] [bench flags...]
#   (server flags in SERVE_FLAGS, e.g. SERVE_FLAGS='--retention-ms 60000')
#   e.g. scripts/bench-production.sh --agents 100 --duration 10
#        scripts/bench-production.sh --postgres --agents 100 --duration 300 --subtasks 10000000
#
# Uses target/release/switchboard (cargo build --release), redis-cli and psql, the Redis on
# $REDIS_URL (default redis://127.0.0.1:6379) and, with --postgres, a fresh database on the Postgres
# of $PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres). Resets Redis's command
# statistics (CONFIG RESETSTAT). Each run uses a fresh namespace and database, left in place.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${SWITCHBOARD_BIN:-target/release/switchboard}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
postgres=false
if [[ ${1:-} == --postgres ]]; then
  postgres=true
  shift
fi
[[ -x $BIN ]] || { echo "no $BIN: run cargo build --release first" >&2; exit 1; }

run=bench$(date +%s)$$
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
serve=(serve --listen "127.0.0.1:$port" --metrics-listen 127.0.0.1:0 --redis-url "$REDIS_URL"
  --redis-namespace "$run" --assign-rate-limit 0 --log-filter warn ${SERVE_FLAGS:-})
if $postgres; then
  psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $run"
  database_url="${PG_ADMIN_URL%/*}/$run"
  serve+=(--database-url "$database_url")
fi
rcli() { redis-cli -u "$REDIS_URL" "$@"; }
# Each specialist type's slot has its own outbox stream: the backlog is their sum.
TYPES=${SWITCHBOARD_TYPES:-frontend backend testing docs general}
outbox_len() {
  local total=0 type
  for type in $TYPES; do total=$((total + $(rcli XLEN "sb:{$run:$type}:outbox"))); done
  echo "$total"
}
redis_cpu() { rcli INFO cpu | awk -F: '/^used_cpu_(sys|user):/ { sum += $2 } END { print sum }'; }

"$BIN" "${serve[@]}" > "/tmp/$run.server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 $server 2>/dev/null || { cat "/tmp/$run.server.log" >&2; exit 1; }
  sleep 0.1
done

samples=/tmp/$run.xlen
if $postgres; then
  ( while kill -0 $server 2>/dev/null; do outbox_len; sleep 5; done ) > "$samples" &
fi
rcli CONFIG RESETSTAT > /dev/null
cpu_before=$(redis_cpu)
"$BIN" bench --addr "127.0.0.1:$port" --server-pid "$server" "$@" | tee "/tmp/$run.bench"
cpu_after=$(redis_cpu)
completed=$(sed -n 's/.*, \([0-9]*\) completed,.*/\1/p' "/tmp/$run.bench" | head -n 1)
redis_cpu_s=$(echo "$cpu_after - $cpu_before" | bc)
echo "redis CPU               ${redis_cpu_s} s ($(echo "scale=1; $redis_cpu_s * 1000000 / ${completed:-1}" | bc) us per cycle)"
rcli INFO commandstats | awk -F'[:,=]' -v cycles="${completed:-0}" '
  /^cmdstat_fcall:/ { fcall = $5; calls = $3; per = $7 }
  /^cmdstat_(xreadgroup|xack|xdel|xautoclaim|xgroup):/ { outside += $5 }
  END {
    printf "FCALL                   %s calls, %s us per call (Redis INFO)\n", calls, per
    if (cycles > 0) printf "redis time per cycle    %.1f us (FCALL %.1f + relay commands %.1f, over %d cycles)\n", (fcall + outside) / cycles, fcall / cycles, outside / cycles, cycles
  }'
used_memory() { rcli INFO memory | awk -F: '/^used_memory:/ { printf "%.1f MiB", $2 / 1048576 }'; }
echo "redis used_memory       $(used_memory) at the end of the run"
# SETTLE_SECS=N: the server keeps running (its sweeps retire finished work) N s more.
if [[ -n ${SETTLE_SECS:-} ]]; then
  sleep "$SETTLE_SECS"
  echo "redis used_memory       $(used_memory) ${SETTLE_SECS} s later"
fi
if $postgres; then
  for waited in $(seq 0 60); do
    [[ $(outbox_len) == 0 ]] && break
    sleep 1
  done
  echo "outbox backlog (XLEN)   every 5 s: $(tr '\n' ' ' < "$samples")"
  echo "                        max $(sort -n "$samples" | tail -n 1); 0 after ${waited} s once the run ended"
  echo "postgres subtasks       $(psql -At "$database_url" -c "SELECT string_agg(state || ' ' || n, ', ') FROM (SELECT state, count(*) AS n FROM subtasks GROUP BY state) s")"
fi
