#!/usr/bin/env bash
# make bench-cluster: three patd nodes on one PostgreSQL 15 (docs/cluster.md,
# issue 19) side by side, in one run, with one node alone on the same
# database server. Each repetition measures, one node first, then three:
#   revoke latency   patbench revoke (4 connections, revoke and restore in
#                    turn, each fenced) on node A: p50 and p99
#   mixed on a node  patbench mixed (95% Verify of 10k hot tokens, 4% list,
#                    1% create or revoke/restore) on one node: requests/s,
#                    alone and with two more nodes in its cluster
#   aggregate        hot Verify on every node at once (16 connections each)
#                    against one node with 48: requests/s
# Ratios are medians over REPS repetitions of each repetition's ratio.
# Writes bench/results/cluster.md.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
DUR=${DUR:-4}
B=build-release
OUT=bench/results/cluster.md

PG=$(mktemp -u -d /tmp/patd-benchc-pg-XXXXXX) # outside $W (0700): the postgres user runs it
# shellcheck source=bench/common.sh
. bench/common.sh
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }

say "== PostgreSQL 15 (fsync on), 10k tokens (patseed, copied in)"
tests/lib/pgserver.sh start "$PG"
URL=$(tests/lib/pgserver.sh url "$PG" c)
$B/patseed --data-dir "$W/seed" --tokens 10000 --users 1000 --out "$W/tokens"
createdb -h "$PG" -U postgres c
$B/patd copy-store --from "rocksdb:$W/seed/db" --to "$URL" >/dev/null
KEY=$W/seed/platform.key

NODE_PID=() NODE_PORT=() NODE_HTTP=()
start_node() { # index
  local i=$1 d=$W/node$1
  mkdir -p "$d"
  rm -f "$d/port" "$d/http-port"
  $B/patd --data-dir "$d/data" --store "$URL" --platform-key-file "$KEY" --workers 32 \
    --listen 127.0.0.1:0 --port-file "$d/port" --http-listen 127.0.0.1:0 \
    --http-port-file "$d/http-port" --log-level warn --drain-grace-ms 0 2>>"$W/patd$i.log" &
  NODE_PID[i]=$!
  PIDS+=("${NODE_PID[i]}")
  for _ in $(seq 1 2000); do [ -s "$d/port" ] && [ -s "$d/http-port" ] && break; sleep 0.005; done
  NODE_PORT[i]=$(cat "$d/port")
  NODE_HTTP[i]=$(cat "$d/http-port")
  for _ in $(seq 1 2000); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${NODE_HTTP[i]}/readyz")" = 200 ] && return
    sleep 0.005
  done
  say "node $i not ready"; exit 1
}
stop_node() { kill -TERM "${NODE_PID[$1]}"; wait "${NODE_PID[$1]}" 2>/dev/null || true; }
bench() { # node, patbench flags
  local i=$1; shift
  $B/patbench --server "127.0.0.1:${NODE_PORT[i]}" --json -d "$DUR" --warmup 1 "$@"
}
revoke_lat() { bench 0 --scenario revoke --platform-key-file "$KEY" --users 1000 -c 4; }
mixed_rps() {
  bench "$1" --scenario mixed --platform-key-file "$KEY" --users 1000 --tokens-file "$W/tokens" \
    -c 50 | jget '["rps"]'
}
hot() { bench "$1" --scenario verify --tokens-file "$W/tokens" --hot 10000 -c "$2"; }

declare -A R
one_node() { # node 0 alone
  local j
  j=$(revoke_lat)
  R[r1_p50]+="$(echo "$j" | jget '["latency_us"]["p50"]') "
  R[r1_p99]+="$(echo "$j" | jget '["latency_us"]["p99"]') "
  m1=$(mixed_rps 0)
  h1=$(hot 0 48 | jget '["rps"]')
}
three_nodes() {
  local j a b
  j=$(revoke_lat)
  R[r3_p50]+="$(echo "$j" | jget '["latency_us"]["p50"]') "
  R[r3_p99]+="$(echo "$j" | jget '["latency_us"]["p99"]') "
  m3=$(mixed_rps 1)
  hot 0 16 >"$W/h0" &
  a=$!
  hot 1 16 >"$W/h1" &
  b=$!
  hot 2 16 >"$W/h2"
  wait $a $b
  h3=$(for f in "$W"/h0 "$W"/h1 "$W"/h2; do jget '["rps"]' <"$f"; done | awk '{s+=$1} END {print s}')
}
# Odd repetitions measure one node first, even ones three nodes first, so
# that neither always runs on a database just started.
for rep in $(seq 1 "$REPS"); do
  start_node 0
  if [ $((rep % 2)) = 1 ]; then
    say "== repetition $rep/$REPS: one node, then three"
    one_node
    start_node 1
    start_node 2
    three_nodes
  else
    say "== repetition $rep/$REPS: three nodes, then one"
    start_node 1
    start_node 2
    three_nodes
    stop_node 2
    stop_node 1
    one_node
  fi
  for i in 2 1 0; do kill -0 "${NODE_PID[i]}" 2>/dev/null && stop_node $i; done
  R[m1]+="$m1 "
  R[m3]+="$m3 "
  R[h1]+="$h1 "
  R[h3]+="$h3 "
  p99_1=$(echo "${R[r1_p99]}" | awk '{print $NF}')
  p99_3=$(echo "${R[r3_p99]}" | awk '{print $NF}')
  R[p99_ratio]+="$(ratio "$p99_3" "$p99_1") "
  R[m_ratio]+="$(ratio "$m3" "$m1") "
  R[h_ratio]+="$(ratio "$h3" "$h1") "
  say "   revoke p99 3/1 $(ratio "$p99_3" "$p99_1"), mixed 3/1 $(ratio "$m3" "$m1"), aggregate 3/1 $(ratio "$h3" "$h1")"
done

med() { echo "${R[$1]}" | tr ' ' '\n' | grep . | median; }
cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
{
  echo "# make bench-cluster"
  echo
  echo "Run: $(date -u +%Y-%m-%dT%H:%MZ) by \`make bench-cluster\` ($REPS repetitions; ${DUR}s per run after 1s warm-up)."
  echo "Machine: $cpu, $(nproc) cores. PostgreSQL 15 on a Unix socket (fsync on), 10k tokens;"
  echo "every node and patbench on the same cores. Lease 2000 ms (the default)."
  echo
  echo "| figure | one node | three nodes | ratio (median) | target |"
  echo "|---|---|---|---|---|"
  echo "| revoke/restore latency p50, µs (4 connections) | $(med r1_p50) | $(med r3_p50) | | |"
  echo "| revoke/restore latency p99, µs | $(med r1_p99) | $(med r3_p99) | $(med p99_ratio) | ≤ 3 |"
  echo "| mixed (95% hot Verify, 1% writes) on one node, req/s | $(med m1) | $(med m3) | $(med m_ratio) | ≥ 0.9 |"
  echo "| hot Verify, all nodes at once, req/s (aggregate) | $(med h1) | $(med h3) | $(med h_ratio) | reported |"
  echo
  echo "Three nodes share two cores here, so the aggregate cannot grow: it shows what"
  echo "three processes on one machine cost, not what three machines give. A revoke"
  echo "with three nodes waits for two acknowledgements (a NOTIFY round trip each)."
} >"$OUT"
cat "$OUT"
