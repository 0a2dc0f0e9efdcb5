#!/usr/bin/python3
"""TLS on both listeners of a real patd: the certificates of docs/tls.md
made by its openssl commands as written; real clients (openssl s_client,
curl --cacert, Python's ssl with the framed protocol, patctl, nginx's
auth_request over TLS); every refusal the transport owes (another CA, no
client certificate, an expired or not-yet-valid server certificate, TLS
1.1, clear text to a TLS port, garbage, a stalled handshake, a flood of
half-open handshakes, renegotiation), each followed by a good client; the
certificate reloaded by SIGHUP under load; no key material logged."""
import datetime
import http.server
import warnings
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from patdtest import (Checks, Patd, _pb_bytes, _pb_has_error, _recv_exact,  # noqa: E402
                      free_port, start_nginx)

bindir, doc = sys.argv[1], sys.argv[2]
warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is asked for on purpose
C = Checks()
check = C.check
text = open(doc).read()


def block(name):
    m = re.search(r"<!-- tls:%s:begin -->\n```\w+\n(.*?)```\n<!-- tls:%s:end -->" % (name, name),
                  text, re.S)
    if not m:
        raise SystemExit(f"docs/tls.md has no {name} block")
    return m.group(1)


certs = tempfile.mkdtemp(prefix="patd-tls-")
os.chmod(certs, 0o755)
r = subprocess.run(["bash", "-e", "-c", block("certs")], cwd=certs, capture_output=True, text=True)
check(r.returncode == 0 and all(os.path.exists(os.path.join(certs, f)) for f in
                                ("ca.pem", "server.pem", "server.key", "client.pem")),
      "docs/tls.md's openssl commands make the CA and certificates as written", r.stderr[-500:])
# A second CA and its client: a certificate patd must refuse.
subprocess.run(["bash", "-e", "-c", block("certs").replace("ca.", "other-ca.")
                .replace("client.", "other-client.").replace("server.", "other-server.")],
               cwd=certs, capture_output=True, check=True)
cf = lambda n: os.path.join(certs, n)  # noqa: E731

# A key that group or others may read is refused, as the platform key is.
shutil.copy(cf("server.key"), cf("open.key"))
os.chmod(cf("open.key"), 0o644)
r = subprocess.run([os.path.join(bindir, "patd"), "--data-dir", os.path.join(certs, "d"),
                    "--listen", "tls://127.0.0.1:0", "--http-listen", "", "--tls-cert",
                    cf("server.pem"), "--tls-key", cf("open.key")], capture_output=True, text=True,
                   timeout=20)
check(r.returncode != 0 and "chmod 600" in r.stderr and "PRIVATE" not in r.stderr,
      "a TLS key readable by others is refused, saying why", r.stderr[-300:])
r = subprocess.run([os.path.join(bindir, "patd"), "--data-dir", os.path.join(certs, "d"),
                    "--listen", "tls://127.0.0.1:0", "--http-listen", ""], capture_output=True,
                   text=True, timeout=20)
check(r.returncode != 0 and "--tls-cert" in r.stderr, "a tls:// listener without a certificate "
      "is refused at start", r.stderr[-300:])

run = block("run").replace("\\\n", " ").split()
check(run[0] == "patd", "docs/tls.md runs patd", run)
args = [a if not a.endswith((".pem", ".key")) else cf(a) for a in run[1:]]
# Its listeners, on free ports: patdtest adds --listen/--http-listen of its own.
listen = [a for a in args if a.startswith(("tls://", "https://"))]
args = [a for i, a in enumerate(args) if a not in listen and args[i - 1 if i else 0] not in
        ("--listen", "--http-listen") and a not in ("--listen", "--http-listen")]
EXTRA = args + ["--tls-handshake-timeout", "1", "--tls-max-handshakes", "64"]


class TlsPatd(Patd):
    """patd with both listeners on TLS, on free ports."""

    def start(self):
        pf, hpf = os.path.join(self.work, "port"), os.path.join(self.work, "http-port")
        for f in (pf, hpf):
            if os.path.exists(f):
                os.unlink(f)
        argv = [self.bin, "--data-dir", self.data, "--listen", "tls://127.0.0.1:0",
                "--port-file", pf, "--http-listen", "https://127.0.0.1:0", "--http-port-file",
                hpf, "--drain-grace-ms", "0", "--workers", "4"] + self.extra
        self.proc = subprocess.Popen(argv, stderr=open(self.log_path, "a"))
        from patdtest import _wait_file
        self.port = _wait_file(pf, self.proc, "its port file")
        self.http_port = _wait_file(hpf, self.proc, "its HTTP port file")
        self.server = f"127.0.0.1:{self.port}"


def ctx(ca="ca.pem", cert=None, key=None, maxv=None, minv=None):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.load_verify_locations(cf(ca))
    if cert:
        c.load_cert_chain(cf(cert), cf(key))
    if maxv:
        c.maximum_version = maxv
    if minv:
        c.minimum_version = minv
    return c


def framed(port, method, payload=b"", auth=None, context=None, name="127.0.0.1"):
    """One framed call over TLS; True if its status is OK."""
    md = b""
    if auth:
        md = _pb_bytes(4, _pb_bytes(1, b"authorization") + _pb_bytes(2, auth.encode()))
    env = _pb_bytes(2, f"pat.v1.TokenService/{method}".encode()) + _pb_bytes(3, payload) + md
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    s = (context or ctx()).wrap_socket(raw, server_hostname=name)
    try:
        s.sendall(len(env).to_bytes(4, "big") + env)
        n = int.from_bytes(_recv_exact(s, 4), "big")
        return not _pb_has_error(_recv_exact(s, n))
    finally:
        s.close()


def https(port, path, context=None, headers=None):
    import http.client
    c = http.client.HTTPSConnection("127.0.0.1", port, context=context or ctx(), timeout=5)
    c.request("GET", path, headers=headers or {})
    resp = c.getresponse()
    body = resp.read()
    c.close()
    return resp.status, resp, body


def good(p):
    return framed(p.port, "Health") and https(p.http_port, "/healthz")[0] == 200


def refused(fn):
    try:
        fn()
        return False
    except (ssl.SSLError, ConnectionError, OSError):
        return True


p = TlsPatd(bindir, extra=EXTRA)
try:
    key = open(p.key).read().split()[0]
    check(good(p), "a framed call (Python's ssl) and an HTTPS request succeed")
    out = subprocess.run(["curl", "-s", "--cacert", cf("ca.pem"),
                          f"https://127.0.0.1:{p.http_port}/healthz"],
                         capture_output=True, text=True).stdout
    check(out == "ok\n", "curl --cacert https://.../healthz", out)
    out = subprocess.run(["curl", "-s", "--cacert", cf("ca.pem"),
                          f"https://localhost:{p.http_port}/api/health"],
                         capture_output=True, text=True).stdout
    check('"status":"serving"' in out, "by name too (the SAN DNS:localhost)", out)
    sc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{p.http_port}", "-CAfile",
                         cf("ca.pem"), "-alpn", "http/1.1"], input="", capture_output=True,
                        text=True, timeout=10).stdout
    check("Verify return code: 0 (ok)" in sc and "ALPN protocol: http/1.1" in sc,
          "openssl s_client: verified, ALPN http/1.1", sc[-400:])
    sc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{p.http_port}", "-CAfile",
                         cf("ca.pem"), "-alpn", "h2"], input="", capture_output=True, text=True,
                        timeout=10)
    check("no application protocol" in sc.stdout + sc.stderr,
          "a client offering only h2 is refused on the HTTP port", sc.stderr[-300:])
    ctl = [os.path.join(bindir, "patctl"), "--server", f"tls://127.0.0.1:{p.port}"]
    r = subprocess.run(ctl + ["--cacert", cf("ca.pem"), "health"], capture_output=True, text=True)
    check(r.returncode == 0 and r.stdout.startswith("SERVING"), "patctl --cacert health", r.stderr)
    r = subprocess.run(ctl + ["health"], capture_output=True, text=True,
                       env=dict(os.environ, PATD_CACERT=cf("ca.pem")))
    check(r.returncode == 0, "PATD_CACERT", r.stderr)
    r = subprocess.run(ctl + ["--cacert", cf("other-ca.pem"), "health"], capture_output=True,
                       text=True)
    check(r.returncode == 3 and "not trusted" in r.stderr,
          "patctl refuses a server certificate from another CA", r.stderr)
    r = subprocess.run(ctl + ["--cacert", cf("ca.pem"), "--cert", cf("client.pem"), "--key",
                              cf("client.key"), "--platform-key-file", p.key, "users", "list"],
                       capture_output=True, text=True)
    check(r.returncode == 0, "patctl with a client certificate and the platform key", r.stderr)

    # The page's session cookie is Secure over https://.
    import http.client
    import json

    def call(method, path, body=None):
        h = http.client.HTTPSConnection("127.0.0.1", p.http_port, context=ctx(), timeout=5)
        hdrs = {"Authorization": "Platform " + key, "Content-Type": "application/json"}
        h.request(method, path, body=json.dumps(body) if body is not None else None, headers=hdrs)
        resp = h.getresponse()
        data = resp.read()
        h.close()
        return resp, data
    call("PUT", "/api/users/alice", {"user_name": "alice"})
    link = json.loads(call("POST", "/api/users/alice/ui-link")[1])["path"]
    _, resp, _ = https(p.http_port, link)
    cookie = resp.getheader("Set-Cookie") or ""
    check(resp.status == 303 and "HttpOnly" in cookie and "; Secure" in cookie,
          "over https:// the page's session cookie is Secure", cookie.split(";", 1)[-1])

    # Refusals, each followed by a good client.
    check(refused(lambda: framed(p.port, "Health", context=ctx("ca.pem", "other-client.pem",
                                                                 "other-client.key"))),
          "a client certificate from another CA ends the handshake")
    check(good(p), "... and a good client is served")
    check(refused(lambda: framed(p.port, "Health", context=ctx(maxv=ssl.TLSVersion.TLSv1_1,
                                                               minv=ssl.TLSVersion.TLSv1))),
          "TLS 1.1 is refused")
    check(good(p), "... and a good client is served")
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(b"\x00\x00\x00\x05hello" * 4)
    try:
        closed = s.recv(100) == b""
    except ConnectionError:
        closed = True
    s.close()
    check(closed and good(p), "clear-text frames to the TLS port: closed, patd unaffected")
    s = socket.create_connection(("127.0.0.1", p.http_port), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        got = s.recv(100)
    except ConnectionError:
        got = b""
    s.close()
    check(b"HTTP/1.1 200" not in got and good(p), "clear-text HTTP to the HTTPS port is not served")
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(os.urandom(300) + b"\x16\x03\x01")
    s.close()
    check(good(p), "garbage before a ClientHello: closed, patd unaffected")
    # A handshake that stalls halfway: the ClientHello's first bytes only.
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    try:
        s.settimeout(4)
        got = s.recv(10)
    except (socket.timeout, ConnectionError):
        got = None
    s.close()
    check(got == b"" and time.time() - t0 < 3, "a stalled handshake is closed at "
          "--tls-handshake-timeout (1 s)", f"{got!r} after {time.time() - t0:.1f} s")
    # A flood of half-open handshakes: 1000 connections that send half a
    # ClientHello and stop. An established connection goes on working; new
    # ones are taken again once the stalled ones time out.
    est = ctx().wrap_socket(socket.create_connection(("127.0.0.1", p.http_port), timeout=5),
                            server_hostname="127.0.0.1")
    flood = []
    for _ in range(1000):
        try:
            f = socket.create_connection(("127.0.0.1", p.port), timeout=5)
            f.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            flood.append(f)
        except OSError:
            pass
    est.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    check(b"200 OK" in est.recv(4096), "during a flood of 1000 half-open handshakes an "
          "established TLS connection is served")
    time.sleep(1.5)
    check(good(p), "... and once they time out a new client is served")
    for f in flood:
        f.close()
    est.close()
    sc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{p.http_port}", "-CAfile",
                         cf("ca.pem"), "-tls1_2"], input="R\n", capture_output=True, text=True,
                        timeout=10)
    check("RENEGOTIATING" in sc.stdout + sc.stderr and "no renegotiation" in sc.stderr and good(p),
          "a renegotiation attempt is refused and patd is unaffected", sc.stderr[-300:])

    # Bug: patd died of SIGPIPE writing its session tickets to a client
    # that had closed (reset) right after the handshake.
    import struct
    for _ in range(50):
        s = ctx().wrap_socket(socket.create_connection(("127.0.0.1", p.http_port)),
                              server_hostname="127.0.0.1")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    time.sleep(0.2)
    check(p.proc.poll() is None and good(p),
          "clients that reset right after the handshake: patd lives (SIGPIPE ignored)")

    # Session tickets: a second connection resumes the first one's session.
    resumed = []
    for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        c = ctx(maxv=v, minv=v)
        s1 = c.wrap_socket(socket.create_connection(("127.0.0.1", p.http_port)),
                           server_hostname="127.0.0.1")
        s1.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s1.recv(4096)  # the answer, and with TLS 1.3 the tickets before it
        sess = s1.session
        s1.close()
        s2 = c.wrap_socket(socket.create_connection(("127.0.0.1", p.http_port)),
                           server_hostname="127.0.0.1", session=sess)
        resumed.append(s2.session_reused)
        s2.close()
    check(resumed == [True, True], "session tickets resume a session (TLS 1.2 and 1.3)", resumed)

    # The handshakes so far, by outcome, on /metrics.
    page = https(p.http_port, "/metrics")[2].decode()
    got = dict(re.findall(r'patd_tls_handshakes_total\{result="(\w+)"\} (\d+)', page))
    check(int(got.get("done", 0)) > 10 and int(got.get("resumed", 0)) >= 2 and
          int(got.get("failed", 0)) >= 3 and
          int(got.get("timed_out", 0)) >= 1 and int(got.get("refused_busy", 0)) >= 100,
          "/metrics counts TLS handshakes by outcome", got)

    # Certificate reload under load: no request fails during it.
    before = ssl.DER_cert_to_PEM_cert(
        ctx().wrap_socket(socket.create_connection(("127.0.0.1", p.http_port)),
                          server_hostname="127.0.0.1").getpeercert(True))
    failures, calls, stop = [], [0], threading.Event()

    def load():
        c = ctx()
        while not stop.is_set():
            try:
                if https(p.http_port, "/healthz", c)[0] != 200:
                    failures.append("status")
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e))
            calls[0] += 1
    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    shutil.copy(cf("server.pem"), cf("server-old.pem"))
    # A new key and certificate from the same CA, in place of the old.
    subprocess.run(["bash", "-e", "-c",
                    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=patd "
                    "-keyout server.key -out server.csr && openssl x509 -req -in server.csr -CA "
                    "ca.pem -CAkey ca.key -CAcreateserial -days 90 -extfile <(printf "
                    "'subjectAltName=DNS:localhost,IP:127.0.0.1') -out server.pem && "
                    "chmod 600 server.key"], cwd=certs, check=True, capture_output=True)
    p.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    with open(cf("broken.pem"), "w") as f:
        f.write("not a certificate\n")
    os.rename(cf("server.pem"), cf("server-new.pem"))
    shutil.copy(cf("broken.pem"), cf("server.pem"))
    p.proc.send_signal(signal.SIGHUP)  # a reload that fails: the new certificate stays
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    os.replace(cf("server-new.pem"), cf("server.pem"))
    if not check(p.proc.poll() is None, "patd is still running after the reloads", p.log()[-3000:]):
        raise SystemExit(C.finish())
    after = ssl.DER_cert_to_PEM_cert(
        ctx().wrap_socket(socket.create_connection(("127.0.0.1", p.http_port)),
                          server_hostname="127.0.0.1").getpeercert(True))
    check(not failures and calls[0] > 20, "SIGHUP reloads the certificate under load: no "
          "request failed", f"{len(failures)} of {calls[0]}: {failures[:3]}")
    check(before != after and after == open(cf("server.pem")).read(),
          "new connections get the new certificate")
    log = p.log()
    check("event=tls_reloaded" in log and "event=tls_reload_failed" in log,
          "both reloads are logged, the failed one with why", log[-800:])
    keys = [open(cf(k)).read().split("\n")[1] for k in ("server.key", "client.key", "ca.key")]
    check("PRIVATE KEY" not in log and not any(k in log for k in keys) and key not in log,
          "no key material in the log")
finally:
    p.cleanup()

# An expired and a not-yet-valid server certificate, as patctl sees them.
try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
    ca_key = serialization.load_pem_private_key(open(cf("ca.key"), "rb").read(), None)
    ca = x509.load_pem_x509_certificate(open(cf("ca.pem"), "rb").read())
    srv_key = serialization.load_pem_private_key(open(cf("server.key"), "rb").read(), None)
    now = datetime.datetime.now(datetime.timezone.utc)
    for name, start, end in (("expired", now - datetime.timedelta(days=30),
                              now - datetime.timedelta(days=1)),
                             ("future", now + datetime.timedelta(days=1),
                              now + datetime.timedelta(days=30))):
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(
            NameOID.COMMON_NAME, "patd")])).issuer_name(ca.subject).public_key(srv_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(end).add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), False)
            .sign(ca_key, hashes.SHA256()))
        open(cf(f"{name}.pem"), "wb").write(cert.public_bytes(serialization.Encoding.PEM))
    for name, why in (("expired", "expired"), ("future", "not yet valid")):
        q = TlsPatd(bindir, extra=["--tls-cert", cf(f"{name}.pem"), "--tls-key", cf("server.key")])
        try:
            r = subprocess.run([os.path.join(bindir, "patctl"), "--server",
                                f"tls://127.0.0.1:{q.port}", "--cacert", cf("ca.pem"), "health"],
                               capture_output=True, text=True)
            check(r.returncode == 3 and why in r.stderr,
                  f"patctl refuses an {name} server certificate and says so", r.stderr)
        finally:
            q.cleanup()
except ImportError:
    check(False, "python3-cryptography (install-deps.sh) makes the dated certificates")

# Client certificates required, and the platform key only with one.
p = TlsPatd(bindir, extra=EXTRA + ["--tls-require-client-cert", "on",
                                   "--platform-client-cert-required", "on"])
try:
    key = open(p.key).read().split()[0]
    mtls = ctx("ca.pem", "client.pem", "client.key")
    check(refused(lambda: framed(p.port, "Health")),
          "--tls-require-client-cert: a client without a certificate is refused")
    check(framed(p.port, "Health", context=mtls), "... one with a certificate from the CA is served")
    check(refused(lambda: framed(p.port, "Health", context=ctx("ca.pem", "other-client.pem",
                                                                 "other-client.key"))),
          "... one from another CA is refused")
    check(framed(p.port, "ListUsers", auth="Platform " + key, context=mtls),
          "--platform-client-cert-required: the platform key with a client certificate")
finally:
    p.cleanup()
p = TlsPatd(bindir, extra=EXTRA + ["--platform-client-cert-required", "on"])
try:
    key = open(p.key).read().split()[0]
    check(not framed(p.port, "ListUsers", auth="Platform " + key),
          "--platform-client-cert-required: the platform key without a certificate is refused")
    check(framed(p.port, "ListUsers", auth="Platform " + key,
                 context=ctx("ca.pem", "client.pem", "client.key")),
          "... and taken with one")
    check(framed(p.port, "Health"), "... while a call that needs no platform key is served")

finally:
    p.cleanup()

# nginx's auth_request to patd's HTTPS port, configured from docs/tls.md,
# presenting its client certificate where patd requires one.
p = Patd(bindir, extra=["--http-listen", "https://127.0.0.1:0", "--tls-cert", cf("server.pem"),
                        "--tls-key", cf("server.key"), "--tls-client-ca", cf("ca.pem"),
                        "--tls-require-client-cert", "on"])
procs = []
try:
    p.user("alice")
    alice = p.token("alice", "gw", "--expires", "30d")

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = (self.headers.get("X-Patd-User-Id") or "-").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass
    up = free_port()
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", up), Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    nport = free_port()
    conf = block("nginx").replace("127.0.0.1:7780", f"127.0.0.1:{p.http_port}") \
        .replace("127.0.0.1:8000", f"127.0.0.1:{nport}") \
        .replace("127.0.0.1:8080", f"127.0.0.1:{up}")
    for f in ("ca.pem", "client.pem", "client.key"):
        conf = conf.replace(f" {f};", f" {cf(f)};")
    nginx = start_nginx(p.work, conf)
    procs.append(nginx)
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", nport), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    codes = []
    for tok in (alice, alice, "patp_wrong"):
        r = subprocess.run(["curl", "-s", "-o", "-", "-w", " %{http_code}", "-H",
                            "Authorization: Bearer " + tok, f"http://127.0.0.1:{nport}/api/x"],
                           capture_output=True, text=True)
        codes.append(r.stdout)
    check(codes[0] == "alice 200" and codes[1] == "alice 200" and codes[2].endswith(" 401"),
          "nginx auth_request to patd over TLS with a client certificate", codes)
finally:
    for pr in procs:
        pr.terminate()
        pr.wait()
    p.cleanup()
shutil.rmtree(certs, ignore_errors=True)
C.finish()
