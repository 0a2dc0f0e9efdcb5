#!/usr/bin/python3
"""patd's own command line, as a newcomer meets it: `--check` on a
mistyped data directory creates nothing and exits 2 (it once made a fresh
empty store there and reported 0 problems); a second patd on a data
directory that one already serves says which pid holds it and exits 1
(it once printed RocksDB's raw lock error); every change to a user is
logged, never its values; --log-level debug adds one line per request;
the platform key rotates without a restart: the key file holds the
current and the next key, SIGHUP reloads it, calls with either key work
during the overlap, the old one fails after it, a file that cannot be used
keeps the keys in force, and connections stay open throughout; --store
chooses the store by URL and refuses an unknown scheme in one line, and
`patd check` checks a store wherever it is; <data-dir>/patd.addr names the
ports patd really has (patctl --addr-file reads it) and goes when it
stops."""
import http.client
import os
import re
import secrets
import shutil
import signal
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
    # --- platform key rotation on SIGHUP
    key_a = open(p.key).read().strip()
    key_b = secrets.token_hex(32)
    files = {}
    for name, content in (("a", key_a), ("b", key_b)):
        files[name] = os.path.join(p.work, f"key-{name}")
        with open(files[name], "w") as f:
            f.write(content + "\n")
        os.chmod(files[name], 0o600)

    def with_key(name):
        argv = [os.path.join(bindir, "patctl"), "--server", p.server,
                "--platform-key-file", files[name], "users", "get", "carol"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).returncode

    def reload(content, mode=0o600):
        with open(p.key, "w") as f:
            f.write(content)
        os.chmod(p.key, mode)
        before = p.log().count("event=platform_keys_reload")
        p.proc.send_signal(signal.SIGHUP)
        for _ in range(200):
            if p.log().count("event=platform_keys_reload") > before:
                return
            time.sleep(0.01)

    tok = p.token("carol", "rot", "--expires", "30d")
    kept = http.client.HTTPConnection("127.0.0.1", p.http_port, timeout=10)

    def kept_ok():
        kept.request("GET", "/v1/verify", headers={"Authorization": "Bearer " + tok})
        r = kept.getresponse()
        r.read()
        return r.status == 200

    check(kept_ok(), "a keep-alive connection before the rotation")
    reload(key_a + "\n" + key_b + "\n")
    check("event=platform_keys_reloaded" in p.log() and "keys=2" in p.log(),
          "SIGHUP reloads two keys")
    check(with_key("a") == 0 and with_key("b") == 0, "during the overlap, either key works")
    reload(key_b + "\n")
    check(with_key("a") == 1 and with_key("b") == 0, "after it, the old key fails, the new works")
    reload(key_a + "\n", mode=0o644)
    check("event=platform_keys_reload_failed" in p.log() and "chmod 600" in p.log(),
          "a key file readable by others is not loaded, and the log says why")
    check(with_key("b") == 0 and with_key("a") == 1, "the keys in force stay after a failed reload")
    check(kept_ok(), "the same connection still serves after three reloads")
    check(p.proc.poll() is None, "patd is still running")
    check(key_a not in p.log() and key_b not in p.log(), "no key in the log")
    kept.close()
    # --- issue 21: <data-dir>/patd.addr names the ports patd really has, and
    # patctl --addr-file asks it there (a container's healthcheck)
    addr = open(os.path.join(p.data, "patd.addr")).read()
    check(addr == f"framed 127.0.0.1:{p.port}\nhttp 127.0.0.1:{p.http_port}\n",
          "patd.addr names the framed and HTTP listeners' real ports", addr)
    check(oct(os.stat(os.path.join(p.data, "patd.addr")).st_mode & 0o777) == "0o600",
          "patd.addr is 0600")
    r = subprocess.run([os.path.join(bindir, "patctl"), "--addr-file",
                        os.path.join(p.data, "patd.addr"), "health"], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0 and "SERVING" in r.stdout.upper(), "patctl --addr-file health",
          (r.returncode, r.stdout, r.stderr))
    r = subprocess.run([os.path.join(bindir, "patctl"), "--addr-file",
                        os.path.join(p.work, "nope.addr"), "health"], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 3 and "cannot read" in r.stderr, "a missing address file: cannot connect",
          (r.returncode, r.stderr))

    # --- issue 13: --store URL chooses the store; `patd check` is the subcommand
    r = subprocess.run([PATD, "--data-dir", os.path.join(p.work, "d2"), "--store", "mysql://db/x"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 1 and "names no known store: use rocksdb:DIR" in r.stderr,
          "an unknown store scheme is refused in one line", (r.returncode, r.stderr))
    r = subprocess.run([PATD, "-h"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and "--store URL" in r.stdout and "(default 16; 1..256)" in r.stdout,
          "-h prints the table's help with defaults and bounds", r.stdout[:200])
finally:
    p.cleanup()

elsewhere = os.path.join(os.path.dirname(p.work), os.path.basename(p.work) + "-store")
q = Patd(bindir, extra=["--store", f"rocksdb:{elsewhere}"])
try:
    q.user("dave", "member")
    q.stop()
    check(not os.path.exists(os.path.join(q.data, "patd.addr")),
          "patd.addr goes when patd stops")
    check(os.path.exists(os.path.join(elsewhere, "CURRENT")) and
          not os.path.exists(os.path.join(q.data, "db")),
          "--store rocksdb:DIR keeps the tokens there, not in the data directory")
    r = subprocess.run([PATD, "check", "--data-dir", q.data, "--store", f"rocksdb:{elsewhere}"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and "0 problem(s)" in r.stdout, "patd check on that store",
          (r.returncode, r.stdout, r.stderr))
finally:
    q.cleanup()
    shutil.rmtree(elsewhere, ignore_errors=True)
C.finish()
