#!/usr/bin/env bash
# image.sh (make image): builds the patd image as patd:VERSION and
# patd:latest, and the cluster profile's PostgreSQL (storage/postgresql/
# image: Debian 12's postgresql-15) as patd-postgres:latest, with docker
# where an engine answers, else podman (making the Debian base images first
# where no registry is reachable).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/container-env.sh
scripts/base-images.sh
VERSION=$(sed -n 's/^project(patd VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
args=(build --network host --build-arg "VERSION=$VERSION" -t "patd:$VERSION" -t patd:latest)
# podman keeps HEALTHCHECK only in the docker image format; it must not
# try a registry for the base images it was just given.
[ "$ENGINE" = podman ] && args+=(--format docker --pull=never)
engine "${args[@]}" . >&2
size=$(engine image inspect patd:latest --format '{{.Size}}')
echo "image: patd:$VERSION ($ENGINE), $((size / 1000000)) MB"
pgargs=(build --network host -t patd-postgres:latest)
[ "$ENGINE" = podman ] && pgargs+=(--format docker --pull=never)
engine "${pgargs[@]}" storage/postgresql/image >&2
echo "image: patd-postgres:latest ($ENGINE), for compose.yaml's cluster profile"
