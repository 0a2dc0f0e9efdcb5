#!/usr/bin/python3
"""Writes the fuzzers' seed corpora from the proto (run by hand when the
contract changes; its output is committed): valid requests for every method,
with the fuzz platform key, so mutations start from deep inside."""
import os
import struct
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
proto = os.path.join(here, "..", "..", "proto")
gen = tempfile.mkdtemp()
subprocess.run(["protoc", f"-I{proto}", f"--python_out={gen}",
                os.path.join(proto, "pat/v1/pat.proto")], check=True)
sys.path.insert(0, gen)
from pat.v1 import pat_pb2 as pb  # noqa: E402

KEY = "fuzz-platform-key-0123456789abcdef"
TOKEN = "patp_0123456789ABCDEFGHIJabcdefghij0000000"


def request(i, method, msg, act_as=None, auth="platform"):
    r = pb.Request(id=i, method="pat.v1.TokenService/" + method,
                   payload=msg.SerializeToString())
    if auth == "platform":
        r.metadata["authorization"] = "Platform " + KEY
    elif auth == "bearer":
        r.metadata["authorization"] = "Bearer " + TOKEN
    if act_as:
        r.metadata["x-act-as-user"] = act_as
    return r.SerializeToString()


seeds = [
    request(1, "Health", pb.HealthRequest(), auth=None),
    request(2, "UpsertUser", pb.UpsertUserRequest(user=pb.User(user_id="u", role=pb.ROLE_ADMIN))),
    request(3, "GetUser", pb.GetUserRequest(user_id="u")),
    request(4, "ListUsers", pb.ListUsersRequest(page_size=2)),
    request(5, "DeactivateUser", pb.DeactivateUserRequest(user_id="u")),
    request(6, "ActivateUser", pb.ActivateUserRequest(user_id="u")),
    request(7, "CreateToken", pb.CreateTokenRequest(name="t", expires_in_days=30), act_as="u"),
    request(8, "CreateToken", pb.CreateTokenRequest(name="s", scim_endpoints_only=True), act_as="u"),
    request(9, "ListTokens", pb.ListTokensRequest(), act_as="u"),
    request(10, "UpdateToken", pb.UpdateTokenRequest(id=1, revoke=True), act_as="u"),
    request(11, "DeleteToken", pb.DeleteTokenRequest(id=1), act_as="u"),
    request(12, "ListTokenActivity", pb.ListTokenActivityRequest(id=1, limit=5), act_as="u"),
    request(13, "CreateServiceUser", pb.CreateServiceUserRequest(user_name="bot"), act_as="u"),
    request(14, "ListServiceUsers", pb.ListServiceUsersRequest(), act_as="u"),
    request(15, "DeleteServiceUser", pb.DeleteServiceUserRequest(user_id="svc_x"), act_as="u"),
    request(16, "Verify", pb.VerifyRequest(bearer_token=TOKEN, path="/scim/v2/../x",
                                           required_role=pb.ROLE_ADMIN, client_ip="1.2.3.4"),
            auth=None),
    request(17, "ListTokens", pb.ListTokensRequest(kind=pb.TOKEN_KIND_SERVICE), auth="bearer"),
]
for i, s in enumerate(seeds):
    open(os.path.join(here, "corpus", "dispatch", f"seed{i:02d}"), "wb").write(s)
    # Frames: the same requests, length-prefixed and concatenated in pairs.
    framed = struct.pack(">I", len(s)) + s
    nxt = seeds[(i + 1) % len(seeds)]
    framed += struct.pack(">I", len(nxt)) + nxt
    open(os.path.join(here, "corpus", "frame", f"seed{i:02d}"), "wb").write(b"\x40\x05\x01" + framed)
for i, t in enumerate([TOKEN.encode(), b"pats_" + b"A" * 38, b"patscim_" + b"z" * 38,
                       b"/scim/v2/Users", b"/scim/v2/../../api", b"/a/%2e%2e/b?x#y",
                       b"caf\xc3\xa9", b"\xed\xa0\x80", b"\x08\x96\x01\x12\x01x"]):
    open(os.path.join(here, "corpus", "token", f"seed{i:02d}"), "wb").write(t)
print(f"{len(seeds)} dispatch seeds written")
