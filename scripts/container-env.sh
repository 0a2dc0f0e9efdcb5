# container-env.sh: sourced by the image scripts. Picks the engine (docker
# where an engine answers, else podman) and gives podman the settings these
# machines need through a containers.conf of the project's own
# (CONTAINERS_CONF), never the machine's global configuration:
#  - runc as the runtime (crun 1.8 refuses a hybrid cgroup v1+v2 host);
#  - resource limits at or below this process's own hard limits (podman
#    asks for more open files than an unprivileged process may raise to).
# Sets ENGINE (docker|podman) and IMAGE_DIR; defines `engine` (the engine
# with those settings).
IMAGE_DIR=${IMAGE_DIR:-$(pwd)/build-image}
mkdir -p "$IMAGE_DIR"

if [ -z "${ENGINE:-}" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    ENGINE=docker
  else
    ENGINE=podman
  fi
fi

if [ "$ENGINE" = podman ]; then
  scripts/install-deps.sh --containers
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] && nofile=1048576
  [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
  cat > "$IMAGE_DIR/containers.conf" <<EOF
# Written by scripts/container-env.sh for this machine; see docs in README.md.
[engine]
runtime = "runc"
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
EOF
  export CONTAINERS_CONF="$IMAGE_DIR/containers.conf"
fi

engine() { "$ENGINE" "$@"; }
