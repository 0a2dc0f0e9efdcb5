/* postgresql/schema: the SQL of the PostgreSQL backend: its numbered
 * migrations and its prepared statements. All of patd's SQL is here.
 *
 * Migrations are applied in order at open (and by `patd migrate`), each in
 * the one transaction that holds the migration lock, and never edited once
 * released: a change of schema is a new migration. */
#include "internal.h"

const pg_migration_t pg_migrations[] = {
    {1, "users, tokens, last-used times and activity",
     /* Strings that patd pages through are ordered by their bytes (COLLATE
      * "C"), as RocksDB orders keys, whatever the database's locale. */
     "CREATE TABLE patd_meta (\n"
     "  key text PRIMARY KEY,\n"
     "  value bytea NOT NULL);\n"
     "CREATE TABLE patd_users (\n"
     "  user_id text COLLATE \"C\" PRIMARY KEY,\n"
     "  user_name text NOT NULL,\n"
     "  email text NOT NULL,\n"
     "  name text NOT NULL,\n"
     "  created_by text NOT NULL,\n"
     "  role integer NOT NULL,\n"
     "  user_type integer NOT NULL,\n"
     "  active boolean NOT NULL,\n"
     "  created bigint NOT NULL);\n"
     "CREATE SEQUENCE patd_token_ids;\n"
     "CREATE TABLE patd_tokens (\n"
     "  id bigint PRIMARY KEY,\n"
     "  hash bytea NOT NULL UNIQUE CHECK (length(hash) = 32),\n"
     "  name text COLLATE \"C\" NOT NULL,\n"
     "  owner_id text COLLATE \"C\" NOT NULL REFERENCES patd_users (user_id),\n"
     "  created_by text NOT NULL,\n"
     "  kind integer NOT NULL,\n"
     "  scim boolean NOT NULL,\n"
     "  active boolean NOT NULL,\n"
     "  created bigint NOT NULL,\n"
     "  expiration bigint NOT NULL,\n"
     "  UNIQUE (kind, owner_id, name));\n"
     /* No foreign key: a batch of uses must not fail because one of its
      * tokens was deleted meanwhile. */
     "CREATE TABLE patd_last_used (\n"
     "  token_id bigint PRIMARY KEY,\n"
     "  ms bigint NOT NULL);\n"
     /* A deleted token's history stays (its owner can still read why it
      * went), so no foreign key here either. */
     "CREATE TABLE patd_activity (\n"
     "  token_id bigint NOT NULL,\n"
     "  time bigint NOT NULL,\n"
     "  seq bigint NOT NULL,\n"
     "  kind integer NOT NULL,\n"
     "  count bigint NOT NULL,\n"
     "  first_time bigint NOT NULL,\n"
     "  path text NOT NULL,\n"
     "  client_ip text NOT NULL,\n"
     "  actor text NOT NULL,\n"
     "  owner_id text NOT NULL,\n"
     "  token_kind integer NOT NULL,\n"
     "  PRIMARY KEY (token_id, time, seq));\n"},
    {2, "the cluster: a change log, its counter and the nodes' leases",
     /* One row, updated by every logged change in its transaction: the
      * row lock orders the changes, so their numbers follow the order of
      * their commits with no gap (a sequence would give neither). */
     "CREATE TABLE patd_change_seq (\n"
     "  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),\n"
     "  seq bigint NOT NULL);\n"
     "INSERT INTO patd_change_seq (seq) VALUES (0);\n"
     /* What each change touched: a token's hash or a user's id, a row
      * each. fence: the change can turn a Verify from yes to no. */
     "CREATE TABLE patd_changes (\n"
     "  seq bigint NOT NULL,\n"
     "  fence boolean NOT NULL,\n"
     "  hash bytea CHECK (length(hash) = 32),\n"
     "  user_id text COLLATE \"C\",\n"
     "  at timestamptz NOT NULL DEFAULT now(),\n"
     "  CHECK ((hash IS NULL) <> (user_id IS NULL)));\n"
     "CREATE INDEX patd_changes_seq ON patd_changes (seq);\n"
     /* Each serving patd: how far it has applied the log, and its lease
      * (renewals counts its renewals; expired: another node saw it run
      * out, and it must join again). */
     "CREATE TABLE patd_nodes (\n"
     "  node_id text COLLATE \"C\" PRIMARY KEY,\n"
     "  addr text NOT NULL,\n"
     "  started timestamptz NOT NULL DEFAULT now(),\n"
     "  renewed timestamptz NOT NULL DEFAULT now(),\n"
     "  renewals bigint NOT NULL DEFAULT 0,\n"
     "  applied bigint NOT NULL,\n"
     "  lease_ms integer NOT NULL,\n"
     "  expired boolean NOT NULL DEFAULT false);\n"},
};
const size_t pg_n_migrations = sizeof(pg_migrations) / sizeof(pg_migrations[0]);

#define PG_EVENT_COLS                                                                              \
    "token_id, time, seq, kind, count, first_time, path, client_ip, actor, owner_id, token_kind"
/* pg_p_event's ten parameters from $n: time, seq, kind, count, first_time,
 * path, client_ip, actor, owner_id, token_kind. */
#define PG_EVENT_PARAMS(a, b, c, d, e, f, g, h, i, j)                                              \
    "$" #a "::bigint, $" #b "::bigint, $" #c "::integer, $" #d "::bigint, $" #e "::bigint, "       \
    "$" #f "::text, $" #g "::text, $" #h "::text, $" #i "::text, $" #j "::integer"
#define PG_EVENT_ARRAYS(a, b, c, d, e, f, g, h, i, j, k)                                           \
    "unnest($" #a "::bigint[], $" #b "::bigint[], $" #c "::bigint[], $" #d "::integer[], "         \
    "$" #e "::bigint[], $" #f "::bigint[], $" #g "::text[], $" #h "::text[], $" #i "::text[], "    \
    "$" #j "::text[], $" #k "::integer[])"

const char *const pg_statements[PG_STMT__COUNT] = {
    [PG_USER_GET] = "SELECT " PG_USER_COLS " FROM patd_users WHERE user_id = $1::text",
    [PG_USER_LOCK] = "SELECT " PG_USER_COLS " FROM patd_users WHERE user_id = $1::text FOR UPDATE",
    [PG_USER_SHARE] = "SELECT " PG_USER_COLS " FROM patd_users WHERE user_id = $1::text FOR SHARE",
    [PG_USER_INSERT] = "INSERT INTO patd_users (" PG_USER_COLS ") VALUES ($1::text, $2::text, "
                       "$3::text, $4::text, $5::text, $6::integer, $7::integer, $8::boolean, "
                       "$9::bigint) ON CONFLICT (user_id) DO NOTHING",
    /* The whole row, as pg_p_user gives it (the unchanged fields too). */
    [PG_USER_UPDATE] = "UPDATE patd_users SET user_name = $2::text, email = $3::text, name = "
                       "$4::text, created_by = $5::text, role = $6::integer, user_type = "
                       "$7::integer, active = $8::boolean, created = $9::bigint WHERE user_id = "
                       "$1::text",
    [PG_USER_DELETE] = "DELETE FROM patd_users WHERE user_id = $1::text",
    [PG_USERS_LIST] = "SELECT " PG_USER_COLS " FROM patd_users WHERE ($1::integer = 0 OR "
                      "user_type = $1::integer) AND user_id > $2::text ORDER BY user_id "
                      "LIMIT $3::integer",
    [PG_TOKEN_GET] = "SELECT " PG_TOKEN_COLS " FROM patd_tokens WHERE id = $1::bigint",
    [PG_TOKEN_LOCK] = "SELECT " PG_TOKEN_COLS " FROM patd_tokens WHERE id = $1::bigint FOR UPDATE",
    [PG_TOKEN_BY_HASH] = "SELECT " PG_TOKEN_COLS " FROM patd_tokens WHERE hash = $1::bytea",
    /* Cold Verifies that came together (conn_set_batch): each token with
     * its owner, one round trip for them all. */
    /* (The owner through a LATERAL subquery that OFFSET 0 keeps from
     * being flattened: one index lookup per token found. As a plain join
     * the planner hashes the whole users table for every batch.) */
    [PG_TOKENS_WITH_OWNERS] =
        "SELECT t.id, t.hash, t.name, t.owner_id, t.created_by, t.kind, t.scim, t.active, "
        "t.created, t.expiration, u.user_id, u.user_name, u.email, u.name, u.created_by, u.role, "
        "u.user_type, u.active, u.created FROM patd_tokens t LEFT JOIN LATERAL (SELECT * FROM "
        "patd_users WHERE patd_users.user_id = t.owner_id OFFSET 0) u ON true WHERE t.hash = "
        "ANY($1::bytea[])",
    /* A cold Verify: the token and its owner in one round trip. */
    [PG_TOKEN_WITH_OWNER] =
        "SELECT t.id, t.hash, t.name, t.owner_id, t.created_by, t.kind, t.scim, t.active, "
        "t.created, t.expiration, u.user_id, u.user_name, u.email, u.name, u.created_by, u.role, "
        "u.user_type, u.active, u.created FROM patd_tokens t LEFT JOIN patd_users u ON "
        "u.user_id = t.owner_id WHERE t.hash = $1::bytea",
    /* One statement, so one round trip and one transaction: the owner's
     * row is locked FOR SHARE (a deactivation waits for it, or it sees the
     * deactivation), the unique index refuses a taken name, and the
     * CREATED event goes in with the token. Answers (owner active, new id):
     * NULL owner: no such user; false: deactivated; NULL id: name taken. */
    [PG_TOKEN_CREATE] =
        "WITH o AS (SELECT active FROM patd_users WHERE user_id = $1::text FOR SHARE), "
        "t AS (INSERT INTO patd_tokens (" PG_TOKEN_COLS ") SELECT nextval('patd_token_ids'), "
        "$2::bytea, $3::text, $1::text, $4::text, $5::integer, $6::boolean, true, $7::bigint, "
        "$8::bigint FROM o WHERE o.active ON CONFLICT (kind, owner_id, name) DO NOTHING "
        "RETURNING id), "
        "e AS (INSERT INTO patd_activity (" PG_EVENT_COLS ") SELECT t.id, " PG_EVENT_PARAMS(
            10, 11, 12, 13, 14, 15, 16, 17, 18, 19) " FROM t WHERE $9::boolean) "
                                                    "SELECT (SELECT active FROM o), (SELECT id "
                                                    "FROM t)",
    [PG_TOKEN_SET_ACTIVE] = "UPDATE patd_tokens SET active = $2::boolean WHERE id = $1::bigint",
    [PG_TOKEN_DELETE] = "WITH l AS (DELETE FROM patd_last_used WHERE token_id = $1::bigint) "
                        "DELETE FROM patd_tokens WHERE id = $1::bigint",
    [PG_OWNED_LOCK] = "SELECT " PG_TOKEN_COLS " FROM patd_tokens WHERE kind = $1::integer AND "
                      "owner_id = $2::text ORDER BY name FOR UPDATE",
    [PG_OWNED_DELETE] = "WITH d AS (DELETE FROM patd_tokens WHERE kind = $1::integer AND owner_id "
                        "= $2::text RETURNING id) DELETE FROM patd_last_used WHERE token_id IN "
                        "(SELECT id FROM d)",
    [PG_COUNT_ACTIVE] = "SELECT count(*) FROM patd_tokens WHERE kind = $1::integer AND owner_id = "
                        "$2::text AND active AND (expiration = 0 OR expiration > $3::bigint)",
    [PG_TOKENS_OF_OWNER] = "SELECT " PG_TOKEN_COLS " FROM patd_tokens WHERE kind = $1::integer "
                           "AND owner_id = $2::text AND name > $3::text ORDER BY name "
                           "LIMIT $4::integer",
    [PG_TOKENS_ALL] = "SELECT " PG_TOKEN_COLS " FROM patd_tokens WHERE kind = $1::integer AND "
                      "(owner_id, name) > ($2::text, $3::text) ORDER BY owner_id, name "
                      "LIMIT $4::integer",
    [PG_EVENT_INSERT] =
        "INSERT INTO patd_activity (" PG_EVENT_COLS
        ") VALUES ($1::bigint, " PG_EVENT_PARAMS(2, 3, 4, 5, 6, 7, 8, 9, 10, 11) ")",
    [PG_EVENTS_INSERT] = "INSERT INTO patd_activity (" PG_EVENT_COLS
                         ") SELECT * FROM " PG_EVENT_ARRAYS(1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                            11) " ON CONFLICT DO NOTHING",
    [PG_LAST_USED_GET] = "SELECT ms FROM patd_last_used WHERE token_id = $1::bigint",
    /* A flush of uses: every last-used time and every event in one
     * statement; a time never goes back. (A token deleted while its uses
     * were in flight may keep a last-used row, as on RocksDB: ids are
     * never reused, so it is never read.) */
    [PG_USAGE] =
        "WITH l AS (INSERT INTO patd_last_used (token_id, ms) SELECT u.id, max(u.ms) FROM "
        "unnest($1::bigint[], $2::bigint[]) AS u(id, ms) GROUP BY u.id ON CONFLICT (token_id) "
        "DO UPDATE SET ms = greatest(patd_last_used.ms, excluded.ms)) "
        "INSERT INTO patd_activity (" PG_EVENT_COLS ") SELECT * FROM " PG_EVENT_ARRAYS(
            3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13) " ON CONFLICT DO NOTHING",
    [PG_ACTIVITY_LIST] = "SELECT seq, kind, time, count, first_time, path, client_ip, actor, "
                         "owner_id, token_kind FROM patd_activity WHERE token_id = $1::bigint "
                         "ORDER BY time DESC, seq DESC LIMIT $2::integer",
    [PG_ACTIVITY_TRIM] = "DELETE FROM patd_activity WHERE token_id = $1::bigint AND (time, seq) "
                         "NOT IN (SELECT time, seq FROM patd_activity WHERE token_id = $1::bigint "
                         "ORDER BY time DESC, seq DESC LIMIT $2::integer)",
    [PG_ACTIVITY_NEXT] = "SELECT min(token_id) FROM patd_activity WHERE token_id > $1::bigint",
    [PG_IMPORT_USERS] = "INSERT INTO patd_users (" PG_USER_COLS ") SELECT * FROM unnest("
                        "$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "
                        "$6::integer[], $7::integer[], $8::boolean[], $9::bigint[])",
    /* The sequence moves past the imported ids (never back). */
    [PG_IMPORT_TOKENS] =
        "WITH i AS (INSERT INTO patd_tokens (" PG_TOKEN_COLS ") SELECT * FROM unnest("
        "$1::bigint[], $2::bytea[], $3::text[], $4::text[], $5::text[], $6::integer[], "
        "$7::boolean[], $8::boolean[], $9::bigint[], $10::bigint[]) RETURNING id) "
        "SELECT setval('patd_token_ids', greatest((SELECT max(id) FROM i), (SELECT last_value "
        "FROM patd_token_ids)))",
    /* A change's log entry, last in its transaction (the counter's row
     * lock is held only for the commit): $1 fence, $2 hashes, $3 user ids.
     * The NOTIFY goes out with the commit. */
    [PG_CHANGE_LOG] =
        "WITH s AS (UPDATE patd_change_seq SET seq = seq + 1 RETURNING seq), "
        "h AS (INSERT INTO patd_changes (seq, fence, hash) SELECT s.seq, $1::boolean, x FROM s, "
        "unnest($2::bytea[]) AS x), "
        "u AS (INSERT INTO patd_changes (seq, fence, user_id) SELECT s.seq, $1::boolean, x FROM s, "
        "unnest($3::text[]) AS x) "
        "SELECT seq, pg_notify('patd_changes', seq::text) IS NULL FROM s",
    /* Who a fence waits for, read after the change's commit. */
    [PG_NODES] = "SELECT node_id, applied, expired FROM patd_nodes",
};

/* The cluster link's statements (cluster.c sends them on its own
 * connection, results in binary). */
const char *const pg_cluster_sql[PG_CL__COUNT] = {
    [PG_CL_SETUP] = "SET synchronous_commit = off; LISTEN patd_changes; LISTEN patd_applied",
    /* $1 node, $2 addr, $3 applied (NULL: a new process, which has
     * nothing to apply: it starts at the newest change), $4 lease. */
    [PG_CL_JOIN] =
        "INSERT INTO patd_nodes (node_id, addr, applied, lease_ms) VALUES ($1, $2, "
        "coalesce($3::bigint, (SELECT seq FROM patd_change_seq)), $4::integer) "
        "ON CONFLICT (node_id) DO UPDATE SET addr = excluded.addr, applied = excluded.applied, "
        "lease_ms = excluded.lease_ms, expired = false, renewed = now(), "
        "renewals = patd_nodes.renewals + 1 "
        "RETURNING applied, (SELECT seq FROM patd_change_seq)",
    /* $1 node, $2 applied. Renews this node's lease unless another node
     * expired it; trims the log every live node has applied, and forgets
     * nodes expired long ago. Returns every node as it was before. */
    [PG_CL_RENEW] =
        "WITH me AS (UPDATE patd_nodes SET renewals = renewals + 1, renewed = now(), "
        "applied = greatest(applied, $2::bigint) WHERE node_id = $1 AND NOT expired "
        "RETURNING node_id), "
        "t AS (DELETE FROM patd_changes WHERE seq <= (SELECT min(applied) FROM patd_nodes "
        "WHERE NOT expired)), "
        "d AS (DELETE FROM patd_nodes WHERE expired AND renewed < now() - interval '1 hour') "
        "SELECT n.node_id, n.addr, n.renewals, n.applied, n.expired, n.lease_ms, "
        "(SELECT count(*) FROM me), (SELECT seq FROM patd_change_seq) FROM patd_nodes n",
    /* $1 node, $2 applied: tells the others. */
    [PG_CL_ACK] = "WITH u AS (UPDATE patd_nodes SET applied = greatest(applied, $2::bigint) "
                  "WHERE node_id = $1) SELECT pg_notify('patd_applied', 'a ' || $2 || ' ' || $1) "
                  "IS NULL",
    /* $1 node, $2 renewals: expires a node whose lease ran out, unless it
     * renewed meanwhile. */
    [PG_CL_EXPIRE] = "WITH u AS (UPDATE patd_nodes SET expired = true WHERE node_id = $1 AND "
                     "renewals = $2::bigint AND NOT expired RETURNING node_id) "
                     "SELECT pg_notify('patd_applied', 'x ' || node_id) IS NULL FROM u",
    /* $1 after: the changes of the next 256 numbers, and the newest
     * number (one row at least: a log trimmed past $1 shows). */
    [PG_CL_FETCH] = "SELECT m.seq, c.seq, c.fence, c.hash, c.user_id FROM patd_change_seq m "
                    "LEFT JOIN patd_changes c ON c.seq > $1::bigint AND c.seq <= $1::bigint + 256 "
                    "ORDER BY c.seq",
    /* In parentheses: clang takes two literals in a row for a missing comma. */
    [PG_CL_LEAVE] = ("WITH d AS (DELETE FROM patd_nodes WHERE node_id = $1 RETURNING node_id) "
                     "SELECT pg_notify('patd_applied', 'l ' || node_id) IS NULL FROM d"),
};
