#!/usr/bin/env bash
# make test-image: the container image built, run and checked for real
# (issue 21), with docker where an engine answers, else podman in a private
# image store under build-image/ (nothing else on the machine is touched).
#   - builds the image (and the Debian base images if missing);
#   - runs it on free ports on the host network and waits for the
#     healthcheck; creates a user and a token with patctl inside;
#   - verifies the token from the host's own build; restarts the container
#     on the same volume and verifies again;
#   - patd runs as uid 10001 and its files are 10001's, mode 0600;
#   - the healthcheck turns unhealthy when patd stops answering (SIGSTOP);
#   - SIGTERM stops it with exit 0 within 5 s; no secret in its logs;
#   - compose.yaml: patd and patbench on a named volume (bridge network);
#   - its cluster profile: the PostgreSQL image (Debian 12's postgresql-15)
#     built, three nodes on it; a token made on one verifies on the others
#     and, revoked, is refused by them at once; patbench across them;
#   - every container, volume and image it made is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
BUILD=${BUILD:-build}
HOST_PATCTL="$ROOT/$BUILD/patctl"
T0=$(date +%s)
IMAGE_DIR="$ROOT/build-image"
. scripts/container-env.sh
if [ "$ENGINE" = podman ]; then
  STORE="$IMAGE_DIR/test-store"
  mkdir -p "$STORE"
  cat > "$IMAGE_DIR/test-storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$STORE/graph"
runroot = "$STORE/run"
EOF
  export CONTAINERS_STORAGE_CONF="$IMAGE_DIR/test-storage.conf"
fi

ID=$$
IMG="patd-test:$ID"
NAME="patd-test-$ID"
VOL="patd-test-$ID"
PROJECT="patdtest$ID"
CPROJECT="patdcl$ID"
FAILS=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

cleanup() {
  set +e
  kill -CONT "$(engine inspect -f '{{.State.Pid}}' "$NAME" 2>/dev/null)" 2>/dev/null
  engine rm -f -t 0 "$NAME" >/dev/null 2>&1
  if [ -n "${COMPOSE:-}" ]; then
    PATD_IMAGE=$IMG $COMPOSE -p "$PROJECT" down -v >/dev/null 2>&1
    PATD_IMAGE=$IMG $COMPOSE -p "$CPROJECT" down -v >/dev/null 2>&1
  fi
  engine network rm -f "${PROJECT}_default" "${CPROJECT}_default" >/dev/null 2>&1 # podman-compose leaves it
  engine rmi -f "${PG_IMG:-x}" >/dev/null 2>&1
  engine volume rm -f "$VOL" >/dev/null 2>&1
  engine rmi -f "$IMG" >/dev/null 2>&1
  if [ "$ENGINE" = podman ]; then
    podman rm -a -f >/dev/null 2>&1
    podman rmi -a -f >/dev/null 2>&1
    podman volume prune -f >/dev/null 2>&1
    rm -rf "$STORE" "$IMAGE_DIR/test-storage.conf"
  fi
  rm -rf "$TMP"
}
TMP=$(mktemp -d)
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
health() { # 0 if the container's healthcheck passes now
  if [ "$ENGINE" = podman ]; then
    podman healthcheck run "$NAME" >/dev/null 2>&1
  else
    for _ in $(seq 1 40); do
      s=$(docker inspect -f '{{.State.Health.Status}}' "$NAME")
      [ "$s" = healthy ] && return 0
      [ "$s" = unhealthy ] && return 1
      sleep 0.5
    done
    return 1
  fi
}
wait_healthy() {
  for _ in $(seq 1 40); do health && return 0; sleep 0.5; done
  return 1
}
in_box() { engine exec "$NAME" "$@"; }
if [ "$ENGINE" = podman ]; then
  # No systemd here to schedule healthchecks: podman says so on every
  # run, stop and rm; the test runs the check itself (podman healthcheck run).
  engine() { podman "$@" 2> >(grep -v 'systemd connection' >&2); }
fi

echo "== building the image ($ENGINE)"
scripts/base-images.sh
VERSION=$(sed -n 's/^project(patd VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
bargs=(build --network host --build-arg "VERSION=$VERSION" -t "$IMG")
[ "$ENGINE" = podman ] && bargs+=(--format docker --pull=never)
B0=$(date +%s)
engine "${bargs[@]}" . > "$TMP/build.log" 2>&1 || { cat "$TMP/build.log"; exit 1; }
size=$(engine image inspect "$IMG" --format '{{.Size}}')
echo "image built in $(( $(date +%s) - B0 )) s: $((size / 1000000)) MB"
check "the image runs as uid/gid 10001" \
  test "$(engine image inspect "$IMG" --format '{{.Config.User}}')" = "10001:10001"
check "the image has a healthcheck" \
  test -n "$(engine image inspect "$IMG" --format '{{if .Config.Healthcheck}}{{.Config.Healthcheck.Test}}{{end}}')"
check "the image stops with SIGTERM" \
  test "$(engine image inspect "$IMG" --format '{{.Config.StopSignal}}')" = "SIGTERM"
check "the image carries OCI labels" \
  test "$(engine image inspect "$IMG" --format '{{index .Config.Labels "org.opencontainers.image.version"}}')" = "$VERSION"

echo "== running it on the host network"
PORT=$(free_port)
HPORT=$(free_port)
engine volume create "$VOL" >/dev/null
start() {
  engine run -d --name "$NAME" --network host -v "$VOL:/data" "$IMG" \
    --listen "127.0.0.1:$PORT" --http-listen "127.0.0.1:$HPORT" >/dev/null
}
start
check "the healthcheck passes on the port patd was given ($PORT)" wait_healthy
check "patd runs as uid 10001" test "$(in_box id -u)" = 10001
check "its files are uid 10001's, mode 0600" \
  test "$(in_box stat -c '%u %a' /data/platform.key)" = "10001 600"
check "its data directory is 0700" test "$(in_box stat -c '%a' /data)" = 700

in_box patctl --addr-file /data/patd.addr --platform-key-file /data/platform.key \
  users upsert alice >/dev/null
in_box patctl --addr-file /data/patd.addr --platform-key-file /data/platform.key --as alice \
  tokens create ci --expires 30d > "$TMP/created" 2>&1 || { cat "$TMP/created"; exit 1; }
grep -o 'patp_[0-9A-Za-z]*' "$TMP/created" | head -1 > "$TMP/token"
check "a token was created inside the container" test -s "$TMP/token"
verify() { "$HOST_PATCTL" --server "127.0.0.1:$PORT" verify < "$TMP/token" >/dev/null 2>&1; }
check "the token verifies from the host's own patctl" verify

engine restart -t 10 "$NAME" >/dev/null
check "after a restart of the container (same volume): healthy" wait_healthy
check "and the token still verifies" verify

PID=$(engine inspect -f '{{.State.Pid}}' "$NAME")
kill -STOP "$PID"
if health; then bad "the healthcheck fails while patd does not answer"; else ok "the healthcheck fails while patd does not answer"; fi
kill -CONT "$PID"
check "and passes again once it answers" wait_healthy

S0=$(date +%s%N)
engine stop -t 10 "$NAME" >/dev/null
ms=$(( ($(date +%s%N) - S0) / 1000000 ))
code=$(engine inspect -f '{{.State.ExitCode}}' "$NAME")
check "SIGTERM: exit 0 within 5 s (exit $code after $ms ms)" test "$code" = 0 -a "$ms" -lt 5000
engine logs "$NAME" > "$TMP/logs" 2>&1
secret=$(cat "$TMP/token")
key=$(engine run --rm -v "$VOL:/data" --entrypoint cat "$IMG" /data/platform.key | head -1)
check "the logs hold no token and no platform key" \
  bash -c "[ -n '$key' ] && ! grep -qF '$secret' '$TMP/logs' && ! grep -qF '$key' '$TMP/logs'"
check "the logs say it stopped cleanly" grep -q 'event=stopped' "$TMP/logs"
engine rm "$NAME" >/dev/null

echo "== compose.yaml: patd and patbench on a named volume"
if [ "$ENGINE" = docker ] && docker compose version >/dev/null 2>&1; then
  COMPOSE="docker compose"
else
  COMPOSE="podman-compose"
fi
export PATD_IMAGE=$IMG BENCH_SECONDS=3 PATD_PORT=$(free_port) PATD_HTTP_PORT=$(free_port)
# The services named: Debian's podman-compose 1.0.3 ignores profiles.
$COMPOSE -p "$PROJECT" up -d patd bench > "$TMP/compose.log" 2>&1 || { cat "$TMP/compose.log"; exit 1; }
bench=""
for _ in $(seq 1 60); do
  bench=$($COMPOSE -p "$PROJECT" logs bench 2>/dev/null || true)
  grep -q 'requests/s' <<<"$bench" && break
  sleep 1
done
if grep -q 'requests/s' <<<"$bench"; then
  ok "patbench ran against patd through compose ($(grep -o '[0-9]* *(' <<<"$bench" | head -1 | tr -d ' (') Verify/s)"
else
  bad "patbench ran against patd through compose"
  cat "$TMP/compose.log"
  $COMPOSE -p "$PROJECT" ps 2>&1 || true
  $COMPOSE -p "$PROJECT" logs 2>&1 | tail -30 || true
fi
$COMPOSE -p "$PROJECT" down -v >/dev/null 2>&1
engine network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true

echo "== compose.yaml, cluster profile: PostgreSQL and three patd nodes (issue 19)"
PG_IMG="patd-postgres-test:$ID"
B0=$(date +%s)
engine "${bargs[@]/#$IMG/$PG_IMG}" storage/postgresql/image > "$TMP/pg-build.log" 2>&1 ||
  { cat "$TMP/pg-build.log"; exit 1; }
echo "PostgreSQL image built in $(( $(date +%s) - B0 )) s"
PATD_DB_PASSWORD=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
export PATD_PG_IMAGE=$PG_IMG PATD_DB_PASSWORD
for n in A B C; do export "PATD_${n}_PORT=$(free_port)" "PATD_${n}_HTTP_PORT=$(free_port)"; done
cluster_up() { $COMPOSE -p "$CPROJECT" up -d "$@" >> "$TMP/cluster.log" 2>&1; }
cluster_up postgres cluster-key patd-a patd-b patd-c || { cat "$TMP/cluster.log"; exit 1; }
http_of() { eval echo "\$PATD_${1}_HTTP_PORT"; }
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(http_of "$1")/readyz")" = 200 ]; }
all_ready() {
  for _ in $(seq 1 180); do ready A && ready B && ready C && return 0; sleep 0.5; done
  return 1
}
if all_ready; then
  ok "three nodes on the PostgreSQL container are ready (/readyz)"
else
  bad "three nodes on the PostgreSQL container are ready (/readyz)"
  $COMPOSE -p "$CPROJECT" logs 2>&1 | tail -40 || true
fi
cid() {
  engine ps -q --filter "label=com.docker.compose.project=$CPROJECT" \
    --filter "label=com.docker.compose.service=$1" | head -1
}
KEY=$(engine exec "$(cid patd-a)" cat /keys/platform.key)
api() { # node method path [json] [act-as]
  curl -s -X "$2" -H "Authorization: Platform $KEY" -H 'Content-Type: application/json' \
    ${5:+-H "X-Act-As-User: $5"} ${4:+-d "$4"} "http://127.0.0.1:$(http_of "$1")$3"
}
api A PUT /api/users/alice '{"user_name":"alice"}' >/dev/null
api A POST /api/user-tokens '{"name":"cluster"}' alice > "$TMP/ctoken"
ctok=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["bearer_token"])' < "$TMP/ctoken")
ctid=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["token"]["id"])' < "$TMP/ctoken")
vcode() {
  curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ctok" \
    "http://127.0.0.1:$(http_of "$1")/v1/verify"
}
check "R11: a token made through node A verifies on B and C" \
  test "$(vcode B) $(vcode C)" = "200 200"
api A PUT "/api/user-tokens/$ctid" '{"revoke":true}' alice >/dev/null
check "R16: revoked through A, B and C refuse it at once" test "$(vcode B) $(vcode C)" = "401 401"
cluster_up bench-cluster || true
bench=""
for _ in $(seq 1 90); do
  bench=$($COMPOSE -p "$CPROJECT" logs bench-cluster 2>/dev/null || true)
  [ "$(grep -c 'requests/s' <<<"$bench")" -ge 2 ] && break
  sleep 1
done
check "patbench seeded through A and verified on B and C" \
  test "$(grep -c 'requests/s' <<<"$bench")" -ge 2
$COMPOSE -p "$CPROJECT" logs > "$TMP/cluster-logs" 2>&1 || true
check "no node logged the database password or the platform key" \
  bash -c "! grep -qF '$PATD_DB_PASSWORD' '$TMP/cluster-logs' && ! grep -qF '$KEY' '$TMP/cluster-logs'"
$COMPOSE -p "$CPROJECT" down -v >/dev/null 2>&1
engine network rm -f "${CPROJECT}_default" >/dev/null 2>&1 || true
engine rmi -f "$PG_IMG" >/dev/null 2>&1 || true
COMPOSE=""

echo "test-image: $FAILS failure(s), $(( $(date +%s) - T0 )) s"
[ "$FAILS" -eq 0 ]
