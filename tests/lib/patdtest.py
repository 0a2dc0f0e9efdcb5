"""patdtest: what the Python tests share: a real patd process on free ports
(framed and HTTP) in a temporary data directory, patctl against it, the
REST API and /v1/verify over HTTP (Rest), raw HTTP over a socket, and the
closing 'N passed, N failed' line."""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, cond, what, detail=""):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL: {what} {detail}", file=sys.stderr)
        return cond

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(0 if self.failed == 0 and self.passed > 0 else 1)


def _wait_file(path, proc, what, seconds=10):
    for _ in range(int(seconds * 100)):
        if os.path.exists(path) and open(path).read().strip():
            return int(open(path).read().strip())
        if proc.poll() is not None:
            raise RuntimeError(f"patd exited at start ({what})")
        time.sleep(0.01)
    raise RuntimeError(f"patd did not write {what}")


class Patd:
    """patd (or patd-testclock) on 127.0.0.1 with ephemeral ports."""

    def __init__(self, bindir, extra=(), testclock=False, work=None, host="127.0.0.1",
                 prefix=()):
        """host: the address both listeners bind; prefix: a command patd runs
        under (["ip", "netns", "exec", NS] for a node in its own network
        namespace)."""
        self.host, self.prefix = host, list(prefix)
        self.bindir = os.path.abspath(bindir)
        self.work = work or tempfile.mkdtemp(prefix="patd-py-")
        self.data = os.path.join(self.work, "data")
        self.key = os.path.join(self.data, "platform.key")
        self.log_path = os.path.join(self.work, "patd.log")
        self.extra = list(extra)
        self.bin = os.path.join(self.bindir, "patd-testclock" if testclock else "patd")
        # ctest's .postgresql entries: a fresh database of the test server.
        self.db = None
        pg = os.environ.get("PATD_TEST_PG_DIR")
        if pg and "--store" not in self.extra:
            self.db = "py_" + os.path.basename(self.work).replace("-", "_").lower()
            subprocess.run(["createdb", "-h", pg, "-U", "postgres", self.db], check=True)
            self.extra += ["--store", f"postgresql:///{self.db}?host={pg}&user=postgres"]
        self.start()

    def start(self):
        pf, hpf = os.path.join(self.work, "port"), os.path.join(self.work, "http-port")
        for f in (pf, hpf):
            if os.path.exists(f):
                os.unlink(f)
        argv = self.prefix + [
            self.bin, "--data-dir", self.data, "--listen", f"{self.host}:0", "--port-file", pf,
            "--http-listen", f"{self.host}:0", "--http-port-file", hpf,
            "--drain-grace-ms", "0", "--workers", "4"] + self.extra
        self.proc = subprocess.Popen(argv, stderr=open(self.log_path, "a"))
        self.port = _wait_file(pf, self.proc, "its port file")
        self.http_port = _wait_file(hpf, self.proc, "its HTTP port file")
        self.server = f"{self.host}:{self.port}"

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=timeout)

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.db:
            subprocess.run(["dropdb", "--force", "-h", os.environ["PATD_TEST_PG_DIR"], "-U",
                            "postgres", self.db], capture_output=True)
            self.db = None
        shutil.rmtree(self.work, ignore_errors=True)

    def log(self):
        return open(self.log_path, errors="replace").read()

    def ctl(self, *args, token_file=None, platform=False, as_user=None, stdin=None):
        argv = [os.path.join(self.bindir, "patctl"), "--server", self.server]
        if platform or as_user:
            argv += ["--platform-key-file", self.key]
        if as_user:
            argv += ["--as", as_user]
        if token_file:
            argv += ["--token-file", token_file]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PATD_")}
        env["NO_COLOR"] = "1"
        r = subprocess.run(argv + list(args), env=env, input=stdin, capture_output=True,
                           text=True, cwd=self.work, timeout=30)
        return r.returncode, r.stdout, r.stderr

    def testing(self, method, payload=b""):
        """Calls pat.v1.TestingService/<method> (patd-testclock only) over
        the framed port, with the request message already encoded."""
        key = open(self.key).read().split()[0]
        auth = _pb_bytes(1, b"authorization") + _pb_bytes(2, b"Platform " + key.encode())
        env = (_pb_bytes(2, f"pat.v1.TestingService/{method}".encode()) + _pb_bytes(3, payload)
               + _pb_bytes(4, auth))
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        try:
            s.sendall(len(env).to_bytes(4, "big") + env)
            n = int.from_bytes(_recv_exact(s, 4), "big")
            body = _recv_exact(s, n)
        finally:
            s.close()
        if _pb_has_error(body):
            raise RuntimeError(f"TestingService/{method} failed: {body!r}")
        return body

    def advance_clock(self, ms):
        """Moves patd-testclock's clock forward by ms (the test clock)."""
        self.testing("AdvanceClock", _pb_varint_field(1, ms))

    def user(self, user_id, role="member"):
        rc, out, err = self.ctl("users", "upsert", user_id, "--role", role, platform=True)
        if rc != 0:
            raise RuntimeError(f"users upsert {user_id}: {out}{err}")

    def token(self, user_id, name, *flags):
        """A new token of user_id (made through the platform key); its secret."""
        path = os.path.join(self.work, f"{name}-token.txt")
        if os.path.exists(path):
            os.unlink(path)
        rc, out, err = self.ctl("tokens", "create", name, *flags, "--out=" + path, as_user=user_id)
        if rc != 0:
            raise RuntimeError(f"tokens create {name}: {out}{err}")
        return open(path).read().strip()


def _pb_varint(v):
    out = b""
    while True:
        b, v = v & 0x7F, v >> 7
        out += bytes([b | (0x80 if v else 0)])
        if not v:
            return out


def _pb_varint_field(field, v):
    return _pb_varint(field << 3) + _pb_varint(v)


def _pb_bytes(field, data):
    return _pb_varint(field << 3 | 2) + _pb_varint(len(data)) + data


def _pb_has_error(response):
    """A pat.v1.Response whose status (field 2) has a non-zero code."""
    i = 0
    while i < len(response):
        key = response[i]
        i += 1
        if key & 7 == 0:
            while response[i] & 0x80:
                i += 1
            i += 1
        elif key & 7 == 2:
            n, shift = 0, 0
            while True:
                b = response[i]
                i += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            if key >> 3 == 2 and n and response[i] == 0x08 and response[i + 1] != 0:
                return True
            i += n
        else:
            return True
    return False


def _recv_exact(s, n):
    got = b""
    while len(got) < n:
        chunk = s.recv(n - len(got))
        if not chunk:
            raise RuntimeError("patd closed the connection")
        got += chunk
    return got


def raw(port, data, timeout=5.0, until_close=True, read_after=None):
    """Sends bytes to 127.0.0.1:port; returns what came back before the
    server closed (or the timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        got = b""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                return got, True
            got += chunk
            if not until_close and read_after and got.count(b"HTTP/1.") >= read_after and \
                    got.endswith(b"\n"):
                return got, False
        return got, False
    finally:
        s.close()


def responses(blob):
    """Splits HTTP/1.1 answers: [(status, {header: value}, body)]."""
    out = []
    while blob:
        head, sep, rest = blob.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.setdefault(k.strip().lower(), []).append(v.strip())
        n = int(headers.get("content-length", ["0"])[0])
        out.append((status, {k: v[0] if len(v) == 1 else v for k, v in headers.items()},
                    rest[:n]))
        blob = rest[n:]
    return out


def start_nginx(work, conf):
    """nginx in the foreground with conf as its http block's content, its
    files under work/nginx; returns the process (the caller terminates it)."""
    ndir = os.path.join(work, "nginx")
    os.makedirs(os.path.join(ndir, "tmp"), exist_ok=True)
    os.chmod(work, 0o755)
    os.chmod(ndir, 0o755)
    with open(os.path.join(ndir, "nginx.conf"), "w") as f:
        f.write(f"daemon off;\nworker_processes 1;\npid {ndir}/nginx.pid;\n"
                f"error_log {ndir}/error.log;\nevents {{ worker_connections 256; }}\n"
                f"http {{\n  access_log off;\n  client_body_temp_path {ndir}/tmp/body;\n"
                f"  proxy_temp_path {ndir}/tmp/proxy;\n  fastcgi_temp_path {ndir}/tmp/fcgi;\n"
                f"  uwsgi_temp_path {ndir}/tmp/uwsgi;\n  scgi_temp_path {ndir}/tmp/scgi;\n"
                f"{conf}\n}}\n")
    return subprocess.Popen(["nginx", "-c", os.path.join(ndir, "nginx.conf"), "-p", ndir],
                            stderr=open(os.path.join(ndir, "stderr"), "w"))


def free_port():
    """A loopback port free now (for servers that cannot take port 0)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_ready(apis, seconds):
    """True once every Rest in apis answers 200 on /readyz, within seconds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(x.ready() == 200 for x in apis):
        time.sleep(0.05)
    return all(x.ready() == 200 for x in apis)


class Rest:
    """The REST API and /v1/verify of one patd over HTTP, with the platform
    key (key: the secret; default: the one patd made in its data dir)."""

    def __init__(self, p, key=None, timeout=30):
        self.p, self.timeout = p, timeout
        self.key = key or open(p.key).read().split()[0]

    def _request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(self.p.host, self.p.http_port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def call(self, method, path, body=None, bearer=None, act_as=None):
        h = {"Authorization": f"Bearer {bearer}" if bearer else f"Platform {self.key}"}
        if act_as:
            h["X-Act-As-User"] = act_as
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        status, raw = self._request(method, path, data, h)
        return status, (json.loads(raw) if raw else None)

    @staticmethod
    def reason(resp):
        s, b = resp
        return (s, b["error"]["reason"]) if isinstance(b, dict) and "error" in b else (s, b)

    def user(self, uid, role="member"):
        s, b = self.call("PUT", f"/api/users/{uid}", {"user_name": uid, "role": role})
        assert s == 200, (s, b)

    def create(self, uid, name):
        return self.call("POST", "/api/user-tokens", {"name": name}, act_as=uid)

    def token(self, uid, name):
        """A new personal token of uid: (id, secret)."""
        s, b = self.create(uid, name)
        assert s == 201, (s, b)
        return b["token"]["id"], b["bearer_token"]

    def revoke(self, uid, tid, revoke=True):
        """(status, seconds the call took)."""
        t0 = time.monotonic()
        s, _ = self.call("PUT", f"/api/user-tokens/{tid}", {"revoke": revoke}, act_as=uid)
        return s, time.monotonic() - t0

    def verify(self, token, path="/api/x"):
        return self._request("GET", "/v1/verify", headers={"Authorization": "Bearer " + token,
                                                          "X-Original-URI": path})[0]

    def ready(self):
        return self._request("GET", "/readyz")[0]
