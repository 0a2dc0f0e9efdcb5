# bench/postgres.sh: the PostgreSQL store's figures, sourced by bench/run.sh
# (its helpers: start_patd, bench, jget, R). A PostgreSQL 15 of its own
# (tests/lib/pgserver.sh: fsync on, synchronous_commit on, Unix socket) holds
# three databases: pgbench's (pgbench -i -s 1: 100k accounts), a copy of the
# 10k-token store and a copy of a 100k-token store (patd copy-store). Each
# figure runs next to its reference at the same number of clients:
#   cold Verify (cache off, 100k tokens)  vs pgbench -S -M prepared (one
#                                            indexed SELECT a transaction)
#   CreateToken                           vs pgbench -N -M prepared (BEGIN,
#                                            2 UPDATEs, SELECT, INSERT, END)
#   hot Verify on PostgreSQL              vs hot Verify on RocksDB
PG=$(mktemp -u -d /tmp/patd-bench-pg-XXXXXX) # outside $W (0700): the postgres user runs it
PG_CLIENTS=32
pg_setup() {
  say "== PostgreSQL 15 (fsync on) and its databases"
  tests/lib/pgserver.sh start "$PG"
  PGH=(-h "$PG" -U postgres)
  createdb "${PGH[@]}" pgbench
  pgbench "${PGH[@]}" -i -s 1 -q pgbench >/dev/null 2>&1
  $B/patseed --data-dir "$W/pg100k" --tokens 100000 --users 1000 --out "$W/pg100k.tokens"
  for db in small pg100k; do
    createdb "${PGH[@]}" "$db"
    $B/patd copy-store --from "rocksdb:$W/$db/db" --to "$(tests/lib/pgserver.sh url "$PG" "$db")" >/dev/null
  done
  tests/lib/pgserver.sh pause "$PG"
}
pg_tps() { # pgbench flags -> tps
  pgbench "${PGH[@]}" -M prepared -c $PG_CLIENTS -j 2 -T "$DUR" "$@" pgbench 2>/dev/null |
    awk '/^tps/ {print $3}'
}
# PostgreSQL runs only during its own figures: after CreateToken and
# pgbench -N its checkpointer and autovacuum would otherwise work through
# the next repetition's figures (measured: the hot p99 moved from 1.7 to
# 2.4 times redis's while they did).
pg_figures() {
  local small_url big_url
  tests/lib/pgserver.sh start "$PG"
  small_url=$(tests/lib/pgserver.sh url "$PG" small)
  big_url=$(tests/lib/pgserver.sh url "$PG" pg100k)
  R[pgbench_S]+="$(pg_tps -S) "
  start_patd "$W/pgdata-big" --store "$big_url" --workers 32 --store-connections $PG_CLIENTS \
    --cache-entries 0 --platform-key-file "$W/pg100k/platform.key"
  j=$(bench --scenario verify-cold --tokens-file "$W/pg100k.tokens" -c $PG_CLIENTS -P 1)
  R[pg_cold]+="$(echo "$j" | jget '["rps"]') "
  stop_patd
  R[pgbench_Sb]+="$(pg_tps -S) "

  R[pgbench_N]+="$(pg_tps -N) "
  start_patd "$W/pgdata-big" --store "$big_url" --workers 32 --store-connections $PG_CLIENTS \
    --platform-key-file "$W/pg100k/platform.key"
  j=$(bench --scenario create --platform-key-file "$W/pg100k/platform.key" -c $PG_CLIENTS)
  R[pg_create]+="$(echo "$j" | jget '["rps"]') "
  stop_patd
  R[pgbench_Nb]+="$(pg_tps -N) "

  hot_small rdb_hot
  start_patd "$W/pgdata-small" --store "$small_url" --workers 32 \
    --platform-key-file "$W/small/platform.key"
  j=$(bench --scenario verify --tokens-file "$W/small.tokens" -c 50 -P 1)
  R[pg_hot]+="$(echo "$j" | jget '["rps"]') "
  stop_patd
  tests/lib/pgserver.sh pause "$PG"
  hot_small rdb_hotb
}
