#!/usr/bin/env bash
# bench/instructions.sh: user-space instructions per request, counted by
# valgrind's callgrind, which do not drift with the machine's load the way
# timings do. Each figure is (I(N2) - I(N1)) / (N2 - N1): the server run
# under callgrind for N1 and for N2 requests, each time on a fresh copy of
# its store, so start-up and shutdown cancel out; the steady-state cold
# row instead counts N requests between callgrind_control -z and -d, after
# a warm-up (run_patd_steady). Background work is
# counted apart (--separate-threads, and each thread's inclusive costs, in
# thread_totals): the requests, and applying the uses they leave, are
# counted; the usage flusher's writes and RocksDB's background threads run
# on a clock or on compaction debt, not per request (under callgrind's 50x
# slowdown the flusher's once-a-second batch lands on every few thousand
# requests instead of every hundred thousand), so they get a column of
# their own. Kernel time is not counted. Under valgrind OpenSSL takes its
# SSSE3/AVX2 SHA-256 (valgrind hides the SHA extensions), so a digest
# costs more here than on the machine. Prints a Markdown table;
# bench/run.sh appends it to bench/results/latest.md.
#
# Usage: bench/instructions.sh BUILD_DIR WORK_DIR SMALL_STORE SMALL_TOKENS BIG_STORE BIG_TOKENS RPORT
# IR_ONLY="hot10k http" measures only the rows named (and redis GET).
set -euo pipefail
B=$1 W=$2 SMALL=$3 SMALL_TOK=$4 BIG=$5 BIG_TOK=$6 RPORT=$7
N1=${IR_N1:-20000}
N2=${IR_N2:-100000}
CG=$W/cg
mkdir -p "$CG"

# A run's instructions, from its per-thread files: "served background".
# Background is what runs on a clock or on compaction debt rather than per
# request: RocksDB's own threads, and the usage flusher's writes
# (usage_flush_at, usage_purge_deleted) wherever they run, the flush at
# shutdown included; applying the uses to memory (usage_drain) is served,
# whichever thread does it.
BGFN=':(usage_flush_at(\.[^ ]*)?|usage_purge_deleted(\.[^ ]*)?|rocksdb::ThreadPoolImpl::Impl::BGThreadWrapper\(void\*\)) '
thread_totals() {
  local all=0 bg=0 f t x
  for f in "$1"-[0-9]*; do
    t=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
    x=$(callgrind_annotate --inclusive=yes --threshold=100 "$f" 2>/dev/null |
      { grep -E "$BGFN" || true; } | awk '{gsub(",", "", $1); s += $1} END {printf "%.0f\n", s}')
    all=$((all + t)); bg=$((bg + x))
  done
  echo "$((all - bg)) $bg"
}

# start_patd_cg OUT STORE: patd under callgrind on a fresh copy of STORE,
# its profile in OUT; sets CG_PID, and CG_PORT (the HTTP port with HTTP=1).
start_patd_cg() {
  local out=$1 store=$2
  rm -rf "$CG/store" "$CG/port" "$CG/hport" "$out" "$out"-* "$out".*
  cp -r "$store" "$CG/store"
  valgrind --tool=callgrind --separate-threads=yes --compress-strings=no --callgrind-out-file="$out" \
    "$B/patd" --data-dir "$CG/store" \
    --listen 127.0.0.1:0 --port-file "$CG/port" --http-listen 127.0.0.1:0 \
    --http-port-file "$CG/hport" --log-level warn --drain-grace-ms 0 --workers 4 \
    ${PATD_FLAGS:-} 2>/dev/null &
  CG_PID=$!
  for _ in $(seq 1 1200); do [ -s "$CG/port" ] && [ -s "$CG/hport" ] && break; sleep 0.05; done
  CG_PORT=$(cat "$CG/port")
  [ "${HTTP:-0}" = 1 ] && CG_PORT=$(cat "$CG/hport")
  return 0
}

# run_patd NAME STORE N patbench-args... -> "served background" instructions
run_patd() {
  local name=$1 store=$2 n=$3; shift 3
  start_patd_cg "$CG/$name.$n" "$store"
  "$B/patbench" --server 127.0.0.1:"$CG_PORT" -c 4 -P 16 -n "$n" "$@" >/dev/null 2>&1
  kill -TERM "$CG_PID"; wait "$CG_PID" 2>/dev/null || true
  thread_totals "$CG/$name.$n"
}

# run_patd_steady NAME STORE WARM N patbench-args... -> "served background"
# instructions of N requests, counted after WARM others (another draw) have
# filled the caches: callgrind's counters are zeroed after the warm-up
# (callgrind_control -z) and dumped after the N (-d), so one run gives the
# figure and nothing of start-up, warm-up or shutdown is in it. This is the
# state the timed cold figure measures (bench/run.sh warms it for 8 s).
run_patd_steady() {
  local name=$1 store=$2 warm=$3 n=$4; shift 4
  start_patd_cg "$CG/$name.$n" "$store"
  "$B/patbench" --server 127.0.0.1:"$CG_PORT" -c 4 -P 16 -n "$warm" --draw-seed 7 "$@" >/dev/null 2>&1
  sleep 2 # the warm-up's last uses applied and flushed
  callgrind_control -z "$CG_PID" >/dev/null
  "$B/patbench" --server 127.0.0.1:"$CG_PORT" -c 4 -P 16 -n "$n" --draw-seed 9 "$@" >/dev/null 2>&1
  callgrind_control -d "$CG_PID" >/dev/null
  kill -TERM "$CG_PID"; wait "$CG_PID" 2>/dev/null || true
  thread_totals "$CG/$name.$n.1"
}

# run_redis N -> total instructions of redis-server answering N GETs
run_redis() {
  local n=$1
  rm -f "$CG/redis.$n" "$CG/redis.$n"-*
  valgrind --tool=callgrind --separate-threads=yes --compress-strings=no --callgrind-out-file="$CG/redis.$n" \
    redis-server --port "$RPORT" \
    --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 1200); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
  redis-cli -p "$RPORT" set key:__rand_int__ "$(head -c 100 /dev/zero | tr '\0' x)" >/dev/null
  "$B/patbench" --server 127.0.0.1:"$RPORT" --scenario redis-get -c 4 -P 16 -n "$n" >/dev/null 2>&1
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  thread_totals "$CG/redis.$n"
}

# The heaviest functions by their own instructions in the N2 run: "name
# share", with the library named where the symbol is not (libcrypto's
# SHA-256 has none). callgrind_annotate reads one profile (further files
# are taken as sources to annotate), so it is the busiest thread that
# serves: the network thread for a Verify, a worker for a CreateToken.
top() {
  local f best="" most=-1 t
  for f in "$CG/$1.top"-[0-9]*; do
    t=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
    if [ "${t:-0}" -gt "$most" ]; then most=${t:-0}; best=$f; fi
  done
  callgrind_annotate --threshold=100 "$best" 2>/dev/null | /usr/bin/python3 -c '
import re, sys

def short(sig):
    """A C++ signature cut to Class::method; a C name as it is."""
    sig = re.sub(r"^(non-virtual |virtual )?thunk to ", "", sig).replace("(anonymous namespace)::", "")
    sig = re.sub(r"( \[clone [^\]]*\])+$", "", sig)
    sig = re.sub(r" const$", "", sig)
    if sig.endswith(")"):  # the argument list: the balanced (...) at the end
        depth = 0
        for i in range(len(sig) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(sig[i], 0)
            if depth == 0:
                sig = sig[:i]
                break
    out, depth = [], 0
    for c in sig:  # template arguments
        depth += {"<": 1, ">": -1}.get(c, 0)
        if depth == 0 and c not in "<>":
            out.append(c)
    sig = re.sub(r"^\S+\s+(?=\S*::)", "", "".join(out))  # a return type
    parts = sig.split("::")
    return "::".join(parts[-2:])

rows = {}  # name: share, overloads of one name summed
for line in sys.stdin:
    m = re.match(r"\s*[0-9,]+ \(\s*([0-9.]+)%\)\s+(.*?)(?: \[([^\]]*)\])?\s*$", line)
    if not m or "PROGRAM TOTALS" in line:
        continue
    pct, lib = m.group(1), m.group(3) or ""
    if float(pct) >= 99:
        continue  # a dump taken mid-run charges the frames then open (main, srv_run) in full
    fn = re.sub(r"^(\?\?\?|\S*?\.[A-Za-z]+):(?!:)", "", m.group(2))
    fn = short(fn).rstrip("\x27")
    if fn.startswith("0x") or fn == "???":
        fn = "(" + lib.split("/")[-1].split(".so")[0] + ")"
    if fn not in rows and len(rows) == 6:
        break
    rows[fn] = rows.get(fn, 0.0) + float(pct)
print(", ".join(f"{fn} {pct:.2f}%" for fn, pct in rows.items()))'
}

declare -A IR BG
# wanted NAME: whether IR_ONLY (if set) names this row.
wanted() { [ -z "${IR_ONLY:-}" ] || [[ " $IR_ONLY " == *" $1 "* ]]; }
# keep_served NAME PROFILE: the profile's per-thread files of the threads
# that serve (not the flusher, not RocksDB's own), as NAME.top-* for top().
keep_served() {
  local f
  rm -f "$CG/$1.top"-*
  for f in "$2"-[0-9]*; do
    grep -q -E '^fn=(usage_flusher|rocksdb::ThreadPoolImpl::Impl::BGThreadWrapper\(void\*\))$' "$f" || cp "$f" "$CG/$1.top-${f##*-}"
  done
}
# NAME STORE patbench-args...; SMALL_N=1 measures with a fifth of the
# requests (cold Verify and CreateToken cost 25-80 times a hot Verify, and
# under callgrind each run would take minutes).
measure() {
  local name=$1 store=$2; shift 2
  local n1=$N1 n2=$N2 a b abg bbg
  wanted "$name" || return 0
  if [ "${SMALL_N:-0}" = 1 ]; then n1=$((N1 / 5)); n2=$((N2 / 5)); fi
  read -r a abg < <(run_patd "$name" "$store" "$n1" "$@")
  read -r b bbg < <(run_patd "$name" "$store" "$n2" "$@")
  keep_served "$name" "$CG/$name.$n2"
  IR[$name]=$(( (b - a) / (n2 - n1) ))
  BG[$name]=$(( (bbg - abg) / (n2 - n1) ))
}

# NAME STORE WARM N patbench-args...: one run, counted after a warm-up.
measure_steady() {
  local name=$1 store=$2 warm=$3 n=$4 a abg; shift 4
  wanted "$name" || return 0
  read -r a abg < <(run_patd_steady "$name" "$store" "$warm" "$n" "$@")
  keep_served "$name" "$CG/$name.$n.1"
  IR[$name]=$((a / n))
  BG[$name]=$((abg / n))
}

echo "== instructions: hot Verify at 10k tokens" >&2
measure hot10k "$SMALL" --scenario verify --tokens-file "$SMALL_TOK" --hot 1000
echo "== instructions: hot Verify at 1M tokens" >&2
measure hot1m "$BIG" --scenario verify --tokens-file "$BIG_TOK" --hot 1000
echo "== instructions: cold Verify (1M tokens, cache 10k)" >&2
SMALL_N=1 PATD_FLAGS="--cache-entries 10000" measure cold "$BIG" --scenario verify-cold \
  --tokens-file "$BIG_TOK"
echo "== instructions: cold Verify, steady state (1M tokens, cache 10k, after 150k others)" >&2
PATD_FLAGS="--cache-entries 10000" measure_steady coldwarm "$BIG" 150000 "${IR_STEADY_N:-20000}" \
  --scenario verify-cold --tokens-file "$BIG_TOK"
echo "== instructions: cold Verify from RocksDB's block cache (10k tokens, cache 1000)" >&2
PATD_FLAGS="--cache-entries 1000" measure coldmem "$SMALL" --scenario verify-cold \
  --tokens-file "$SMALL_TOK"
echo "== instructions: HTTP /v1/verify" >&2
HTTP=1 measure http "$SMALL" --scenario http --tokens-file "$SMALL_TOK" --hot 1000
echo "== instructions: CreateToken" >&2
SMALL_N=1 measure create "$SMALL" --scenario create --platform-key-file "$CG/store/platform.key"
echo "== instructions: redis GET" >&2
read -r ra rabg < <(run_redis "$N1"); read -r rb rbbg < <(run_redis "$N2")
IR[redis]=$(( (rb - ra) / (N2 - N1) )); BG[redis]=$(( (rbbg - rabg) / (N2 - N1) ))
keep_served redis "$CG/redis.$N2"

echo "| request | instructions per request | ÷ redis GET | background threads, not counted | where the busiest serving thread's go (own instructions, the larger run) |"
echo "|---|---|---|---|---|"
row() { # NAME label
  [ -n "${IR[$1]:-}" ] || return 0
  printf '| %s | %s | %s | %s | %s |\n' "$2" "${IR[$1]}" \
    "$(awk -v a="${IR[$1]}" -v b="${IR[redis]}" 'BEGIN {printf "%.1f", a / b}')" "${BG[$1]}" \
    "$(top "$1")"
}
row hot10k "Verify hot, 10k tokens (1000 hot), framed, 4 conns x 16"
row hot1m "Verify hot, 1M tokens (1000 hot)"
row cold "Verify cold, 1M tokens, cache 10k (most reads the first of their block)"
row coldwarm "Verify cold, 1M tokens, cache 10k, steady state: counted after 150k other cold Verifies had loaded 98% of the hash index's blocks, as in the timed figure"
row coldmem "Verify cold, 10k tokens, cache 1000: the store read from RocksDB's block cache"
row http "HTTP /v1/verify hot, 4 conns x 16"
row create "CreateToken (synced; the fsync is kernel time, not counted)"
printf '| redis GET, same client and method | %s | 1.0 | %s | %s |\n' "${IR[redis]}" "${BG[redis]}" \
  "$(top redis)"
if [ -n "${IR[hot10k]:-}" ]; then
  echo
  met=no; [ "${IR[hot10k]}" -le 6000 ] && met=yes
  echo "Target: a hot Verify in at most 6,000 instructions (about 2x redis GET): ${IR[hot10k]}, met: $met."
fi
