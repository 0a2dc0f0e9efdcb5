#!/usr/bin/python3
"""Runs the README's walkthrough exactly as written, so the README cannot rot.

The shell block between the walkthrough markers runs with bash -e in a
scratch directory where `build` points at the real build and patd serves
`data/` (the walkthrough's own layout); PATD_SERVER points patctl at it.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

readme, build = sys.argv[1], os.path.abspath(sys.argv[2])
text = open(readme).read()
m = re.search(r"<!-- walkthrough:begin.*?-->\s*```sh\n(.*?)```\s*<!-- walkthrough:end -->",
              text, re.S)
if not m:
    print("0 passed, 1 failed\nno walkthrough block in README.md")
    sys.exit(1)
script = m.group(1)
work = tempfile.mkdtemp(prefix="patd-walk-")
os.symlink(os.path.abspath(build), os.path.join(work, "build"))
port_file = os.path.join(work, "port")
log = open(os.path.join(work, "patd.log"), "w")
patd = subprocess.Popen([os.path.join(build, "patd"), "--data-dir", "data",
                         "--listen", "127.0.0.1:0", "--port-file", port_file, "--drain-grace-ms", "0", "--http-listen", "127.0.0.1:0"],
                        cwd=work, stderr=log)
try:
    for _ in range(500):
        if os.path.exists(port_file):
            break
        time.sleep(0.01)
    env = dict(os.environ, PATD_SERVER="127.0.0.1:" + open(port_file).read().strip(),
               NO_COLOR="1")
    env.pop("PATD_TOKEN", None)
    run = subprocess.run(["bash", "-e", "-c", script], cwd=work, env=env,
                         capture_output=True, text=True, timeout=60)
    out = run.stdout + run.stderr
    checks = [
        (run.returncode == 0, f"walkthrough exits 0 (got {run.returncode})"),
        ("auth0|alice" in run.stdout, "user shown"),
        ("valid: auth0|alice" in run.stdout, "first verify is valid"),
        ("401 revoked" in run.stdout, "verify after revoke says 401 revoked"),
        ("refused, as expected" in run.stdout, "the refusal is reported"),
        ("Token" in run.stdout and "deleted" in run.stdout, "delete confirmed"),
        (os.stat(os.path.join(work, "laptop-token.txt")).st_mode & 0o777 == 0o600,
         "token file is 0600"),
        ("patp_" not in out, "no token printed anywhere"),
    ]
    failed = [what for ok, what in checks if not ok]
    for what in failed:
        print("FAIL:", what)
    if failed:
        print(out)
    print(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)
finally:
    patd.terminate()
    patd.wait(timeout=10)
    subprocess.run(["rm", "-rf", work])
