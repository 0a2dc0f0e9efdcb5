#!/usr/bin/python3
"""Real gateways in front of a real API, protected by a real patd: nginx
(auth_request) and Caddy (forward_auth) from Debian, configured from
docs/gateways.md as it stands (the blocks between its gateway markers, with
only the port numbers swapped for free ones), in front of an upstream that
echoes the headers it received. Through each, with curl: the identity
reaches the upstream; a forged X-Patd-User-Id never does; R11 a revoked
token is refused on the very next request; R5 a SCIM-only token is 403 off
/scim/v2/; R13 an admin-only location refuses a user downgraded to member
on the next request; R14 a deactivated user's token is 401; no
Authorization is 401. Then the Envoy and Traefik request shapes, sent to
patd with curl."""
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from patdtest import Checks, Patd, free_port, start_nginx  # noqa: E402

bindir, doc = sys.argv[1], sys.argv[2]
C = Checks()
check = C.check


def block(name):
    text = open(doc).read()
    m = re.search(r"<!-- gateway:%s:begin -->\n```\w+\n(.*?)```\n<!-- gateway:%s:end -->" %
                  (name, name), text, re.S)
    if not m:
        raise SystemExit(f"docs/gateways.md has no {name} block")
    return m.group(1)


seen = []  # what the upstream received: (path, headers)


class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        h = {k.lower(): v for k, v in self.headers.items()}
        seen.append((self.path, h))
        body = json.dumps({"path": self.path, "headers": h}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def wait_port(port, proc, what):
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise SystemExit(f"{what} exited at start")
            time.sleep(0.02)
    raise SystemExit(f"{what} did not listen on {port}")


def curl(port, path, token=None, headers=()):
    argv = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", f"http://127.0.0.1:{port}{path}"]
    if token:
        argv += ["-H", "Authorization: Bearer " + token]
    for h in headers:
        argv += ["-H", h]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=15).stdout
    body, _, code = out.rpartition("\n")
    return int(code or 0), body


def upstream_saw(body):
    try:
        return json.loads(body)["headers"]
    except (ValueError, KeyError):
        return {}


p = Patd(bindir)
work = p.work
procs = []
up_port = free_port()
upstream = http.server.ThreadingHTTPServer(("127.0.0.1", up_port), Echo)
threading.Thread(target=upstream.serve_forever, daemon=True).start()
try:
    p.user("alice", "member")
    p.user("root", "admin")
    p.user("dora", "member")
    alice = p.token("alice", "api", "--expires", "30d")
    scim = p.token("root", "scim", "--scim", "--expires", "30d")
    root = p.token("root", "ops", "--expires", "30d")
    dora = p.token("dora", "d", "--expires", "30d")

    # nginx, configured from the document
    nginx_port = free_port()
    conf = block("nginx").replace("127.0.0.1:7780", f"127.0.0.1:{p.http_port}") \
        .replace("127.0.0.1:8000", f"127.0.0.1:{nginx_port}") \
        .replace("127.0.0.1:8080", f"127.0.0.1:{up_port}")
    nginx = start_nginx(work, conf)
    procs.append(nginx)
    wait_port(nginx_port, nginx, "nginx")

    # Caddy, configured from the document
    caddy_port = free_port()
    cfile = block("caddy").replace("127.0.0.1:7780", f"127.0.0.1:{p.http_port}") \
        .replace("127.0.0.1:8001", f"127.0.0.1:{caddy_port}") \
        .replace("127.0.0.1:8080", f"127.0.0.1:{up_port}")
    cdir = os.path.join(work, "caddy")
    os.makedirs(cdir, exist_ok=True)
    with open(os.path.join(cdir, "Caddyfile"), "w") as f:
        f.write(cfile)
    cenv = dict(os.environ, HOME=cdir, XDG_DATA_HOME=cdir, XDG_CONFIG_HOME=cdir)
    caddy = subprocess.Popen(["caddy", "run", "--config", os.path.join(cdir, "Caddyfile"),
                              "--adapter", "caddyfile"], env=cenv,
                             stdout=open(os.path.join(cdir, "log"), "w"), stderr=subprocess.STDOUT)
    procs.append(caddy)
    wait_port(caddy_port, caddy, "caddy")

    for gw, port in (("nginx", nginx_port), ("caddy", caddy_port)):
        code, body = curl(port, "/api/datastores", alice)
        h = upstream_saw(body)
        check(code == 200 and h.get("x-patd-user-id") == "alice" and
              h.get("x-patd-user-role") == "member" and h.get("x-patd-token-kind") == "personal",
              f"{gw}: a valid token reaches the upstream with its identity", (code, h))
        code, body = curl(port, "/api/datastores", alice,
                          ["X-Patd-User-Id: root", "X-Patd-User-Role: admin"])
        h = upstream_saw(body)
        check(code == 200 and h.get("x-patd-user-id") == "alice" and
              h.get("x-patd-user-role") == "member",
              f"{gw}: a forged X-Patd-User-Id never reaches the upstream", h)
        n = len(seen)
        code, _ = curl(port, "/api/datastores", None, ["X-Patd-User-Id: root"])
        check(code == 401 and len(seen) == n, f"{gw}: no Authorization is 401, upstream untouched",
              code)
        code, _ = curl(port, "/api/datastores", "patp_not_a_token")
        check(code == 401, f"{gw}: a malformed token is 401", code)

        code, _ = curl(port, "/api/users", scim)
        check(code == 403, f"{gw}: R5 a SCIM token is 403 off /scim/v2/", code)
        code, body = curl(port, "/scim/v2/Users", scim)
        check(code == 200 and upstream_saw(body).get("x-patd-token-scim") == "true",
              f"{gw}: R5 a SCIM token passes on /scim/v2/", code)

        code, _ = curl(port, "/api/admin/settings", root)
        check(code == 200, f"{gw}: an admin passes the admin-only location", code)
        code, _ = curl(port, "/api/admin/settings", alice)
        check(code == 403, f"{gw}: a member is 403 on the admin-only location", code)
        p.user("root", "member")
        code, _ = curl(port, "/api/admin/settings", root)
        check(code == 403, f"{gw}: R13 downgraded to member, refused on the next request", code)
        p.user("root", "admin")

        p.ctl("users", "deactivate", "dora", platform=True)
        code, _ = curl(port, "/api/datastores", dora)
        check(code == 401, f"{gw}: R14 a deactivated user's token is 401", code)
        p.ctl("users", "activate", "dora", platform=True)
        code, _ = curl(port, "/api/datastores", dora)
        check(code == 200, f"{gw}: and 200 once active again", code)

    # nginx keeps its connections to patd: patd's /v1/verify answers carry
    # no body, which auth_request would not read (it then closed the
    # connection after every request: 14 000 in TIME_WAIT in 2 s).
    def accepted():
        body = subprocess.run(["curl", "-s", f"http://127.0.0.1:{p.http_port}/metrics"],
                              capture_output=True, text=True, timeout=10).stdout
        for line in body.splitlines():
            if line.startswith("patd_connections_accepted_total "):
                return int(line.split()[1])
        return -1

    a0 = accepted()
    for _ in range(100):
        curl(nginx_port, "/api/keepalive", alice)
    a1 = accepted()
    check(a0 >= 0 and a1 - a0 <= 10, "nginx reuses its connections to patd (keepalive)",
          (a0, a1))

    # R11 through both, on the very next request
    victim = p.token("alice", "leaky", "--expires", "30d")
    ok = [curl(port, "/api/x", victim)[0] for port in (nginx_port, caddy_port)]
    rc, _, _ = p.ctl("tokens", "revoke", "leaky", as_user="alice")
    after = [curl(port, "/api/x", victim)[0] for port in (nginx_port, caddy_port)]
    check(rc == 0 and ok == [200, 200] and after == [401, 401],
          "R11: revoked, refused by both gateways on the next request", (ok, after))

    # Envoy ext_authz (path_prefix) and Traefik forwardAuth shapes, with curl
    code, body = curl(p.http_port, "/v1/verify/scim/v2/Users?startIndex=1", scim,
                      ["x-request-id: envoy-1"])
    check(code == 200, "Envoy shape: the path after /v1/verify is the one checked", code)
    code, _ = curl(p.http_port, "/v1/verify/api/users", scim)
    check(code == 403, "Envoy shape: a SCIM token off /scim/v2/ is 403", code)
    code, _ = curl(p.http_port, "/v1/verify", scim,
                   ["X-Forwarded-Method: GET", "X-Forwarded-Uri: /scim/v2/Groups",
                    "X-Forwarded-For: 192.0.2.10"])
    check(code == 200, "Traefik shape: X-Forwarded-Uri is the path checked", code)
finally:
    upstream.shutdown()
    for pr in procs:
        pr.terminate()
        try:
            pr.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pr.kill()
    p.cleanup()
C.finish()
