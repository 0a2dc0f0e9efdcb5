#!/usr/bin/env bash
# base-images.sh: makes the Debian 12 base images that the Dockerfile's FROM
# lines name (debian:12, debian:12-slim) where no registry is reachable,
# with debuerreotype (the tool that makes the official Debian images) from
# the Debian mirror this host's apt uses, and imports them into the
# engine. Does nothing for an image the engine already has. The root
# filesystems are kept as tars in build-image/base/, so a second import
# (a fresh image store) takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/container-env.sh

have() { engine image inspect "$1" >/dev/null 2>&1; }
if have docker.io/library/debian:12 && have docker.io/library/debian:12-slim; then
  exit 0
fi
if [ "$ENGINE" = docker ] && docker pull -q debian:12 >/dev/null 2>&1 &&
   docker pull -q debian:12-slim >/dev/null 2>&1; then
  exit 0 # a registry answers
fi

BASE="$IMAGE_DIR/base"
mkdir -p "$BASE"
if [ ! -s "$BASE/debian-12.tar" ] || [ ! -s "$BASE/debian-12-slim.tar" ]; then
  # The host's own mirror and sources: deb822 files first, then the
  # one-line format. Never a host written into this script.
  sources=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  mirror=$(printf '%s\n' "$sources" | awk '
    /^URIs:/ { uri = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") { print uri; exit } }')
  if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list)
  fi
  [ -n "$mirror" ] || { echo "base-images: no bookworm mirror in this host's apt sources" >&2; exit 1; }
  echo "base-images: building Debian 12 from $mirror (about a minute)" >&2
  work=$(mktemp -d "$IMAGE_DIR/rootfs.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  debuerreotype-init --non-debian "$work/rootfs" bookworm "$mirror" >/dev/null
  debuerreotype-minimizing-config "$work/rootfs"
  # The same sources as the host, so that apt-get inside a build reaches
  # what the host reaches; and its tolerance of Release files past their
  # Valid-Until date (snapshot mirrors), or apt-get update would fail.
  if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
    rm -f "$work/rootfs/etc/apt/sources.list"
    cp /etc/apt/sources.list.d/*.sources "$work/rootfs/etc/apt/sources.list.d/"
  else
    cp /etc/apt/sources.list "$work/rootfs/etc/apt/sources.list"
  fi
  if grep -rqs 'Check-Valid-Until' /etc/apt/apt.conf.d/; then
    echo 'Acquire::Check-Valid-Until "false";' > "$work/rootfs/etc/apt/apt.conf.d/99check-valid-until"
  fi
  debuerreotype-apt-get "$work/rootfs" update -qq
  debuerreotype-apt-get "$work/rootfs" dist-upgrade -yqq >/dev/null
  debuerreotype-fixup "$work/rootfs"
  cp -a "$work/rootfs" "$work/rootfs-slim"
  debuerreotype-slimify "$work/rootfs-slim"
  debuerreotype-tar "$work/rootfs" "$BASE/debian-12.tar.tmp"
  debuerreotype-tar "$work/rootfs-slim" "$BASE/debian-12-slim.tar.tmp"
  mv "$BASE/debian-12.tar.tmp" "$BASE/debian-12.tar"
  mv "$BASE/debian-12-slim.tar.tmp" "$BASE/debian-12-slim.tar"
fi
for v in 12 12-slim; do
  engine import --change 'CMD ["bash"]' "$BASE/debian-$v.tar" "docker.io/library/debian:$v" >/dev/null
done
engine tag docker.io/library/debian:12 docker.io/library/debian:bookworm
engine tag docker.io/library/debian:12-slim docker.io/library/debian:bookworm-slim
echo "base-images: debian:12 and debian:12-slim imported" >&2
