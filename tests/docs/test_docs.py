#!/usr/bin/python3
"""The docs agree with themselves and with patd: every Markdown file's code
fences pair up and no closing fence has text after it (README line 35 once
had one, and half the README rendered as code); no doc cites a file outside
the repository; and every default a doc quotes for a flag of patd's is the
default `patd --help` prints, so they cannot drift apart again."""
import glob
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from patdtest import Checks  # noqa: E402

root, patd = sys.argv[1], sys.argv[2]
C = Checks()
check = C.check


docs = [os.path.join(root, "README.md"), os.path.join(root, "CHANGELOG.md")] + \
    sorted(glob.glob(os.path.join(root, "docs", "*.md")))
for path in docs:
    if not os.path.exists(path):
        continue
    name = os.path.relpath(path, root)
    lines = open(path).read().split("\n")
    fences = [(i + 1, l) for i, l in enumerate(lines) if l.lstrip().startswith("```")]
    check(len(fences) % 2 == 0, f"{name}: code fences pair up", len(fences))
    closing = fences[1::2]
    bad = [n for n, l in closing if l.strip() != "```"]
    check(not bad, f"{name}: no text after a closing fence", bad)
    text = "\n".join(lines)
    check("shared/docs" not in text and "../shared" not in text,
          f"{name}: cites nothing outside the repository")


# patd --help: "--flag ARG   text (default X" -> {flag: X}
help_text = subprocess.run([patd, "--help"], capture_output=True, text=True).stdout
check(subprocess.run([patd, "-h"], capture_output=True, text=True).stdout == help_text,
      "patd -h prints the help")
defaults = {}
flag = None
for line in help_text.splitlines():
    m = re.match(r"\s+(--[a-z-]+)", line)
    if m:
        flag = m.group(1)
    d = re.search(r"\(default ([^;:,)]+)", line)
    if d and flag and flag not in defaults:
        defaults[flag] = d.group(1).strip()


def amount(text, flag):
    """The amount a doc or the help quotes, in the flag's own unit: "64 KiB"
    -> 65536, "100 000" -> 100000, "60 s" -> 60; a --*-mb flag counts MiB."""
    m = re.match(r"^(\d+(?: \d{3})*)\s*(KiB|MiB|s|ms)?\b", text.strip())
    if not m:
        return None
    v = int(m.group(1).replace(" ", ""))
    unit = m.group(2) or ""
    if flag.endswith("-mb"):
        return v if unit in ("", "MiB") else None
    return v * {"KiB": 1024, "MiB": 1 << 20}.get(unit, 1)


# docs/reliability.md's limits table: | limit | default | `--flag` ... |
quoted = 0
for line in open(os.path.join(root, "docs", "reliability.md")):
    cells = [c.strip() for c in line.split("|")]
    if len(cells) < 5:
        continue
    fm = re.match(r"`(--[a-z-]+)`", cells[3])
    if not fm or fm.group(1) not in defaults:
        continue
    f = fm.group(1)
    doc_v, help_v = amount(cells[2], f), amount(defaults[f], f)
    check(doc_v is not None and doc_v == help_v,
          f"docs/reliability.md quotes {f}'s default as patd --help does", (cells[2], defaults[f]))
    quoted += 1
check(quoted >= 6, "docs/reliability.md quotes the defaults of at least six flags", quoted)

# docs/gateways.md and docs/protocol.md quote the grace
for name in ("docs/gateways.md", "docs/protocol.md", "docs/reliability.md"):
    for m in re.finditer(r"--drain-grace-ms` \(default (\d+)\)", open(os.path.join(root, name)).read()):
        check(m.group(1) == defaults.get("--drain-grace-ms", "").split()[0],
              f"{name}: --drain-grace-ms default", m.group(1))

C.finish()
