#!/usr/bin/python3
"""docs/http.md runs as written: every command of its `console` blocks is
run, in order, in one bash against a fresh patd (PATD and PATD_KEY point at
it), and what it prints is compared with the answer the page shows. An
answer that is JSON is compared as JSON, where "..." matches any value and
"patp_..." any text starting with patp_; anything else line by line."""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from patdtest import Checks, Patd  # noqa: E402

doc, bindir = sys.argv[1], sys.argv[2]
C = Checks()
check = C.check


def examples(text):
    """[(command, expected output)] from the console blocks."""
    out, block = [], None
    for line in text.split("\n"):
        if block is None:
            if line.strip() == "```console":
                block = []
            continue
        if line.strip() == "```":
            cmd = None
            for l in block:
                if l.startswith("$ "):
                    cmd = [l[2:], []]
                    out.append(cmd)
                elif cmd and cmd[0].endswith("\\") and not cmd[1]:
                    cmd[0] += "\n" + l
                elif cmd:
                    cmd[1].append(l)
            block = None
            continue
        block.append(line)
    return [(c, "\n".join(e)) for c, e in out]


def matches(want, got):
    if want == "...":
        return True
    if isinstance(want, str) and want.endswith("...") and isinstance(got, str):
        return got.startswith(want[:-3])
    if isinstance(want, dict):
        return isinstance(got, dict) and want.keys() == got.keys() and \
            all(matches(want[k], got[k]) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(want) == len(got) and \
            all(matches(w, g) for w, g in zip(want, got))
    return want == got and type(want) is type(got)


cases = examples(open(doc).read())
check(len(cases) >= 20, "docs/http.md has its examples", len(cases))
routes = subprocess.run([os.path.join(bindir, "patd"), "routes"], capture_output=True,
                        text=True, check=True).stdout.split()
p = Patd(bindir)
try:
    script = ["set -u"]
    for i, (cmd, _) in enumerate(cases):
        script += [f"echo '@@{i}@@'", cmd]
    script.append("echo '@@end@@'")
    env = dict(os.environ, PATD=f"http://127.0.0.1:{p.http_port}",
               PATD_KEY=open(p.key).read().split()[0])
    r = subprocess.run(["bash", "-c", "\n".join(script)], capture_output=True, text=True,
                       env=env, timeout=120)
    parts = re.split(r"^@@(\d+|end)@@\n", r.stdout, flags=re.M)
    got = {int(parts[k]): parts[k + 1] for k in range(1, len(parts) - 2, 2)}
    check(parts[-2] == "end", "every example ran", r.stderr[-500:])
    for i, (cmd, want) in enumerate(cases):
        out = got.get(i, "").strip()
        first = cmd.split("\n")[0][:70]
        if want.strip() == "":
            check(out == "", f"'{first}' prints nothing", out[:300])
            continue
        try:
            w = json.loads(want)
        except ValueError:
            w = None
        if w is not None:
            try:
                g = json.loads(out)
            except ValueError:
                g = None
            check(g is not None and matches(w, g), f"'{first}' answers as shown",
                  f"\nwant {want}\ngot  {out[:600]}")
        else:
            check(out == want.strip(), f"'{first}' prints as shown", f"want {want!r} got {out!r}")
    # Every route of patd's table has an example that was run above.
    for k in range(0, len(routes), 4):
        verb, path = routes[k], routes[k + 1]
        rx = re.compile("^" + re.sub(r"\{[a-z_]+\}", "[^/]+", path) + "$")
        shown = False
        for cmd, _ in cases:
            m = re.search(r'"\$PATD(/api/[^"?]*)', cmd)
            v = re.search(r"-X (GET|POST|PUT|DELETE)", cmd)
            if m and rx.match(m.group(1)) and (v.group(1) if v else "GET") == verb:
                shown = True
        check(shown, f"docs/http.md has a curl example of {verb} {path}")
finally:
    p.cleanup()
C.finish()
