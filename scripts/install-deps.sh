#!/usr/bin/env bash
# Installs the Debian packages patd needs to build, test and benchmark.
# Idempotent: asks dpkg first and runs apt-get only for what is missing,
# so a second run on a ready machine takes well under a second.
set -euo pipefail

# --runtime: only what a built patd needs to run (the image's last stage).
# RocksDB is linked in (CMakeLists.txt, PATD_ROCKSDB_STATIC): the image
# needs the compression libraries it calls, not librocksdb7.8.
RUNTIME_PKGS=(libprotobuf-c1 libuv1 libsnappy1v5 liblz4-1 libzstd1 libbz2-1.0 libstdc++6 libssl3
  zlib1g libjansson4 libpq5 ca-certificates)

# --build: what a release build of patd, patctl and patbench needs
# (cmake -DPATD_TESTS=OFF), without the test and benchmark tools: the
# image's build stage.
BUILD_PKGS=(
  build-essential cmake pkg-config
  libprotobuf-c-dev protobuf-c-compiler
  libuv1-dev librocksdb-dev libssl-dev zlib1g-dev libjansson-dev libpq-dev
  node-llhttp
)

# The rest, for make test, make fuzz and make bench.
TEST_PKGS=(
  git libcmocka-dev
  clang libclang-rt-14-dev clang-format
  python3 python3-protobuf python3-yaml python3-cryptography protobuf-compiler
  redis-server redis-tools rocksdb-tools postgresql-15 postgresql-client-15
  nginx caddy curl jq wrk prometheus valgrind
  chromium fonts-dejavu-core
)

case "${1:-}" in
  --runtime) PKGS=("${RUNTIME_PKGS[@]}") ;;
  --build) PKGS=("${BUILD_PKGS[@]}") ;;
  "") PKGS=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}") ;;
  --containers) PKGS=(podman buildah runc debuerreotype debootstrap podman-compose
                       golang-github-containernetworking-plugin-dnsname) ;;
  *) echo "usage: install-deps.sh [--runtime | --build | --containers]" >&2; exit 2 ;;
esac

# The browser tests drive Debian's chromium with npm's playwright-core
# (tests/ui/package-lock.json, never a downloaded browser); node and npm
# are Debian's where the machine has none of its own.
if [ -z "${1:-}" ] && ! command -v npm >/dev/null; then
  PKGS+=(nodejs npm)
fi

npm_deps() {
  [ -z "${1:-}" ] || return 0
  local dir
  dir="$(dirname "$0")/../tests/ui"
  if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
     [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "install-deps: npm ci in tests/ui" >&2
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  npm_deps "${1:-}"
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# redis-server's package starts a system instance; patd's benchmarks start
# their own on a private port, so the system one is left as the package set it.
npm_deps "${1:-}"
