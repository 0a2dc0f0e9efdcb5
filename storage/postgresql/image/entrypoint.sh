#!/bin/sh
# patd-postgres: the entrypoint of the cluster profile's PostgreSQL image.
# On an empty volume: initdb (peer auth on the socket, scram-sha-256 over
# TCP), a role and a database named patd with $PATD_DB_PASSWORD. Then runs
# postgres in the foreground.
set -eu
BIN=/usr/lib/postgresql/15/bin
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${PATD_DB_PASSWORD:?set PATD_DB_PASSWORD (the patd role's password)}"
  "$BIN/initdb" -D "$PGDATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >/dev/null
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  "$BIN/pg_ctl" -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
  # The password comes from the environment (\getenv), never a command line.
  psql -X -q -v ON_ERROR_STOP=1 -U postgres -d postgres <<'SQL'
\getenv pw PATD_DB_PASSWORD
CREATE ROLE patd LOGIN PASSWORD :'pw';
CREATE DATABASE patd OWNER patd;
SQL
  "$BIN/pg_ctl" -D "$PGDATA" -w -m fast stop >/dev/null
  echo "patd-postgres: made the cluster, role and database patd"
fi
exec "$BIN/postgres" -D "$PGDATA"
