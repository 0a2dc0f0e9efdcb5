#!/usr/bin/env bash
# pgserver: a throwaway PostgreSQL 15 for the tests (Debian's postgresql-15).
#   pgserver.sh start DIR   initdb in DIR (fsync on, trust for the owner
#                           on DIR's Unix socket only, no TCP), start, wait
#   pgserver.sh stop DIR    stop it (fast) and remove DIR
#   pgserver.sh pause DIR   stop it cleanly (-m fast), keep DIR (start DIR resumes)
#   pgserver.sh crash DIR   stop it as a power cut would (-m immediate), keep DIR
#                           (start DIR brings it back, with crash recovery)
#   pgserver.sh url DIR DB  the patd --store URL of database DB in it
# With PGSERVER_LISTEN=ADDR and PGSERVER_HBA=CIDR at the first start, it also
# listens on ADDR over TCP and trusts the postgres role from CIDR (the
# partition test's private veth network).
# PostgreSQL refuses to run as root: as root the server runs as the
# `postgres` system user that the package makes (made here if missing).
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
PORT=5432 # each server has its own socket directory, so the port can repeat
cmd="${1:-}"
dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: pgserver.sh start|stop|url DIR [DB]" >&2; exit 2; }
[ -x "$BIN/initdb" ] || { echo "pgserver: $BIN/initdb missing: run scripts/install-deps.sh" >&2; exit 1; }

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
  start)
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
      useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
    mkdir -p "$dir"
    chmod 0700 "$dir"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_owner "$BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
      cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
port = $PORT
fsync = on
synchronous_commit = on
max_connections = 200
shared_buffers = 128MB
log_min_messages = warning
CONF
      if [ -n "${PGSERVER_LISTEN:-}" ]; then
        echo "listen_addresses = '$PGSERVER_LISTEN'" >>"$dir/data/postgresql.conf"
        echo "host all postgres ${PGSERVER_HBA:?PGSERVER_HBA with PGSERVER_LISTEN} trust" >>"$dir/data/pg_hba.conf"
      fi
    fi
    as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start >/dev/null ||
      { cat "$dir/server.log" >&2; exit 1; }
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  pause)
    as_owner "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
  crash)
    as_owner "$BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
    ;;
  url)
    echo "postgresql:///${3:-postgres}?host=$dir&port=$PORT&user=postgres"
    ;;
  *) echo "usage: pgserver.sh start|stop|pause|crash|url DIR [DB]" >&2; exit 2 ;;
esac
