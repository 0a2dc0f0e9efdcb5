#!/usr/bin/env python3
"""The REST API (/api/...) against a real patd-testclock over TCP, with
Python's http.client, not the project's client: every route of `patd
routes`, every error code, act-as, R3 privacy, paging, the unknown-field
refusal, leaked tokens reported by value, the rate limit, and hostile
requests over a raw socket. Time moves by the test clock."""
import http.client
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from patdtest import Checks, Patd, raw, responses  # noqa: E402

BIN = sys.argv[1]
c = Checks()
check = c.check
p = Patd(BIN, testclock=True, extra=["--revoke-reports-per-minute", "5"])
KEY = open(p.key).read().split()[0]
PLATFORM = "Platform " + KEY
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

# Every route must be called: the table comes from the server itself.
ROUTES = []
for line in subprocess.run([os.path.join(BIN, "patd"), "routes"], capture_output=True,
                           text=True, check=True).stdout.splitlines():
    verb, pattern, rpc, status = line.split()
    rx = "^" + re.sub(r"\{[a-z_]+\}", "[^/]+", pattern) + "$"
    ROUTES.append((verb, pattern, re.compile(rx), int(status)))
called = set()


def api(method, path, body=None, auth=None, act_as=None, headers=None, data=None):
    """One request on a fresh connection; (status, headers, parsed JSON or raw bytes)."""
    h = dict(headers or {})
    if auth:
        h["Authorization"] = auth
    if act_as:
        h["X-Act-As-User"] = act_as
    if body is not None:
        data = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection("127.0.0.1", p.http_port, timeout=10)
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    raw_body = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    conn.close()
    bare = path.split("?")[0]
    for verb, pattern, rx, _ in ROUTES:
        if (verb == method or (verb == "GET" and method == "HEAD")) and rx.match(bare):
            # The literal route wins over a parameter ({id} vs self, service).
            if pattern.endswith("{id}") and bare.rsplit("/", 1)[1] in ("self", "service"):
                continue
            called.add((verb, pattern))
            break
    parsed = raw_body
    if hdrs.get("content-type", "").startswith("application/json") and raw_body:
        parsed = json.loads(raw_body)
    return r.status, hdrs, parsed


def err(resp):
    status, _, b = resp
    return (status, b["error"]["reason"]) if isinstance(b, dict) and "error" in b else (status, b)


def as_user(u):
    return {"auth": PLATFORM, "act_as": u}


def verify(token, path="/api/x"):
    conn = http.client.HTTPConnection("127.0.0.1", p.http_port, timeout=10)
    conn.request("GET", "/v1/verify", headers={"Authorization": "Bearer " + token,
                                                "X-Original-URI": path})
    r = conn.getresponse()
    r.read()
    conn.close()
    return r.status, r.getheader("X-Patd-Reason")


try:
    # ------------------------------------------------------------ the platform's users
    s, h, b = api("PUT", "/api/users/alice", {"user_name": "alice", "email": "a@example.com",
                                               "role": "admin"}, auth=PLATFORM)
    check(s == 200 and b["user_id"] == "alice" and b["role"] == "admin" and
          b["user_type"] == "human" and TIME.match(b["created"]), "PUT /api/users creates", b)
    check(h["content-type"] == "application/json", "answers are application/json", h)
    api("PUT", "/api/users/bob", {"user_name": "bob", "role": "member"}, auth=PLATFORM)
    s, _, b = api("PUT", "/api/users/auth0%7Cann", {"user_name": "ann"}, auth=PLATFORM)
    check(s == 200 and b["user_id"] == "auth0|ann" and b["role"] == "member",
          "a path parameter is percent-decoded; role unset is member for a new user", b)
    s, _, b = api("GET", "/api/users/auth0%7Cann", auth=PLATFORM)
    check(s == 200 and b["user_name"] == "ann", "GET /api/users/{user_id}", b)
    check(err(api("PUT", "/api/users/x", {"user_id": "y"}, auth=PLATFORM)) ==
          (400, "invalid_field"), "a body may not carry what the path gives (user_id)")
    check(err(api("PUT", "/api/users/x", {"role": "owner"}, auth=PLATFORM)) ==
          (400, "invalid_field"), "an unknown enum word is 400")
    s, _, b = api("GET", "/api/users?user_type=human&page_size=2", auth=PLATFORM)
    check(s == 200 and len(b["users"]) == 2 and b["next_page_token"], "GET /api/users pages", b)
    s2, _, b2 = api("GET", "/api/users?user_type=human&page_size=2&page_token=" +
                    b["next_page_token"], auth=PLATFORM)
    check(s2 == 200 and len(b2["users"]) == 1 and b2["next_page_token"] == "",
          "the next page, then the end", b2)
    check(err(api("GET", "/api/users?page_size=2&page_token=" + b["next_page_token"][:-2] + "AA",
                  auth=PLATFORM)) == (400, "invalid_field"), "an altered page token is 400")
    check(err(api("GET", "/api/users", auth="Bearer nope")) == (401, "malformed_token"),
          "R10 a malformed bearer token is 401")
    check(err(api("GET", "/api/users", auth="Platform wrong")) == (401, "bad_platform_key"),
          "a wrong platform key is 401")
    s, h, b = api("GET", "/api/users")
    check((s, b["error"]["reason"], b["error"]["status"]) ==
          (401, "missing_credential", "UNAUTHENTICATED") and
          h.get("www-authenticate", "").startswith("Bearer realm="),
          "no credential: 401 in the AIP-193 shape with an RFC 6750 challenge", (h, b))
    check(set(b["error"]) == {"code", "status", "reason", "message"} and b["error"]["code"] == 401,
          "the error object has code, status, reason, message", b)

    # ------------------------------------------------------------ tokens (R2, R6-R8)
    s, h, b = api("POST", "/api/user-tokens", {"name": "laptop", "expires_in_days": 30},
                  **as_user("alice"))
    check(s == 201 and h.get("location") == f"/api/user-tokens/{b['token']['id']}" and
          b["bearer_token"].startswith("pat") and b["token"]["status"] == "active",
          "R2 POST /api/user-tokens: 201, Location, the secret once", (h, b))
    alice = b["bearer_token"]
    laptop = b["token"]["id"]
    check(isinstance(laptop, int), "ids are JSON numbers", b)
    check(TIME.match(b["token"]["expiration"]) and b["token"]["last_used"] is None,
          "R7 expiration is RFC 3339, R15 last_used null when never used", b)
    s, _, b = api("GET", h["location"], auth="Bearer " + alice)
    check(s == 200 and b["name"] == "laptop" and "bearer_token" not in b,
          "R8 GET by the Location: the token without its secret", b)
    s, _, b = api("POST", "/api/user-tokens", {"name": "forever"}, auth="Bearer " + alice)
    check(s == 201 and b["token"]["expiration"] is None, "R7 no expires_in_days: never", b)
    forever = b["token"]["id"]
    s, _, b = api("POST", "/api/user-tokens", {"name": "n2", "expires_in_days": None},
                  auth="Bearer " + alice)
    check(s == 201 and b["token"]["expiration"] is None, "R7 expires_in_days null: never", b)
    s, _, b = api("POST", "/api/user-tokens", {"name": "typo", "expires_in_day": 30},
                  auth="Bearer " + alice)
    check(s == 400 and "expires_in_day" in b["error"]["message"],
          "an unknown field is 400 naming it, not a token that never expires", b)
    check(err(api("POST", "/api/user-tokens", {"name": "x", "expires_in_days": 366},
                  auth="Bearer " + alice)) == (400, "invalid_field"), "R7 366 days is 400")
    check(err(api("POST", "/api/user-tokens", {"name": "x", "expires_in_days": "30"},
                  auth="Bearer " + alice)) == (400, "invalid_field"), "a string for an int is 400")
    check(err(api("POST", "/api/user-tokens", {"name": "x", "expires_in_days": 2 ** 40},
                  auth="Bearer " + alice)) == (400, "invalid_field"), "int32 out of range is 400")
    check(err(api("POST", "/api/user-tokens", {"name": "laptop"}, auth="Bearer " + alice)) ==
          (409, "duplicate_name"), "R6 a second token of the same name is 409")
    check(err(api("POST", "/api/user-tokens", {"name": ""}, auth="Bearer " + alice)) ==
          (400, "invalid_field"), "R6 a name is required")
    s, _, b = api("POST", "/api/user-tokens", data=b'{"name": "x",', auth="Bearer " + alice,
                  headers={"Content-Type": "application/json"})
    check(s == 400 and "byte" in b["error"]["message"], "invalid JSON: 400 with the offset", b)
    s, _, b = api("POST", "/api/user-tokens", data=b'{"name": "a", "name": "b"}',
                  auth="Bearer " + alice, headers={"Content-Type": "application/json"})
    check(s == 400, "duplicate keys are refused", b)
    s, _, b = api("POST", "/api/user-tokens", data=b'["name"]', auth="Bearer " + alice,
                  headers={"Content-Type": "application/json"})
    check(s == 400 and "object" in b["error"]["message"], "a body that is not an object", b)
    check(err(api("POST", "/api/user-tokens", data=b'{"name": "x"}', auth="Bearer " + alice,
                  headers={"Content-Type": "text/plain"})) == (415, "unsupported_media_type"),
          "a body that is not application/json is 415")
    s, _, b = api("POST", "/api/user-tokens", data=b'{"name": "cs"}', auth="Bearer " + alice,
                  headers={"Content-Type": "application/json; charset=utf-8"})
    check(s == 201, "application/json with a charset is JSON", b)
    s, _, b = api("POST", "/api/user-tokens", {"name": "scim", "scim_endpoints_only": True},
                  auth="Bearer " + alice)
    check(s == 201 and b["token"]["scim_endpoints_only"] is True, "R5 an Admin makes a SCIM token")
    scim = b["bearer_token"]
    check(err(api("GET", "/api/user-tokens", auth="Bearer " + scim)) == (403, "scim_only"),
          "R5 a SCIM token may not call the API")

    # self, list, paging
    s, _, b = api("GET", "/api/user-tokens/self", auth="Bearer " + alice)
    check(s == 200 and b["id"] == laptop and b["user"]["user_id"] == "alice",
          "GET /api/user-tokens/self: the calling token", b)
    check(err(api("GET", "/api/user-tokens/self", auth=PLATFORM, act_as="alice")) ==
          (400, "bad_request"), "self with the platform key: there is no token")
    for i in range(5):
        api("POST", "/api/user-tokens", {"name": f"page{i}"}, auth="Bearer " + alice)
    seen, page, pages = [], "", 0
    while True:
        s, _, b = api("GET", f"/api/user-tokens?page_size=3&page_token={page}",
                      auth="Bearer " + alice)
        if not check(s == 200, "GET /api/user-tokens pages", b):
            break
        seen += [t["name"] for t in b["tokens"]]
        pages += 1
        page = b["next_page_token"]
        if not page:
            break
    check(len(seen) == len(set(seen)) == 10 and pages == 4, "paging: every token once", seen)
    check(err(api("GET", "/api/user-tokens?page_size=x", auth="Bearer " + alice)) ==
          (400, "invalid_field"), "a query value of the wrong type is 400")
    check(err(api("GET", "/api/user-tokens?pagesize=3", auth="Bearer " + alice)) ==
          (400, "invalid_field"), "an unknown query parameter is 400")
    check(err(api("GET", "/api/user-tokens?page_size=1&page_size=2", auth="Bearer " + alice)) ==
          (400, "invalid_field"), "a query parameter given twice is 400")
    check(err(api("GET", "/api/user-tokens?kind=service", auth="Bearer " + alice)) ==
          (400, "invalid_field"), "the route's own fields cannot be overridden by the query")
    check(err(api("GET", "/api/user-tokens/abc", auth="Bearer " + alice)) ==
          (400, "invalid_field"), "a token id that is not a number is 400")

    # R3: bob's token is 404 to alice (an Admin), exactly as a missing id
    s, _, b = api("POST", "/api/user-tokens", {"name": "bobs"}, **as_user("bob"))
    bob_id, bob = b["token"]["id"], b["bearer_token"]
    other = api("GET", f"/api/user-tokens/{bob_id}", auth="Bearer " + alice)
    missing = api("GET", "/api/user-tokens/999999", auth="Bearer " + alice)
    check(other[0] == missing[0] == 404 and
          other[2]["error"]["message"].replace(str(bob_id), "N") ==
          missing[2]["error"]["message"].replace("999999", "N"),
          "R3 an Admin gets 404 for another user's token, identical to a missing id",
          (other, missing))
    for method, path, body in (("PUT", f"/api/user-tokens/{bob_id}", {"revoke": True}),
                               ("DELETE", f"/api/user-tokens/{bob_id}", None),
                               ("GET", f"/api/user-tokens/{bob_id}/activity", None)):
        check(err(api(method, path, body, auth="Bearer " + alice)) == (404, "token_not_found"),
              f"R3 {method} of another user's token is 404")
    check(verify(bob)[0] == 200, "R3 bob's token still works after alice's attempts")

    # revoke, restore, delete (R16-R19)
    s, _, b = api("PUT", f"/api/user-tokens/{forever}", {"revoke": True}, auth="Bearer " + alice)
    check(s == 200 and b["status"] == "revoked" and b["active"] is False, "R16 revoke", b)
    check(err(api("PUT", f"/api/user-tokens/{forever}", {"revoke": True, "id": 1},
                  auth="Bearer " + alice)) == (400, "invalid_field"), "id comes from the path")
    s, _, b = api("PUT", f"/api/user-tokens/{forever}", {"revoke": False}, auth="Bearer " + alice)
    check(s == 200 and b["status"] == "active", "R17 restore with revoke false", b)
    check(err(api("DELETE", f"/api/user-tokens/{forever}", auth="Bearer " + alice)) ==
          (400, "token_active"), "R19 deleting an active token is 400")
    api("PUT", f"/api/user-tokens/{forever}", {"revoke": True}, auth="Bearer " + alice)
    s, h, b = api("DELETE", f"/api/user-tokens/{forever}", auth="Bearer " + alice)
    check(s == 204 and b == b"" and "content-type" not in h, "R19 DELETE a revoked token: 204",
          (s, h, b))
    check(err(api("GET", f"/api/user-tokens/{forever}", auth="Bearer " + alice)) ==
          (404, "token_not_found"), "R19 a deleted token is gone")
    s, _, b = api("GET", f"/api/user-tokens/{forever}/activity?limit=10", auth="Bearer " + alice)
    kinds = [e["kind"] for e in b.get("events", [])]
    check(s == 200 and kinds[:2] == ["deleted", "revoked"] and kinds[-1] == "created" and
          all(TIME.match(e["time"]) for e in b["events"]),
          "R22 activity newest first, kinds as words, times RFC 3339", b)

    # R15 last used, R18 restore of an expired token
    check(verify(alice)[0] == 200, "R10 the API's token verifies at the gateway")
    s, _, b = api("GET", f"/api/user-tokens/{laptop}", auth="Bearer " + alice)
    check(s == 200 and b["last_used"] and TIME.match(b["last_used"]), "R15 last_used is a time", b)
    s, _, b = api("POST", "/api/user-tokens", {"name": "short", "expires_in_days": 1},
                  auth="Bearer " + alice)
    short = b["token"]["id"]
    api("PUT", f"/api/user-tokens/{short}", {"revoke": True}, auth="Bearer " + alice)
    p.advance_clock(2 * 86400 * 1000)
    s, _, b = api("PUT", f"/api/user-tokens/{short}", {"revoke": False}, auth="Bearer " + alice)
    check(s == 200 and b["status"] == "expired", "R18 restoring an expired token: still expired",
          b)
    check(verify(alice)[0] == 200, "the 30-day token still works two days on")

    # ------------------------------------------------------------ service users (R4)
    check(err(api("GET", "/api/service-users", auth="Bearer " + bob)) == (403, "admin_only"),
          "R4 a Member may not list service users")
    s, h, b = api("POST", "/api/service-users", {"user_name": "ci-bot", "role": "manager"},
                  auth="Bearer " + alice)
    sid = b["user_id"]
    check(s == 201 and h.get("location") == f"/api/service-users/{sid}" and
          b["user_type"] == "service" and b["role"] == "manager" and b["created_by"] == "alice",
          "R4 POST /api/service-users", (h, b))
    s, _, b = api("GET", f"/api/service-users/{sid}", auth="Bearer " + alice)
    check(s == 200 and b["user_id"] == sid, "GET /api/service-users/{user_id}", b)
    check(err(api("GET", "/api/service-users/bob", auth=PLATFORM)) == (404, "user_not_found"),
          "a human is not found under /api/service-users, even by the platform")
    check(err(api("POST", "/api/service-users/bob/deactivate", auth=PLATFORM)) ==
          (404, "user_not_found"), "nor deactivated there")
    s, _, b = api("GET", "/api/service-users", auth="Bearer " + alice)
    check(s == 200 and [u["user_id"] for u in b["users"]] == [sid], "GET /api/service-users", b)
    s, _, b = api("POST", "/api/user-tokens", {"name": "deploy", "kind": "service",
                                                "service_user_id": sid}, auth="Bearer " + alice)
    check(s == 201 and b["token"]["kind"] == "service", "R4 an Admin makes a service token", b)
    svc_id, svc_tok = b["token"]["id"], b["bearer_token"]
    s, _, b = api("GET", f"/api/user-tokens/service?service_user_id={sid}", auth="Bearer " + alice)
    check(s == 200 and [t["id"] for t in b["tokens"]] == [svc_id],
          "R4 GET /api/user-tokens/service?service_user_id=", b)
    check(err(api("GET", "/api/user-tokens/service", auth="Bearer " + bob)) == (403, "admin_only"),
          "R4 a Member may not list service tokens")
    check(err(api("POST", f"/api/service-users/{sid}/deactivate", auth="Bearer " + alice)) ==
          (400, "has_active_tokens"), "R4 a service user with active tokens is not deactivated")
    api("PUT", f"/api/user-tokens/{svc_id}", {"revoke": True}, auth="Bearer " + alice)
    s, _, b = api("POST", f"/api/service-users/{sid}/deactivate", auth="Bearer " + alice)
    check(s == 200 and b["active"] is False, "R4 then it is", b)
    check(err(api("PUT", f"/api/user-tokens/{svc_id}", {"revoke": False}, auth="Bearer " + alice))
          == (400, "user_inactive"), "R4 no restore while the service user is deactivated")
    s, _, b = api("POST", f"/api/service-users/{sid}/activate", data=b"{}",
                  headers={"Content-Type": "application/json"}, auth="Bearer " + alice)
    check(s == 200 and b["active"] is True, "POST .../activate with {}", b)
    check(err(api("POST", f"/api/service-users/{sid}/activate", {"user_type": "human"},
                  auth="Bearer " + alice)) == (400, "invalid_field"),
          "a fixed field of the route cannot come in the body")
    s, _, b = api("DELETE", f"/api/service-users/{sid}", auth="Bearer " + alice)
    check(s == 204, "DELETE /api/service-users/{user_id}", b)
    check(verify(svc_tok)[0] == 401, "R4 its tokens went with it")

    # ------------------------------------------------------------ deactivation (R14)
    s, _, b = api("POST", "/api/users/bob/deactivate", auth=PLATFORM)
    check(s == 200 and b["active"] is False, "POST /api/users/{user_id}/deactivate", b)
    check(verify(bob) == (401, "user_deactivated"), "R14 bob's token stops at once")
    check(err(api("GET", "/api/user-tokens", auth="Bearer " + bob)) == (401, "user_deactivated"),
          "R14 and on the API")
    check(err(api("POST", "/api/users/bob/activate", auth="Bearer " + alice)) ==
          (404, "user_not_found"), "an Admin does not manage humans (no such service user)")
    s, _, b = api("POST", "/api/users/bob/activate", auth=PLATFORM)
    check(s == 200 and b["active"] and verify(bob)[0] == 200, "activate: it works again", b)
    check(err(api("PUT", "/api/users/carol", {}, auth="Bearer " + alice)) ==
          (403, "platform_only"), "only the platform writes users")
    check(err(api("GET", "/api/users/nobody", auth=PLATFORM)) == (404, "user_not_found"),
          "an unknown user is 404")
    check(err(api("GET", "/api/user-tokens", auth=PLATFORM, act_as="nobody")) ==
          (404, "user_not_found"), "act-as an unknown user is 404")
    s, _, b = api("GET", "/api/user-tokens", auth=PLATFORM, act_as="bob")
    check(s == 200 and [t["name"] for t in b["tokens"]] == ["bobs"],
          "the platform acts as bob: bob's tokens only", b)

    # ------------------------------------------------------------ the page's login links
    s, _, b = api("POST", "/api/users/alice/ui-link", auth=PLATFORM)
    check(s == 200 and b["path"].startswith("/ui/login?code=") and TIME.match(b["expiration"]),
          "POST /api/users/{user_id}/ui-link: a one-time link", b)
    s, h, _ = api("GET", b["path"])
    check(s == 303 and h.get("location") == "/ui/" and "patd_session=" in h.get("set-cookie", ""),
          "the link signs in once", h)
    check(api("GET", b["path"])[0] == 400, "and not twice")
    cookie = h["set-cookie"].split(";")[0]
    s, _, b2 = api("POST", "/api/credentials/revoke", {"credentials": []},
                   headers={"Cookie": cookie})
    check(s == 202, "a leak report with a page cookie and no CSRF token: still 202 (public)", b2)
    p.advance_clock(60 * 1000)  # that report's share of the rate limit comes back
    s, _, b2 = api("POST", "/api/user-tokens", {"name": "csrf"}, headers={"Cookie": cookie})
    check((s, b2["error"]["reason"]) == (403, "csrf_token_invalid"),
          "a change with the page's cookie and no CSRF token is refused", b2)
    check(err(api("POST", "/api/users/alice/ui-link", auth="Bearer " + alice)) ==
          (403, "platform_only"), "only the platform makes login links")
    check(err(api("POST", "/api/users/nobody/ui-link", auth=PLATFORM)) == (404, "user_not_found"),
          "a login link for an unknown user is 404")

    # ------------------------------------------------------------ leaked tokens
    s, _, b = api("POST", "/api/user-tokens", {"name": "leaky"}, auth="Bearer " + alice)
    leaky_id, leaky = b["token"]["id"], b["bearer_token"]
    check(verify(leaky)[0] == 200, "the token works before the report")
    s, _, b = api("POST", "/api/credentials/revoke",
                  {"credentials": [leaky, "patp_garbage", "not a token at all"]})
    check(s == 202 and b == {}, "a leak report: 202 {}, no credential needed", b)
    check(verify(leaky) == (401, "revoked"), "a reported token stops verifying at once")
    s, _, b = api("GET", f"/api/user-tokens/{leaky_id}/activity", auth="Bearer " + alice)
    ev = b["events"][0]
    check(ev["kind"] == "revoked" and ev["actor"] == "leak_report" and
          ev["client_ip"] == "127.0.0.1", "its owner sees why: leak_report and the address", ev)
    s, _, b = api("POST", "/api/credentials/revoke", {"credentials": [leaky, "x" * 200]})
    check(s == 202 and b == {}, "the same answer for a revoked token and garbage", b)
    check(err(api("POST", "/api/credentials/revoke", {"credentials": ["a"] * 1001})) ==
          (400, "invalid_field"), "at most 1000 credentials")
    check([api("POST", "/api/credentials/revoke", {"credentials": []})[0] for _ in range(2)] ==
          [202, 202], "an empty report is 202 too")
    s, h, b = api("POST", "/api/credentials/revoke", {"credentials": []})
    check((s, b["error"]["reason"]) == (429, "rate_limited") and int(h["retry-after"]) >= 1,
          "the sixth report in a minute from one address: 429 with Retry-After", (s, h, b))
    p.advance_clock(60 * 1000)
    s, _, b = api("POST", "/api/credentials/revoke", {"credentials": [123]})
    check(s == 400, "a minute later reports are taken again; a non-string entry is 400", b)

    # ------------------------------------------------------------ health, storage failure
    s, _, b = api("GET", "/api/health")
    check(s == 200 and b["status"] == "serving" and TIME.match(b["now"]) and
          isinstance(b["uptime_ms"], int), "GET /api/health", b)
    s, h, b = api("HEAD", "/api/health")
    check(s == 200 and b == b"", "HEAD: the headers, no body", (s, b))
    p.testing("SetFault", b"\x08\x01")
    s, h, b = api("POST", "/api/user-tokens", {"name": "when-full"}, auth="Bearer " + alice)
    check((s, b["error"]["reason"]) == (503, "storage_unavailable") and "retry-after" in h,
          "a failed write is 503 with Retry-After", b)
    p.testing("SetFault", b"")

    # ------------------------------------------------------------ routes and hostile input
    s, h, b = api("PATCH", f"/api/user-tokens/{laptop}", auth="Bearer " + alice)
    check(s == 405 and h.get("allow") == "GET, PUT, DELETE" and
          b["error"]["reason"] == "method_not_allowed", "a wrong verb is 405 with Allow", (h, b))
    check(err(api("GET", "/api/nope")) == (404, "no_route"), "an unknown route is 404 JSON")
    check(err(api("GET", "/api/user-tokens?page_size=1", data=b"{}", auth="Bearer " + alice,
                  headers={"Content-Type": "application/json"})) == (400, "bad_request"),
          "a body on a route that takes none is 400")
    check(err(api("GET", "/api/users/a%zz", auth=PLATFORM)) == (400, "invalid_field"),
          "a bad %-escape in the path is 400")
    check(err(api("GET", "/api/users/a%00b", auth=PLATFORM)) == (400, "invalid_field"),
          "a NUL in the path is 400")
    check(err(api("GET", "/api/users/a%ffb", auth=PLATFORM)) == (400, "invalid_field"),
          "invalid UTF-8 in the path is 400")
    # Only the headers: patd answers at their end, before a body it would refuse.
    got, closed = raw(p.http_port, b"POST /api/credentials/revoke HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    r = responses(got)
    check(r and r[0][0] == 413 and json.loads(r[0][2])["error"]["reason"] == "body_too_large" and
          closed, "a body over --http-max-body-bytes: 413 as JSON, then close", got[:300])
    two = (f"GET /api/user-tokens/{laptop} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}"
           f"\r\n\r\nGET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").encode()
    r = responses(raw(p.http_port, two)[0])
    check(len(r) == 2 and json.loads(r[0][2])["id"] == laptop and
          json.loads(r[1][2])["status"] == "serving", "two pipelined API requests, in order", r)
    s, _, b = api("GET", "/api/user-tokens", auth="Bearer " + alice,
                  headers={"X-Act-As-User": "bob"})
    check(s == 200 and all(t["user"]["user_id"] == "alice" for t in b["tokens"]),
          "X-Act-As-User means nothing with a bearer token", b)
    check(verify(alice)[0] == 200, "patd still serves after the hostile requests")

    # every route was called
    missing_routes = [f"{v} {pt}" for v, pt, _, _ in ROUTES if (v, pt) not in called]
    check(not missing_routes, "every route of `patd routes` was called", missing_routes)
    rc = p.stop()
    log = p.log()
    check(rc == 0 and "Sanitizer" not in log, "patd stops cleanly (under ASan: nothing leaked)",
          log[-2000:])
    check(all(t not in log for t in (alice, bob, scim, leaky, svc_tok, KEY)),
          "no secret and no platform key in the log")
finally:
    p.cleanup()
c.finish()
