# bench/common.sh: sourced by bench/run.sh and bench/cluster.sh (B set):
# the release build of what they run, a work directory W removed at exit
# (every process in PIDS killed first, and the PostgreSQL in $PG stopped if
# one was started), and the helpers say, median and jget.
scripts/install-deps.sh
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build $B -j "$(nproc)" --target patd patbench patseed >/dev/null

W=$(mktemp -d /tmp/patd-bench-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -z "${PG:-}" ] || tests/lib/pgserver.sh stop "$PG" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

say() { printf '%s\n' "$*" >&2; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
jget() { /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }
