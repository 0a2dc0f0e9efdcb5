#!/usr/bin/python3
"""patd's own command line, as a newcomer meets it: `--check` on a
mistyped data directory creates nothing and exits 2 (it once made a fresh
empty store there and reported 0 problems); a second patd on a data
directory that one already serves says which pid holds it and exits 1
(it once printed RocksDB's raw lock error); every change to a user is
logged, never its values; --log-level debug adds one line per request."""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from patdtest import Checks, Patd  # noqa: E402

bindir = os.path.abspath(sys.argv[1])
C = Checks()
check = C.check
PATD = os.path.join(bindir, "patd")

p = Patd(bindir, extra=["--log-level", "debug"])
try:
    typo = os.path.join(p.work, "typo")
    r = subprocess.run([PATD, "--data-dir", typo, "--check"], capture_output=True, text=True,
                       timeout=30)
    check(r.returncode == 2 and "no store" in r.stderr, "--check on a missing store exits 2",
          (r.returncode, r.stderr))
    check(not os.path.exists(typo), "--check created nothing at the mistyped path")

    r = subprocess.run([PATD, "--data-dir", p.data, "--listen", "127.0.0.1:0",
                        "--http-listen", "127.0.0.1:0"], capture_output=True, text=True,
                       timeout=30)
    check(r.returncode == 1 and f"another patd (pid {p.proc.pid})" in r.stderr and
          "Resource temporarily unavailable" not in r.stderr,
          "a second patd names the pid that holds the data directory", r.stderr)
    r = subprocess.run([PATD, "--data-dir", p.data, "--check"], capture_output=True, text=True,
                       timeout=30)
    check(r.returncode == 2 and f"pid {p.proc.pid}" in r.stderr,
          "--check on a served store says who serves it, exit 2", (r.returncode, r.stderr))

    p.user("carol", "member")
    rc, _, _ = p.ctl("users", "upsert", "carol", "--name", "Carol Q", "--email", "c@example.com",
                     platform=True)
    rc2, _, _ = p.ctl("users", "upsert", "carol", "--name", "Carol Q", "--email", "c@example.com",
                      "--role", "manager", platform=True)
    time.sleep(0.2)
    log = p.log()
    check(rc == 0 and rc2 == 0, "upserts")
    check("event=user_created user_id=carol role=member" in log, "a new user is logged")
    check("event=user_updated user_id=carol fields=name,email," in log,
          "a name and email change is logged, by field")
    check("Carol Q" not in log and "c@example.com" not in log, "but not the values")
    check("event=role_changed user_id=carol from=member to=manager" in log, "a role change too")
    check(re.search(r"request conn=\d+ id=\d+ method=pat\.v1\.TokenService/UpsertUser "
                    r"outcome=ok latency_us=\d+", log) is not None,
          "debug: one line per request with method, outcome, latency, connection")
finally:
    p.cleanup()
C.finish()
