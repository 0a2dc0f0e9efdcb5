#!/usr/bin/env python3
"""PostgreSQL store: what only a database shows. A real PostgreSQL 15 of
its own (tests/lib/pgserver.sh: initdb, fsync on, Unix socket only), real
patd processes, the REST API over TCP and psql beside them:

- the schema's migrations (patd migrate, several at once, a newer schema
  refused), a password in the URL refused, patd check on PostgreSQL;
- a second patd on the same database joins it (issue 19: docs/cluster.md);
  duplicate_name comes from the database across processes;
- PostgreSQL killed (-m immediate) and restarted under load: changes answer
  storage_unavailable, cached Verifies go on, patd recovers by itself,
  nothing acknowledged is lost, the outage is logged once and its end once;
- a session terminated (pg_terminate_backend) in the middle of a change:
  all of it or none;
- patd copy-store from a RocksDB store (100k tokens by patseed, plus history)
  to PostgreSQL: every token verifies through patd on PostgreSQL after.

usage: test_postgres.py BINDIR SRCDIR"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from patdtest import Checks, Patd, Rest  # noqa: E402

BIN, SRC = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
PGSERVER = os.path.join(SRC, "tests", "lib", "pgserver.sh")
c = Checks()
check = c.check
work = tempfile.mkdtemp(prefix="patd-pg-")
pgdir = tempfile.mkdtemp(prefix="pg-", dir="/tmp")


def pg(cmd):
    subprocess.run([PGSERVER, cmd, pgdir], check=True, capture_output=True)


def url(db):
    return f"postgresql:///{db}?host={pgdir}&user=postgres"


def psql(db, sql):
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", pgdir,
                        "-U", "postgres", "-d", db, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"psql {sql!r}: {r.stderr}")
    return r.stdout.strip()


def createdb(db):
    subprocess.run(["createdb", "-h", pgdir, "-U", "postgres", db], check=True)
    return url(db)


def patd_tool(*args):
    r = subprocess.run([os.path.join(BIN, "patd"), *args], capture_output=True, text=True,
                       timeout=300, cwd=work)
    return r.returncode, r.stdout + r.stderr


servers = []


def serve(store, *extra):
    servers.append(Patd(BIN, extra=["--store", store, *extra], work=tempfile.mkdtemp(dir=work)))
    return servers[-1]


try:
    pg("start")

    # ------------------------------------------------------------ schema
    u = createdb("migrate")
    rc, out = patd_tool("migrate", "--store", u)
    check(rc == 0 and "schema version 2" in out, "patd migrate makes the schema", out)
    rc, out = patd_tool("migrate", "--store", u)
    check(rc == 0 and "schema version 2" in out, "patd migrate again: nothing to do", out)
    check(psql("migrate", "SELECT count(*) FROM patd_schema_migrations") == "2",
          "each migration is recorded once")
    u2 = createdb("migrate_race")
    procs = [subprocess.Popen([os.path.join(BIN, "patd"), "migrate", "--store", u2],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(4)]
    rcs = [p.wait(timeout=60) for p in procs]
    check(rcs == [0, 0, 0, 0] and
          psql("migrate_race", "SELECT count(*) FROM patd_schema_migrations") == "2",
          "four patd migrate at once: all succeed, the migration is applied once (advisory lock)",
          rcs)
    psql("migrate", "INSERT INTO patd_schema_migrations (version, what) VALUES (99, 'future')")
    rc, out = patd_tool("--store", u, "--data-dir", os.path.join(work, "d-new"))
    check(rc != 0 and "schema version 99" in out and "newer" in out,
          "a patd that finds a newer schema refuses to start and says why", out)
    rc, out = patd_tool("migrate", "--store", u)
    check(rc != 0 and "newer" in out, "patd migrate refuses it too", out)
    rc, out = patd_tool("--store", url("migrate").replace("user=postgres",
                                                          "user=postgres&password=hunter2"),
                        "--data-dir", os.path.join(work, "d-pw"))
    check(rc != 0 and "PGPASSFILE" in out and "hunter2" not in out,
          "a password in the URL is refused, and not echoed", out)
    rc, out = patd_tool("check", "--store", url("nothing_here"))
    check(rc == 2, "patd check on a database that does not exist: cannot check (2)", out)
    createdb("empty")
    rc, out = patd_tool("check", "--store", url("empty"))
    check(rc == 2 and "no patd schema" in out and
          psql("empty", "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'patd%'") == "0",
          "patd check on an empty database makes nothing", out)

    # ------------------------------------------------------------ one server
    main = createdb("main")
    p1 = serve(main)
    a1 = Rest(p1)
    a1.user("alice", "admin")
    s, b = a1.create("alice", "laptop")
    check(s == 201, "CreateToken on PostgreSQL", b)
    alice_tok = b["bearer_token"]
    check(a1.verify(alice_tok) == 200, "and the token verifies")
    check(alice_tok not in p1.log(), "the secret is not in the log")
    check(psql("main", "SELECT count(*) FROM patd_tokens WHERE length(hash) = 32") == "1" and
          psql("main", f"SELECT count(*) FROM patd_tokens WHERE hash = convert_to('{alice_tok}', "
                       "'UTF8')") == "0",
          "only the token's hash is stored")
    # Issue 19: a second patd on the same database joins it as a second node.
    p1b = serve(main)
    check(Rest(p1b).verify(alice_tok) == 200,
          "a second patd on the same database serves the same tokens (cluster, issue 19)")
    p1b.stop()
    rc, out = patd_tool("check", "--store", main)
    check(rc == 0 and "0 problem(s)" in out, "patd check on PostgreSQL beside a serving patd", out)
    p1.stop()
    p2 = serve(main)  # another process, another data directory, the same database
    a2 = Rest(p2)
    check(a2.verify(alice_tok) == 200, "the token verifies through the next patd")
    check(a2.reason(a2.create("alice", "laptop")) == (409, "duplicate_name"),
          "duplicate_name holds across processes (the database's unique index)")
    s, b = a2.call("GET", "/api/user-tokens", act_as="alice")
    check(s == 200 and [t["name"] for t in b["tokens"]] == ["laptop"], "ListTokens", b)

    # ------------------------------------------------------------ terminate mid-change
    # A trigger stalls the change inside its transaction, after it has
    # written part of it; the test terminates that session.
    psql("main", """
        CREATE FUNCTION patd_test_stall() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(30); RETURN COALESCE(NEW, OLD); END $$;
        CREATE TRIGGER stall_user_delete BEFORE DELETE ON patd_users FOR EACH ROW
          WHEN (OLD.user_name = 'doomed') EXECUTE FUNCTION patd_test_stall();""")

    def stalled_pid(fragment):
        for _ in range(200):
            pid = psql("main", "SELECT pid FROM pg_stat_activity WHERE application_name = "
                               f"'patd' AND wait_event = 'PgSleep' AND query LIKE '%{fragment}%'")
            if pid:
                return pid
            time.sleep(0.05)
        return None

    def during(call, fragment):
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("r", call()))
        t.start()
        pid = stalled_pid(fragment)
        killed = pid and psql("main", f"SELECT pg_terminate_backend({pid})") == "t"
        t.join(timeout=30)
        return killed, result.get("r")

    s, b = a2.call("POST", "/api/service-users", {"user_name": "doomed", "role": "member"},
                   act_as="alice")
    sid = b["user_id"]
    ids = []
    for n in ("one", "two"):
        s, b = a2.call("POST", "/api/user-tokens", {"name": n, "kind": "service",
                                                    "service_user_id": sid}, act_as="alice")
        ids.append(b["token"]["id"])
        a2.call("PUT", f"/api/user-tokens/{b['token']['id']}", {"revoke": True}, act_as="alice")
    killed, r = during(lambda: a2.call("DELETE", f"/api/service-users/{sid}", act_as="alice"),
                       "DELETE FROM patd_users")
    check(killed and a2.reason(r) == (503, "storage_unavailable"),
          "a service user's deletion whose session is terminated answers 503", r)
    check(psql("main", f"SELECT count(*) FROM patd_users WHERE user_id = '{sid}'") == "1" and
          psql("main", f"SELECT count(*) FROM patd_tokens WHERE owner_id = '{sid}'") == "2" and
          psql("main", "SELECT count(*) FROM patd_activity WHERE kind = 5") == "0",
          "none of it happened: the user, both tokens, no DELETED event")
    psql("main", "DROP TRIGGER stall_user_delete ON patd_users")
    s, _ = a2.call("DELETE", f"/api/service-users/{sid}", act_as="alice")
    check(s == 204 and
          psql("main", f"SELECT count(*) FROM patd_tokens WHERE owner_id = '{sid}'") == "0" and
          psql("main", "SELECT count(*) FROM patd_activity WHERE kind = 5") == "2",
          "retried, all of it happens: tokens gone, one DELETED event each")
    # CreateToken is one statement: token row, then its CREATED event.
    a2.user("bob")
    psql("main", "CREATE OR REPLACE FUNCTION patd_test_actor() RETURNS trigger LANGUAGE plpgsql "
                 "AS $$ BEGIN IF NEW.kind = 2 AND NEW.actor = 'bob' THEN PERFORM pg_sleep(30); "
                 "END IF; RETURN NEW; END $$; CREATE TRIGGER stall_create BEFORE INSERT ON "
                 "patd_activity FOR EACH ROW EXECUTE FUNCTION patd_test_actor()")
    killed, r = during(lambda: a2.create("bob", "half"), "patd_token_ids")
    check(killed and a2.reason(r) == (503, "storage_unavailable"),
          "a CreateToken whose session is terminated answers 503", r)
    check(psql("main", "SELECT count(*) FROM patd_tokens WHERE name = 'half'") == "0",
          "and made no token (its row and event are one statement)")
    psql("main", "DROP TRIGGER stall_create ON patd_activity")
    s, b = a2.create("bob", "half")
    check(s == 201 and a2.verify(b["bearer_token"]) == 200, "retried, it is made and verifies", b)
    p2.stop()
    rc, out = patd_tool("check", "--store", main)
    check(rc == 0, "patd check after the terminated sessions: clean", out)

    # ------------------------------------------------------------ PostgreSQL killed under load
    # A lease longer than the outage: a node answers from its cache for as
    # long as its lease holds (docs/cluster.md), here all through it. 30 s,
    # not 10: under make test-asan, PostgreSQL once took 5.8 s to start and
    # the outage 9 s, the lease ran out as it should, and this check failed.
    p3 = serve(main, "--log-level", "info", "--cluster-lease-ms", "30000")
    a3 = Rest(p3)
    check(a3.verify(alice_tok) == 200, "a token cached before the outage")
    acked, refused, verify_ok, verify_bad = [], [], [0], [0]
    stop = threading.Event()

    def writer(i):
        n = 0
        while not stop.is_set():
            n += 1
            name = f"load-{i}-{n}"
            try:
                s, b = a3.create("bob", name)
            except OSError:
                continue
            (acked if s == 201 else refused).append((name, s, b and b.get("error", {}).get(
                "reason")))

    bad_at = []

    def verifier():
        while not stop.is_set():
            st = a3.verify(alice_tok)
            if st == 200:
                verify_ok[0] += 1
            else:
                verify_bad[0] += 1
                bad_at.append((round(time.time() - t_load, 2), st))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=verifier))
    t_load = time.time()
    for t in threads:
        t.start()
    time.sleep(1.0)
    t_crash = time.time() - t_load
    pg("crash")
    time.sleep(0.3)
    before = verify_ok[0]
    time.sleep(2.0)
    during_ok = verify_ok[0] - before
    refused_during = len(refused)
    t_start = time.time() - t_load
    pg("start")
    t_up = time.time() - t_load
    recovered = None
    t0 = time.time()
    while time.time() - t0 < 20:
        s, b = a3.create("bob", f"after-{time.time()}")
        if s == 201:
            recovered = time.time() - t0
            break
        time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    check(during_ok > 0 and verify_bad[0] == 0,
          "cached Verifies went on answering through an outage shorter than the lease",
          (during_ok, verify_bad[0], f"crash {t_crash:.2f} start {t_start:.2f} up {t_up:.2f}",
           bad_at[:3], [x for x in p3.log().splitlines() if ("verify" in x and "status=503" in x) or "lock again" in x or "connected again" in x][:6]))
    reasons = {r for _, _, r in refused}
    check(refused_during > 0 and reasons <= {"storage_unavailable"},
          "changes during the outage answered storage_unavailable", reasons)
    check(recovered is not None, f"patd recovered without a restart ({recovered} s)")
    made = set(psql("main", "SELECT name FROM patd_tokens WHERE name LIKE 'load-%'").split())
    lost = [n for n, _, _ in acked if n not in made]
    check(len(acked) > 0 and not lost, f"nothing acknowledged was lost ({len(acked)} acked)",
          lost[:5])
    log = p3.log()
    check(log.count("cannot use the database") == 1 and log.count("connected again") == 1,
          "the outage is logged once with its cause, and its end once",
          [l for l in log.splitlines() if "postgresql" in l][:6])
    p3.stop()
    rc, out = patd_tool("check", "--store", main)
    check(rc == 0, "patd check after the outage: clean", out)

    # ------------------------------------------------------------ copy-store
    seed = os.path.join(work, "seed")
    tokens_file = os.path.join(work, "tokens.txt")
    r = subprocess.run([os.path.join(BIN, "patseed"), "--data-dir", seed, "--tokens", "100000",
                        "--users", "500", "--out", tokens_file], capture_output=True, text=True)
    check(r.returncode == 0, "patseed: 100k tokens in RocksDB", r.stderr)
    # Some history on the embedded store: uses, a revoke, a deletion.
    src = Patd(BIN, work=tempfile.mkdtemp(dir=work))
    servers.append(src)
    shutil.rmtree(src.data)
    src.stop()
    src.data = seed
    src.key = os.path.join(seed, "platform.key")
    src.start()
    asrc = Rest(src)
    toks = open(tokens_file).read().split()
    for t in toks[:20]:
        asrc.verify(t, "/api/used")
    asrc.user("carol")
    s, b = asrc.create("carol", "gone")
    gone_id = b["token"]["id"]
    asrc.call("PUT", f"/api/user-tokens/{gone_id}", {"revoke": True}, act_as="carol")
    asrc.call("DELETE", f"/api/user-tokens/{gone_id}", act_as="carol")
    s, b = asrc.create("carol", "kept")
    kept_id, kept_tok = b["token"]["id"], b["bearer_token"]
    asrc.verify(kept_tok, "/api/kept")
    src.stop()  # flushes the uses
    target = createdb("copied")
    rc, out = patd_tool("copy-store", "--from", f"rocksdb:{seed}/db", "--to", target)
    check(rc == 0 and "copied 501 users, 100001 tokens" in out and "both stores agree" in out,
          "copy-store rocksdb -> postgresql: copied, compared, checked", out)
    rc, out = patd_tool("copy-store", "--from", f"rocksdb:{seed}/db", "--to", target)
    check(rc == 2 and "not empty" in out, "copy-store refuses a non-empty target", out)
    p4 = serve(target, "--platform-key-file", os.path.join(seed, "platform.key"))
    p4.key = os.path.join(seed, "platform.key")
    a4 = Rest(p4)
    r = subprocess.run([os.path.join(BIN, "patbench"), "--server", p4.server, "--scenario",
                        "verify", "-c", "1", "-P", "16", "--hot", "100000", "-n", "100000",
                        "--tokens-file", tokens_file, "--json"], capture_output=True, text=True,
                       timeout=300)
    res = json.loads(r.stdout) if r.returncode == 0 else {}
    check(res.get("requests") == 100000 and res.get("errors") == 0,
          "every one of the 100k copied tokens verifies through patd on PostgreSQL",
          (r.stdout[-300:], r.stderr[-300:]))
    check(a4.verify(kept_tok) == 200, "a token made through the API verifies after the copy")
    s, b = a4.call("GET", f"/api/user-tokens/{kept_id}/activity", act_as="carol")
    kinds = [e["kind"] for e in (b or {}).get("events", [])]
    check(s == 200 and "created" in kinds and "used" in kinds, "its activity came along", b)
    s, b = a4.call("GET", f"/api/user-tokens/{gone_id}/activity", act_as="carol")
    kinds = [e["kind"] for e in (b or {}).get("events", [])]
    check(s == 200 and kinds[:1] == ["deleted"], "a deleted token's history came along", b)
    s, b = a4.call("GET", f"/api/user-tokens/{kept_id}", act_as="carol")
    check(s == 200 and b.get("last_used") is not None, "last-used times came along", b)
    check(a4.reason(a4.create("carol", "kept")) == (409, "duplicate_name"),
          "names stay unique after the copy")
    s, b = a4.create("carol", "new")
    check(s == 201 and int(b["token"]["id"]) > int(kept_id),
          "a new token's id is above every copied one (ids never reused)", b)
    p4.stop()
finally:
    for srv in servers:
        srv.cleanup()
    subprocess.run([PGSERVER, "stop", pgdir], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)

c.finish()
