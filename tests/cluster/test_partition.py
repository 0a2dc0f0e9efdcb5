#!/usr/bin/env python3
"""Cluster (issue 19): a network partition between one node and PostgreSQL.

Nodes A and B run on this host and reach PostgreSQL over its Unix socket.
Node P runs in a network namespace of its own, made here, with two veth
pairs to this host: one to PostgreSQL (which listens on its host end) and
one for P's clients. Setting the database pair's host end down cuts P off
from PostgreSQL while its clients still reach it, and packets vanish
without a word, as in a real partition. Then:

- P answers from its cache until its lease runs out, no longer (the time is
  measured and printed: docs/cluster.md quotes it), then refuses to answer
  from it: Verify 503 and /readyz 503;
- A's revoke waits at most one lease plus its margin for P; B refuses the
  revoked token at once, and P never says yes for it;
- when the link returns, P joins again, catches up and serves: the revoked
  token is refused, a live one verifies.

Needs root (network namespaces), as CI has. usage: test_partition.py BINDIR SRCDIR"""
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from patdtest import Checks, Patd, Rest, wait_ready  # noqa: E402

BIN, SRC = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
PGSERVER = os.path.join(SRC, "tests", "lib", "pgserver.sh")
LEASE_MS = 1000
MARGIN_S = 2 * 0.001 * LEASE_MS / 1000 + 0.025  # 2*rho*L + allowance (the defaults)
c = Checks()
check = c.check
work = tempfile.mkdtemp(prefix="patd-part-")
pgdir = tempfile.mkdtemp(prefix="pg-", dir="/tmp")
n = os.getpid() % 200 + 20
NS = f"patdpart{n}"
DBNET, CLNET = f"10.201.{n}.", f"10.202.{n}."  # .1 this host, .2 the namespace (/30)
VDB, VCL = f"pdb{n}", f"pcl{n}"  # veth pairs: <name>h here, <name>n in the namespace


def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def net_up():
    sh("ip", "netns", "add", NS)
    sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")
    for v, net in ((VDB, DBNET), (VCL, CLNET)):
        sh("ip", "link", "add", v + "h", "type", "veth", "peer", "name", v + "n")
        sh("ip", "link", "set", v + "n", "netns", NS)
        sh("ip", "addr", "add", net + "1/30", "dev", v + "h")
        sh("ip", "link", "set", v + "h", "up")
        sh("ip", "netns", "exec", NS, "ip", "addr", "add", net + "2/30", "dev", v + "n")
        sh("ip", "netns", "exec", NS, "ip", "link", "set", v + "n", "up")


def net_down():
    for argv in (["ip", "link", "del", VDB + "h"], ["ip", "link", "del", VCL + "h"],
                 ["ip", "netns", "del", NS]):
        subprocess.run(argv, capture_output=True)


if os.geteuid() != 0:
    print("FAIL: the partition test needs root for network namespaces (CI runs as root)",
          file=sys.stderr)
    sys.exit(1)

servers = []
try:
    net_up()
    env = dict(os.environ, PGSERVER_LISTEN=DBNET + "1", PGSERVER_HBA=DBNET + "0/30")
    subprocess.run([PGSERVER, "start", pgdir], check=True, capture_output=True, env=env)
    subprocess.run(["createdb", "-h", pgdir, "-U", "postgres", "c"], check=True)
    keyfile = os.path.join(work, "platform.key")
    with open(keyfile, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    os.chmod(keyfile, 0o600)
    key = open(keyfile).read().split()[0]
    common = ["--platform-key-file", keyfile, "--cluster-lease-ms", str(LEASE_MS)]
    local = f"postgresql:///c?host={pgdir}&user=postgres"
    for _ in range(2):
        servers.append(Patd(BIN, extra=["--store", local] + common,
                            work=tempfile.mkdtemp(dir=work)))
    servers.append(Patd(BIN, extra=["--store", f"postgresql://postgres@{DBNET}1:5432/c"] + common,
                        work=tempfile.mkdtemp(dir=work), host=CLNET + "2",
                        prefix=["ip", "netns", "exec", NS]))
    A, B, P = (Rest(p, key, timeout=60) for p in servers)
    check(wait_ready((A, B, P), 15), "A, B and P (in its own network namespace) are ready")
    A.user("alice")
    _, live = A.token("alice", "live")
    tid, tok = A.token("alice", "revoked-while-cut-off")
    check(P.verify(live) == 200 and P.verify(tok) == 200 and B.verify(tok) == 200,
          "tokens made on A verify on P over its own network (and are in its cache)")

    # ---------------------------------------------------------------- the cut
    seen = []  # (sent, status) of P's Verifies of the live token
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            t0 = time.monotonic()
            st = P.verify(live)
            seen.append((t0, st, time.monotonic() - t0))
            time.sleep(0.01)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.2)
    cut = time.monotonic()
    sh("ip", "link", "set", VDB + "h", "down")
    s, took = A.revoke("alice", tid)
    check(s == 200 and took <= LEASE_MS / 1000 + MARGIN_S + 0.3,
          f"A's revoke with P cut off is acknowledged after {took:.3f} s, within a lease plus "
          "its margin", (s, took))
    check(B.verify(tok) == 401, "B refuses the revoked token at once")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and P.ready() != 503:
        time.sleep(0.02)
    check(P.ready() == 503, "P, cut off, says 503 on /readyz once its lease is over")
    p_tok = P.verify(tok)
    check(p_tok != 200, "P never says yes for the token revoked meanwhile", p_tok)
    time.sleep(0.3)
    stop.set()
    poller.join()
    after = [(t - cut, st) for t, st, _ in seen if t >= cut]
    slowest = max(d for t, _, d in seen if t >= cut)
    last_yes = max((t for t, st in after if st == 200), default=0.0)
    firsts = sorted({st for _, st in after if _ > last_yes})
    print(f"P answered Verify from its cache for {last_yes:.3f} s after the cut "
          f"(lease {LEASE_MS} ms, margin {MARGIN_S * 1000:.0f} ms); then {firsts}; the slowest "
          f"Verify took {slowest:.3f} s")
    check(slowest < 7, "no Verify on P waited for TCP's retransmissions (tcp_user_timeout)",
          slowest)
    check(0 < last_yes <= LEASE_MS / 1000, "P answered from its cache for at most one lease",
          last_yes)
    check(firsts == [503], "and then 503, nothing else", after[-5:])

    # ---------------------------------------------------------------- the link returns
    sh("ip", "link", "set", VDB + "h", "up")
    check(wait_ready((P,), 30), "the link is back: P joins again, catches up and is ready")
    check(P.verify(tok) == 401, "R16: P refuses the token revoked while it was cut off")
    check(P.verify(live) == 200, "and verifies the live one")
    tid2, tok2 = A.token("alice", "after")
    check(P.verify(tok2) == 200, "a token made after the partition verifies on P")
    s, took = A.revoke("alice", tid2)
    check(s == 200 and took < LEASE_MS / 1000 and P.verify(tok2) == 401,
          f"a revoke on A waits for P's acknowledgement again ({took:.3f} s), and P refuses it",
          (s, took))
finally:
    for p in servers:
        try:
            p.stop()
        except Exception:
            p.proc.kill()
    subprocess.run([PGSERVER, "stop", pgdir], capture_output=True)
    net_down()
sys.exit(c.finish())
