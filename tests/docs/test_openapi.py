#!/usr/bin/python3
"""docs/openapi.yaml agrees with patd: its routes are exactly `patd routes`
(verb, path and success status), every $ref resolves, and every schema
marked x-proto has exactly the fields of that message in pat.proto (less
x-omit), with the enums' words as the JSON form spells them."""
import os
import re
import subprocess
import sys

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from patdtest import Checks  # noqa: E402

root, bindir = sys.argv[1], sys.argv[2]
C = Checks()
check = C.check
doc = yaml.safe_load(open(os.path.join(root, "docs", "openapi.yaml")))
check(doc.get("openapi") == "3.1.0", "OpenAPI 3.1")

# Routes.
table = {}
for line in subprocess.run([os.path.join(bindir, "patd"), "routes"], capture_output=True,
                           text=True, check=True).stdout.splitlines():
    verb, path, rpc, status = line.split()
    table[(verb.lower(), path)] = status
documented = {}
for path, item in doc["paths"].items():
    for verb, op in item.items():
        if verb in ("get", "put", "post", "delete", "patch", "head", "options"):
            ok = [s for s in op.get("responses", {}) if s.startswith("2")]
            documented[(verb, path)] = ok
check(set(documented) == set(table), "the document's routes are patd's route table",
      f"only in patd: {set(table) - set(documented)}; only in the document: "
      f"{set(documented) - set(table)}")
for key, status in table.items():
    if key in documented:
        check(documented[key] == [status], f"{key[0].upper()} {key[1]} answers {status}",
              documented[key])
    params = re.findall(r"\{([a-z_]+)\}", key[1])
    if key in documented:
        item = doc["paths"][key[1]]
        op = item[key[0]]

        def names(ps):
            out = []
            for prm in ps:
                if "$ref" in prm:
                    prm = doc["components"]["parameters"][prm["$ref"].split("/")[-1]]
                if prm["in"] == "path":
                    out.append(prm["name"])
            return out
        got = names(item.get("parameters", [])) + names(op.get("parameters", []))
        check(sorted(got) == sorted(params), f"{key[1]}: its path parameters are declared", got)


# Every $ref resolves.
def refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


for ref in set(refs(doc)):
    node = doc
    for part in ref.lstrip("#/").split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    check(ref.startswith("#/") and node is not None, f"$ref {ref} resolves")

# Schemas against pat.proto's messages and enums.
proto = open(os.path.join(root, "proto", "pat", "v1", "pat.proto")).read()
proto = re.sub(r"//[^\n]*", "", proto)
messages = {}
for m in re.finditer(r"message (\w+) \{", proto):
    depth, i = 1, m.end()
    while depth:  # the body, with a oneof's braces inside
        depth += {"{": 1, "}": -1}.get(proto[i], 0)
        i += 1
    body = proto[m.end():i - 1]
    messages[m.group(1)] = re.findall(
        r"(?:repeated\s+)?(?:map<[^>]+>|[\w.]+)\s+(\w+)\s*=\s*\d+;", body)
enums = {}
for name, body in re.findall(r"enum (\w+) \{(.*?)\}", proto, flags=re.S):
    prefix = re.sub(r"(?<!^)([A-Z])", r"_\1", name).upper() + "_"
    enums[name] = [v[len(prefix):].lower() for v in re.findall(r"(\w+)\s*=\s*\d+;", body)
                   if v.startswith(prefix) and not v.endswith("UNSPECIFIED")]
schemas = doc["components"]["schemas"]
for sname, schema in schemas.items():
    if sname in enums:
        check(schema.get("enum") == enums[sname], f"schema {sname}: the proto's words",
              (schema.get("enum"), enums[sname]))
    msg = schema.get("x-proto")
    if not msg:
        continue
    want = [f for f in messages.get(msg, []) if f not in schema.get("x-omit", [])]
    check(msg in messages and list(schema.get("properties", {})) == want,
          f"schema {sname}: the fields of {msg}, in order", (list(schema.get("properties", {})), want))
for msg in ("TokenInfo", "User", "ActivityEvent", "HealthResponse", "CreateTokenRequest",
            "ListTokensResponse", "RevokeCredentialsRequest"):
    check(any(s.get("x-proto") == msg for s in schemas.values()), f"{msg} has a schema")
C.finish()
