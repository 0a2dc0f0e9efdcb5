#!/usr/bin/python3
"""patctl, the real binary, against a real patd: every command, --json parsed
and checked, exit codes (0 ok, 1 refused, 2 usage, 3 no server), the 0600
token file and refusal to overwrite it, secrets refused on argv, the delete
confirmation on a real terminal (pty) and skipped with --yes, colours only
on a terminal without NO_COLOR."""
import json
import os
import pty
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

bindir = os.path.abspath(sys.argv[1])
PATCTL = os.path.join(bindir, "patctl")
passed = failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {what} {detail}", file=sys.stderr)


work = tempfile.mkdtemp(prefix="patd-cli-")
port_file = os.path.join(work, "port")
patd = subprocess.Popen([os.path.join(bindir, "patd"), "--data-dir", os.path.join(work, "data"),
                         "--listen", "127.0.0.1:0", "--port-file", port_file, "--drain-grace-ms", "0", "--http-listen", "127.0.0.1:0"],
                        stderr=open(os.path.join(work, "patd.log"), "w"))
for _ in range(500):
    if os.path.exists(port_file):
        break
    time.sleep(0.01)
SERVER = "127.0.0.1:" + open(port_file).read().strip()
KEY = os.path.join(work, "data", "platform.key")
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("PATD_")}
BASE_ENV.update(PATD_SERVER=SERVER, NO_COLOR="1")


def ctl(*args, env=None, stdin=None, token_file=None):
    e = dict(BASE_ENV, **(env or {}))
    argv = [PATCTL] + (["--token-file", token_file] if token_file else []) + list(args)
    r = subprocess.run(argv, env=e, input=stdin, capture_output=True, text=True, cwd=work,
                       timeout=30)
    return r.returncode, r.stdout, r.stderr


def platform(*args, **kw):
    return ctl("--platform-key-file", KEY, *args, **kw)


try:
    # health, --version, --help
    rc, out, _ = ctl("health")
    check(rc == 0 and "SERVING" in out, "health")
    rc, out, _ = ctl("--json", "health")
    h = json.loads(out)
    check(rc == 0 and h["status"] == "serving" and h["cache"]["capacity"] == 100000,
          "health --json with cache counters")
    rc, out, _ = ctl("--version")
    check(rc == 0 and out.startswith("patctl "), "--version")
    rc, out, _ = ctl("--help")
    check(rc == 0 and "exit codes" in out and "examples" in out, "--help with exit codes")
    rc, out, _ = ctl("tokens", "--help")
    check(rc == 0 and "tokens create NAME" in out and "example" in out, "tokens --help")
    for sub in ("users", "service-users"):
        rc, out, _ = ctl(sub, "--help")
        check(rc == 0 and "example" in out, f"{sub} --help")
    rc, out, _ = ctl("verify", "--help")
    check(rc == 0 and "stdin" in out, "verify --help")

    # usage errors: exit 2
    check(ctl("frobnicate")[0] == 2, "unknown command is 2")
    check(ctl("tokens", "create")[0] == 2, "missing NAME is 2")
    check(ctl("tokens", "create", "x", "--expires", "400d")[0] == 2, "bad --expires is 2")
    check(ctl("tokens", "list")[0] == 2, "no credential is 2")
    # cannot connect: exit 3
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = "127.0.0.1:%d" % s.getsockname()[1]
    rc, _, err = ctl("--server", dead, "health")
    check(rc == 3 and "cannot connect" in err, "no server is 3", err)
    check(ctl(env={"PATD_SERVER": dead}, *["health"])[0] == 3, "PATD_SERVER is used")

    # usage errors: one line, a near match, a pointer to the command's help
    for args, want in [(["token", "list"], "did you mean 'tokens'?"),
                       (["tokens", "lst"], "did you mean 'list'?"),
                       (["users", "upsrt", "x"], "did you mean 'upsert'?"),
                       (["tokens", "create"], "missing NAME"),
                       (["tokens"], "tokens needs a command")]:
        rc, out, err = ctl(*args)
        check(rc == 2 and want in err and len(err.splitlines()) == 1 and "--help" in err and
              out == "", f"usage error for {' '.join(args)}: one line", err)
    rc, out, _ = ctl("health", "--help")
    check(rc == 0 and out.startswith("usage: patctl health"), "health --help is health's", out)
    for server, want in [("127.0.0.1", "HOST:PORT"), ("127.0.0.1:notaport", "1 to 65535"),
                         ("127.0.0.1:99999", "1 to 65535")]:
        rc, _, err = ctl("--server", server, "health")
        check(rc == 2 and want in err and "getaddrinfo" not in err and "Servname" not in err,
              f"--server {server} is a usage error (2)", (rc, err))
    for stdin in ["\n", "", "\r\n"]:
        rc, _, err = ctl("verify", stdin=stdin)
        check(rc == 2 and "no token on stdin" in err, f"verify with {stdin!r} on stdin: usage", err)
    rc, out, _ = ctl("health")
    check(rc == 0 and "1 connection\n" in out, "health: 1 connection, singular", out)

    # users (platform)
    rc, out, _ = platform("users", "upsert", "auth0|ann", "--name", "Ann Liddell", "--email",
                          "ann@example.com", "--role", "admin")
    check(rc == 0 and "auth0|ann" in out and "admin" in out and "NAME" in out and
          "Ann Liddell" in out, "users upsert shows what was stored, the name too", out)
    rc, out, _ = platform("--json", "users", "get", "auth0|ann")
    u = json.loads(out)
    check(rc == 0 and u["email"] == "ann@example.com" and u["role"] == "admin" and
          u["user_type"] == "human", "users get: enums as short lowercase words")
    platform("users", "upsert", "auth0|bo", "--role", "member")
    rc, out, _ = platform("--json", "users", "list")
    check(rc == 0 and {x["user_id"] for x in json.loads(out)["users"]} == {"auth0|ann", "auth0|bo"},
          "users list --json")
    rc, _, err = ctl("users", "list", env={"PATD_TOKEN": "x"})
    check(rc == 2 and "platform-key-file" in err, "users need the platform key")

    # tokens create --out: file 0600, secret not printed, refuses to overwrite
    rc, out, err = platform("--as", "auth0|ann", "tokens", "create", "laptop", "--out")
    path = os.path.join(work, "laptop-token.txt")
    check(rc == 0 and os.path.exists(path), "create --out default name", err)
    check(os.stat(path).st_mode & 0o777 == 0o600, "token file is 0600")
    secret = open(path).read().strip()
    check(secret.startswith("patp_") and secret not in out + err, "secret only in the file")
    check("never be shown again" in err, "shown-once warning")
    before = open(path).read()
    rc, _, err = platform("--as", "auth0|ann", "tokens", "create", "laptop2", "--out=laptop-token.txt")
    check(rc == 2 and "refusing to overwrite" in err and open(path).read() == before,
          "refuses to overwrite", err)
    rc, out, _ = ctl("--json", "tokens", "list", token_file=path)
    names = [t["name"] for t in json.loads(out)["tokens"]]
    check("laptop2" not in names, "no token made when the file exists")
    tok_env = {"PATD_TOKEN": secret}

    # tokens create printed once, --json, expiries
    rc, out, err = ctl("tokens", "create", "ci", "--expires", "90d", env=tok_env)
    check(rc == 0 and out.strip().startswith("patp_") and "never be shown again" in err, "create prints once")
    ci_secret = out.strip()
    rc, out, _ = ctl("--json", "tokens", "create", "forever", "--expires", "never", env=tok_env)
    j = json.loads(out)
    check(rc == 0 and j["token"]["expiration"] is None and j["bearer_token"].startswith("patp_"),
          "create --json, never expires")
    rc, out, _ = ctl("--json", "tokens", "create", "year", "--expires", "1y", env=tok_env)
    check(rc == 0 and json.loads(out)["token"]["expiration"].endswith("Z"), "RFC 3339 UTC times")
    rc, _, err = ctl("tokens", "create", "ci", env=tok_env)
    lines = err.splitlines()
    check(rc == 1 and len(lines) == 2 and "409 duplicate_name" in lines[0] and
          lines[1].startswith("hint: pick another name"),
          "duplicate: what happened, then what to do, each once", err)

    # list: table and json
    rc, out, _ = ctl("tokens", "list", env=tok_env)
    check(rc == 0 and out.splitlines()[0].split()[:3] == ["ID", "NAME", "STATUS"] and
          "in 90 days" in out and "never" in out, "list table with relative times", out)
    rc, out, _ = ctl("--json", "tokens", "list", env=tok_env)
    toks = {t["name"]: t for t in json.loads(out)["tokens"]}
    check(set(toks) == {"laptop", "ci", "forever", "year"}, "list --json names")
    check(all(set(t) >= {"id", "name", "created", "expiration", "last_used", "status", "kind",
                         "scim_endpoints_only", "user"} for t in toks.values()), "json fields")
    check(secret not in out and ci_secret not in out, "list never shows a secret")

    # verify: stdin and PATD_VERIFY_TOKEN, never argv
    rc, out, _ = ctl("verify", "--path", "/api/v1/x", stdin=ci_secret + "\n")
    check(rc == 0 and out.startswith("valid: auth0|ann"), "verify from stdin", out)
    rc, out, _ = ctl("--json", "verify", env={"PATD_VERIFY_TOKEN": ci_secret})
    check(rc == 0 and json.loads(out)["valid"] is True, "verify from PATD_VERIFY_TOKEN")
    rc, out, err = ctl("verify", ci_secret)
    check(rc == 2 and ci_secret not in out + err, "token on argv refused, not echoed")
    rc, _, err = ctl("--token", ci_secret, "health")
    check(rc == 2 and ci_secret not in err, "--token refused, not echoed")
    rc, out, _ = ctl("verify", "--required-role", "admin", stdin=ci_secret)
    check(rc == 0, "required role satisfied")

    # revoke / restore by name and id; verify says why
    ci_id = str(toks["ci"]["id"])
    rc, out, _ = ctl("tokens", "revoke", "ci", env=tok_env)
    check(rc == 0 and "Revoked" in out, "revoke by name")
    rc, out, _ = ctl("verify", stdin=ci_secret)
    check(rc == 1 and "401 revoked" in out, "verify explains revoked", out)
    rc, out, _ = ctl("--json", "verify", stdin=ci_secret)
    check(rc == 1 and json.loads(out)["error"]["reason"] == "revoked"
          and json.loads(out)["error"]["status"] == "UNAUTHENTICATED", "verify --json error (AIP-193 shape)")
    rc, out, _ = ctl("--json", "tokens", "restore", ci_id, env=tok_env)
    check(rc == 0 and json.loads(out)["status"] == "active", "restore by id --json")
    rc, _, err = ctl("tokens", "delete", ci_id, "--yes", env=tok_env)
    check(rc == 1 and "token_active" in err and "revoke it first" in err, "delete active: 1")

    # activity
    rc, out, _ = ctl("--json", "tokens", "activity", "ci", "--limit", "10", env=tok_env)
    ev = json.loads(out)["events"]
    kinds = [e["kind"] for e in ev]
    check(rc == 0 and kinds[0] == "restored" and "used" in kinds and kinds[-1] == "created",
          "activity --json", kinds)
    used = [e for e in ev if e["kind"] == "used"]
    check(used and all(e["count"] >= 1 and e["first_time"] for e in used),
          "activity --json shows count and first_time", used)
    check(any(e["path"] == "/api/v1/x" for e in ev), "activity shows the path")
    rc, out, _ = ctl("tokens", "activity", "ci", env=tok_env)
    check(rc == 0 and "used" in out and "created" in out and "COUNT" in out and "FIRST" in out,
          "activity table with COUNT and FIRST", out)

    # delete: refuses without a terminal, prompts on one, --yes skips
    ctl("tokens", "revoke", "ci", env=tok_env)
    rc, _, err = ctl("tokens", "delete", "ci", env=tok_env, stdin="")
    check(rc == 2 and "--yes" in err, "no prompt without a terminal: refuse", err)

    def on_pty(args, answer, extra_env=None):
        pid, fd = pty.fork()
        if pid == 0:
            env = dict(BASE_ENV, **tok_env)
            env.pop("NO_COLOR", None)
            env.setdefault("TERM", "xterm")
            env.update(extra_env or {})
            os.chdir(work)
            os.execve(PATCTL, [PATCTL] + args, env)
        out = b""
        sent = False
        deadline = time.time() + 20
        while time.time() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if not sent and b"[y/N]" in out:
                os.write(fd, answer)
                sent = True
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), out.decode(errors="replace")

    rc, out = on_pty(["tokens", "delete", "ci"], b"n\n")
    check(rc == 1 and "[y/N]" in out and "Not deleted" in out, "prompt on a terminal, n keeps", out)
    rc, out = on_pty(["tokens", "delete", "ci"], b"y\n")
    check(rc == 0 and "deleted" in out, "prompt on a terminal, y deletes", out)
    # Colours on a terminal (NO_COLOR unset), none through a pipe.
    rc, out = on_pty(["tokens", "list"], b"")
    check(rc == 0 and "\x1b[32mActive" in out, "green Active on a terminal", repr(out[:300]))
    rc, out, _ = ctl("tokens", "list", env=dict(tok_env, NO_COLOR=""))
    check("\x1b[" not in out, "no colour through a pipe")
    rc, out = on_pty(["tokens", "list"], b"", {"NO_COLOR": ""})
    check(rc == 0 and "\x1b[32m" in out, "an empty NO_COLOR keeps colour (no-color.org)",
          repr(out[:200]))
    rc, out = on_pty(["tokens", "list"], b"", {"NO_COLOR": "1"})
    check(rc == 0 and "\x1b[" not in out, "NO_COLOR=1 on a terminal: no colour")
    rc, out = on_pty(["tokens", "list"], b"", {"TERM": "dumb"})
    check(rc == 0 and "\x1b[" not in out, "TERM=dumb: no colour")
    rc, out, _ = ctl("tokens", "revoke", "year", env=tok_env)
    rc, out, _ = ctl("tokens", "delete", "year", "--yes", env=tok_env)
    check(rc == 0, "--yes skips the prompt")

    # service users and service tokens (ann is admin)
    rc, out, _ = ctl("--json", "service-users", "create", "deploy-bot", "--role", "manager",
                     env=tok_env)
    bot = json.loads(out)
    check(rc == 0 and bot["user_type"] == "service", "service-users create")
    rc, out, _ = ctl("--json", "service-users", "list", env=tok_env)
    check(rc == 0 and [x["user_id"] for x in json.loads(out)["users"]] == [bot["user_id"]],
          "service-users list")
    rc, out, _ = ctl("--json", "tokens", "create", "deploy", "--service-user", bot["user_id"],
                     env=tok_env)
    st = json.loads(out)
    check(rc == 0 and st["bearer_token"].startswith("pats_") and st["token"]["kind"] == "service",
          "service token")
    rc, out, _ = ctl("--json", "tokens", "list", "--kind", "service", env=tok_env)
    check(rc == 0 and len(json.loads(out)["tokens"]) == 1, "list --kind service")
    rc, out, _ = ctl("--json", "tokens", "create", "sync", "--scim", env=tok_env)
    check(rc == 0 and json.loads(out)["bearer_token"].startswith("patscim_"), "--scim")
    rc, _, err = ctl("service-users", "delete", bot["user_id"], "--yes", env=tok_env)
    check(rc == 1 and "has_active_tokens" in err, "service user with active tokens")
    ctl("tokens", "revoke", str(st["token"]["id"]), env=tok_env)
    rc, _, _ = ctl("service-users", "delete", bot["user_id"], "--yes", env=tok_env)
    check(rc == 0, "service-users delete")

    # users deactivate / activate take effect on the token at once
    rc, out, _ = platform("users", "deactivate", "auth0|ann")
    check(rc == 0 and "stops working" in out, "users deactivate")
    rc, out, _ = ctl("verify", stdin=secret)
    check(rc == 1 and "user_deactivated" in out, "deactivated user's token refused")
    rc, _, _ = platform("users", "activate", "auth0|ann")
    check(rc == 0 and ctl("verify", stdin=secret)[0] == 0, "users activate")

    # nothing secret in patd's log
    log = open(os.path.join(work, "patd.log")).read()
    check(secret not in log and ci_secret not in log and open(KEY).read().strip() not in log,
          "no secret in the server log")
finally:
    patd.terminate()
    patd.wait(timeout=10)
    shutil.rmtree(work, ignore_errors=True)
print(f"{passed} passed, {failed} failed")
sys.exit(0 if failed == 0 and passed > 0 else 1)
