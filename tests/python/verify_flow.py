#!/usr/bin/env python3
"""End-to-end check of a running verifyd with a plain Python grpcio client.

    verify_flow.py --addr 127.0.0.1:50051 --outbox /path/to/sim-outbox.jsonl [--api-key KEY]

The Python stubs are generated at run time from proto/verify/v1/verify.proto with
grpc_tools.protoc into a temporary directory, so nothing generated is committed. It needs the
packages grpcio and grpcio-tools (scripts/test installs them into .tools/venv).

The flow: Classify a few numbers; Verify a random valid GB mobile number; read the code from the
sim carrier's outbox (JSONL, one object per delivered message with verification_id and code);
Check a too-short code, a wrong code and the right one; GetVerification; WatchEvents of that
verification from cursor 0; then bad input. It prints one line per check and ends with
"N passed, M failed"; the exit status is 0 only when nothing failed.

An INVALID_ARGUMENT "mentions" a field when its google.rpc.BadRequest details name the field,
or when its message names it as a field: quoted (`to`, 'to', "to"), followed by ':' or '=',
after "field", or at the start of the message ("to: ...", "to must ...").
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Optional

try:
    import grpc
    import grpc_tools
    from grpc_tools import protoc
except ImportError as exc:  # pragma: no cover - depends on the environment
    print(f"verify_flow.py needs grpcio and grpcio-tools ({exc}); run scripts/test --install-only "
          "and use .tools/venv/bin/python", file=sys.stderr)
    print("0 passed, 1 failed")
    sys.exit(1)

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_PROTO_DIR = os.path.join(REPO_ROOT, "proto")
PROTO_FILE = "verify/v1/verify.proto"

# A landline, and a number that is valid but (in +1) either kind of line.
LANDLINE = "+442079460123"  # London, 020 7946 0xxx (Ofcom's drama range)
NANP_NUMBER = "+14155550123"


def random_mobile() -> str:
    # Every +44 7400 xxxxxx number is a valid GB mobile for libphonenumber. A fresh number per
    # run keeps runs apart: no pending verification or rate limit left by an earlier run.
    return "+447400" + "".join(random.choice("0123456789") for _ in range(6))


# ---------------------------------------------------------------------------------------------
# results


class Abort(Exception):
    """A check that later checks depend on failed; the rest of its section is skipped."""


class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def ok(self, name: str, detail: str = "") -> None:
        self.passed += 1
        print(f"ok   {name}" + (f" ({detail})" if detail else ""), flush=True)

    def fail(self, name: str, expected: Any, got: Any) -> None:
        self.failed += 1
        print(f"FAIL {name}\n     expected: {expected}\n     got:      {got}", flush=True)

    def check(self, name: str, cond: bool, expected: Any, got: Any, detail: str = "") -> bool:
        if cond:
            self.ok(name, detail)
        else:
            self.fail(name, expected, got)
        return cond

    def require(self, name: str, cond: bool, expected: Any, got: Any, detail: str = "") -> None:
        if not self.check(name, cond, expected, got, detail):
            raise Abort(name)

    def summary(self) -> int:
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        return 0 if self.failed == 0 else 1


# ---------------------------------------------------------------------------------------------
# stubs


def generate_stubs(proto_dir: str):
    out = tempfile.mkdtemp(prefix="verifyd-pystubs-")
    atexit.register(shutil.rmtree, out, True)
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main([
        "grpc_tools.protoc",
        f"-I{proto_dir}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        os.path.join(proto_dir, PROTO_FILE),
    ])
    if rc != 0:
        raise RuntimeError(f"grpc_tools.protoc failed with status {rc} on {proto_dir}/{PROTO_FILE}")
    sys.path.insert(0, out)
    from verify.v1 import verify_pb2, verify_pb2_grpc  # noqa: E402  (generated just now)
    return verify_pb2, verify_pb2_grpc


# ---------------------------------------------------------------------------------------------
# helpers


def status_details_fields(err: grpc.RpcError) -> list[str]:
    """Field names of google.rpc.BadRequest violations in the grpc-status-details-bin trailer.

    Decoded by hand (a few lines of protobuf wire format) so no extra package is needed.
    """

    def fields(buf: bytes):
        i = 0
        while i < len(buf):
            key, i = varint(buf, i)
            num, wt = key >> 3, key & 7
            if wt == 0:
                _, i = varint(buf, i)
            elif wt == 1:
                i += 8
            elif wt == 5:
                i += 4
            elif wt == 2:
                n, i = varint(buf, i)
                yield num, buf[i:i + n]
                i += n
            else:
                return

    def varint(buf: bytes, i: int):
        shift = result = 0
        while True:
            b = buf[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result, i
            shift += 7

    names: list[str] = []
    try:
        for key, value in (err.trailing_metadata() or ()):
            if key != "grpc-status-details-bin":
                continue
            for num, any_bytes in fields(value):  # google.rpc.Status.details (3) is an Any
                if num != 3:
                    continue
                parts = dict(fields(any_bytes))
                if not parts.get(1, b"").endswith(b"google.rpc.BadRequest"):
                    continue
                for vnum, violation in fields(parts.get(2, b"")):  # field_violations (1)
                    if vnum == 1:
                        for fnum, fval in fields(violation):  # FieldViolation.field (1)
                            if fnum == 1:
                                names.append(fval.decode("utf-8", "replace"))
    except Exception:  # a malformed trailer is the server's problem, reported as "not found"
        pass
    return names


def mentions_field(err: grpc.RpcError, field: str) -> bool:
    if field in status_details_fields(err):
        return True
    msg = err.details() or ""
    f = re.escape(field)
    patterns = [
        rf"[`'\"]{f}[`'\"]",  # `to` 'to' "to"
        rf"(?<![\w.]){f}\s*[:=]",  # to: ... / to=...
        rf"\bfield\s+{f}\b",  # field to
        rf"^\s*{f}\s+(is|must|should|cannot|can't|may|has|was|does|not)\b",  # to must ...
    ]
    return any(re.search(p, msg, re.IGNORECASE) for p in patterns)


def describe_error(err: grpc.RpcError) -> str:
    extra = status_details_fields(err)
    return f"{err.code().name}: {err.details()!r}" + (f" (BadRequest fields {extra})" if extra else "")


def wait_for_outbox(path: str, verification_id: str, timeout: float) -> Optional[dict]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line still being written
                    if isinstance(entry, dict) and entry.get("verification_id") == verification_id:
                        return entry
        except FileNotFoundError:
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def wrong_code_for(code: str) -> str:
    # Same length, every digit different.
    return "".join(str((int(c) + 1) % 10) if c.isdigit() else "1" for c in code)


def other_id(vid: str) -> str:
    # An id of the same shape as a real one that is (almost surely) not stored.
    last = vid[-1:]
    repl = "1" if last == "0" else "0"
    return vid[:-1] + repl if vid else "vf_00000000000000000000000000"


# ---------------------------------------------------------------------------------------------
# the flow


def run(args: argparse.Namespace, r: Results) -> None:
    pb, pb_grpc = generate_stubs(args.proto_dir)
    E = pb.EventType

    channel = grpc.insecure_channel(args.addr)
    try:
        grpc.channel_ready_future(channel).result(timeout=args.connect_timeout)
    except grpc.FutureTimeoutError:
        r.fail("connect", f"verifyd answering at {args.addr} within {args.connect_timeout:g} s",
               "no connection (is verifyd running and listening there?)")
        raise Abort("connect")
    r.ok("connect", args.addr)

    stub = pb_grpc.VerifyServiceStub(channel)
    metadata = []
    if args.api_key:
        header = args.api_key_header.lower()
        value = f"Bearer {args.api_key}" if header == "authorization" else args.api_key
        metadata.append((header, value))
    t = args.rpc_timeout

    def call(method: Callable, request, name: str):
        try:
            return method(request, timeout=t, metadata=metadata)
        except grpc.RpcError as err:
            r.fail(name, "an OK response", describe_error(err))
            raise Abort(name)

    def expect_error(name: str, method: Callable, request, code: grpc.StatusCode, field: Optional[str]):
        try:
            resp = method(request, timeout=t, metadata=metadata)
        except grpc.RpcError as err:
            got_code = err.code()
            if got_code != code:
                r.fail(name, code.name, describe_error(err))
            elif field is not None and not mentions_field(err, field):
                r.fail(name, f"{code.name} whose details mention the field `{field}`", describe_error(err))
            else:
                r.ok(name, describe_error(err))
            return
        r.fail(name, code.name, f"OK: {str(resp)[:200]!r}")

    def line_type(v: int) -> str:
        return pb.LineType.Name(v)

    # -- Classify ----------------------------------------------------------------------------
    mobile = args.to or random_mobile()
    for name, number, want in [
        ("classify mobile", mobile, dict(valid=True, line_type="LINE_TYPE_MOBILE",
                                         recommended_channel="CHANNEL_SMS", region_code="GB" if not args.to else None)),
        ("classify landline", LANDLINE, dict(valid=True, line_type="LINE_TYPE_FIXED_LINE",
                                             recommended_channel="CHANNEL_VOICE", region_code="GB")),
        ("classify +1 number", NANP_NUMBER, dict(valid=True, line_type="LINE_TYPE_FIXED_LINE_OR_MOBILE",
                                                 region_code="US", country_calling_code=1)),
        ("classify not a number", "abc", dict(valid=False, invalid_reason="INVALID_REASON_NOT_A_NUMBER",
                                              recommended_channel="CHANNEL_UNSPECIFIED")),
    ]:
        try:
            c = stub.Classify(pb.ClassifyRequest(number=number), timeout=t, metadata=metadata).classification
        except grpc.RpcError as err:
            r.fail(name, "an OK ClassifyResponse", describe_error(err))
            continue
        got = dict(valid=c.valid, e164=c.e164, region_code=c.region_code,
                   country_calling_code=c.country_calling_code, line_type=line_type(c.line_type),
                   recommended_channel=pb.Channel.Name(c.recommended_channel),
                   invalid_reason=pb.InvalidReason.Name(c.invalid_reason))
        expected = {k: v for k, v in want.items() if v is not None}
        if want.get("valid"):
            expected["e164"] = number
        mismatch = {k: got[k] for k in expected if got[k] != expected[k]}
        r.check(f"{name} {number}", not mismatch, expected, got, f"{got['line_type']}, {c.detail!r}" if not mismatch else "")

    # -- Verify, outbox, Check ---------------------------------------------------------------
    vid = ""
    approved = False
    try:
        resp = call(stub.Verify, pb.VerifyRequest(to=mobile), "verify")
        v = resp.verification
        vid = v.id
        r.require("verify starts a pending verification",
                  bool(vid) and v.status == pb.VERIFICATION_STATUS_PENDING and v.to == mobile and not resp.resent,
                  f"id set, status PENDING, to {mobile}, resent false",
                  f"id {vid!r}, status {pb.VerificationStatus.Name(v.status)}, to {v.to!r}, resent {resp.resent}",
                  f"{vid}, {pb.Channel.Name(v.channel)}, checks_left {v.checks_left}")

        entry = wait_for_outbox(args.outbox, vid, args.outbox_timeout)
        r.require("code arrives in the sim outbox", entry is not None and bool(str(entry.get("code", ""))),
                  f"a line with verification_id {vid} and a code in {args.outbox} within {args.outbox_timeout:g} s",
                  entry if entry is not None else "no such line")
        code = str(entry["code"])
        r.check("outbox line names the number and the code in its body",
                entry.get("to") == mobile and bool(entry.get("message_id"))
                and code in re.sub(r"[\s-]", "", str(entry.get("body", ""))),
                f"to {mobile}, message_id set, body containing {code}",
                {k: entry.get(k) for k in ("to", "message_id", "channel", "body")})

        # The outbox line means the sim delivered the message; wait until verifyd has recorded
        # the receipt too, so the event order checked below is deterministic.
        deadline = time.monotonic() + args.outbox_timeout
        while True:
            got = call(stub.GetVerification, pb.GetVerificationRequest(verification_id=vid), "get verification")
            statuses = [pb.DeliveryStatus.Name(a.delivery_status) for a in got.verification.attempts]
            if "DELIVERY_STATUS_DELIVERED" in statuses or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        r.check("attempt is recorded as delivered", statuses[:1] == ["DELIVERY_STATUS_DELIVERED"],
                "one attempt with DELIVERY_STATUS_DELIVERED", statuses)

        expect_error("check with a 3-digit code is INVALID_ARGUMENT about `code`", stub.Check,
                     pb.CheckRequest(verification_id=vid, code="123"), grpc.StatusCode.INVALID_ARGUMENT, "code")

        wrong = wrong_code_for(code)
        c = call(stub.Check, pb.CheckRequest(verification_id=vid, code=wrong), "check wrong code")
        r.check("check with a wrong code", c.result == pb.CHECK_RESULT_WRONG_CODE and c.checks_left == 4,
                "CHECK_RESULT_WRONG_CODE, checks_left 4",
                f"{pb.CheckResult.Name(c.result)}, checks_left {c.checks_left}")

        c = call(stub.Check, pb.CheckRequest(verification_id=vid, code=code), "check right code")
        approved = r.check("check with the right code", c.result == pb.CHECK_RESULT_APPROVED,
                           "CHECK_RESULT_APPROVED", pb.CheckResult.Name(c.result))

        g = call(stub.GetVerification, pb.GetVerificationRequest(verification_id=vid), "get verification")
        r.check("get verification shows it approved",
                g.verification.status == pb.VERIFICATION_STATUS_APPROVED and g.verification.id == vid,
                f"id {vid}, VERIFICATION_STATUS_APPROVED",
                f"id {g.verification.id}, {pb.VerificationStatus.Name(g.verification.status)}")
    except Abort:
        pass

    # -- WatchEvents -------------------------------------------------------------------------
    if not approved:
        print("skip watch events: the verification was not approved", flush=True)
    else:
        expected_types = [E.Name(x) for x in (
            E.EVENT_TYPE_VERIFICATION_CREATED, E.EVENT_TYPE_MESSAGE_QUEUED, E.EVENT_TYPE_MESSAGE_SUBMITTED,
            E.EVENT_TYPE_MESSAGE_DELIVERED, E.EVENT_TYPE_CHECK_FAILED, E.EVENT_TYPE_VERIFICATION_APPROVED)]
        events = []
        problem = ""
        stream = stub.WatchEvents(pb.WatchEventsRequest(verification_id=vid, after_cursor=0),
                                  timeout=args.watch_timeout, metadata=metadata)
        try:
            for item in stream:
                events.append(item.event)
                if item.event.type == E.EVENT_TYPE_VERIFICATION_APPROVED:
                    break
            else:
                problem = "the stream ended before the approved event"
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                problem = f"no approved event within {args.watch_timeout:g} s"
            else:
                problem = describe_error(err)
        finally:
            stream.cancel()
        got_types = [E.Name(e.type) for e in events]
        cursors = [e.cursor for e in events]
        ids = {e.verification_id for e in events}
        ordered = all(a < b for a, b in zip(cursors, cursors[1:])) and (not cursors or cursors[0] > 0)
        r.check("watch events of the verification from cursor 0",
                not problem and got_types == expected_types and ordered and ids == {vid},
                f"{expected_types} with rising cursors > 0, all for {vid}",
                f"{got_types} cursors {cursors} ids {sorted(ids)}" + (f"; {problem}" if problem else ""))
        msg_events = [e for e in events if e.type in (E.EVENT_TYPE_MESSAGE_QUEUED, E.EVENT_TYPE_MESSAGE_SUBMITTED,
                                                      E.EVENT_TYPE_MESSAGE_DELIVERED)]
        r.check("message events carry the message id and delivery status",
                bool(msg_events) and all(e.message_id for e in msg_events)
                and [pb.DeliveryStatus.Name(e.delivery_status) for e in msg_events]
                == ["DELIVERY_STATUS_QUEUED", "DELIVERY_STATUS_SUBMITTED", "DELIVERY_STATUS_DELIVERED"],
                "message_id set; delivery status QUEUED, SUBMITTED, DELIVERED",
                [(e.message_id, pb.DeliveryStatus.Name(e.delivery_status)) for e in msg_events])

    # -- bad input ---------------------------------------------------------------------------
    for label, to in [("empty", ""), ("letters", "abc"), ("40 digits", "+" + "1234567890" * 4)]:
        expect_error(f"verify with to {label} ({to!r}) is INVALID_ARGUMENT about `to`", stub.Verify,
                     pb.VerifyRequest(to=to), grpc.StatusCode.INVALID_ARGUMENT, "to")
    unknown = other_id(vid)
    expect_error(f"get verification of unknown id {unknown!r} is NOT_FOUND", stub.GetVerification,
                 pb.GetVerificationRequest(verification_id=unknown), grpc.StatusCode.NOT_FOUND, None)

    # -- notify under the country rules ----------------------------------------------------------
    to = random_mobile()
    n = call(stub.Notify, pb.NotifyRequest(to=to, category=pb.MESSAGE_CATEGORY_TRANSACTIONAL,
                                           body="Your order has shipped."), "notify")
    r.check("notify of a transactional message decides to send now, with the route",
            n.decision.action == pb.POLICY_ACTION_SEND_NOW and n.decision.carrier != ""
            and n.notification.id.startswith("nt_") and "route" in n.decision.explanation,
            "POLICY_ACTION_SEND_NOW naming a route",
            f"{pb.PolicyAction.Name(n.decision.action)} {n.decision.explanation!r}")
    deadline = time.monotonic() + args.watch_timeout
    status = None
    while time.monotonic() < deadline:
        got = call(stub.GetNotification, pb.GetNotificationRequest(notification_id=n.notification.id),
                   "get notification")
        status = pb.NotificationStatus.Name(got.notification.status)
        if status == "NOTIFICATION_STATUS_DELIVERED":
            break
        time.sleep(0.05)
    r.check("the notification is delivered", status == "NOTIFICATION_STATUS_DELIVERED",
            "NOTIFICATION_STATUS_DELIVERED", status)
    expect_error("notify without a category is INVALID_ARGUMENT about `category`", stub.Notify,
                 pb.NotifyRequest(to=to, body="hello"), grpc.StatusCode.INVALID_ARGUMENT, "category")
    expect_error("notify from an alphanumeric sender to a US number is FAILED_PRECONDITION about `sender`",
                 stub.Notify, pb.NotifyRequest(to="+12127365000", category=pb.MESSAGE_CATEGORY_TRANSACTIONAL,
                                               body="Your order has shipped.", sender="SHOP"),
                 grpc.StatusCode.FAILED_PRECONDITION, "sender")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--addr", required=True, help="verifyd's gRPC address, HOST:PORT")
    p.add_argument("--outbox", required=True, help="the sim carrier's outbox JSONL file")
    p.add_argument("--api-key", default=os.environ.get("VERIFYD_API_KEY", ""),
                   help="API key to send (default: $VERIFYD_API_KEY; none when empty)")
    p.add_argument("--api-key-header", default="authorization",
                   help="metadata key for the API key; 'authorization' sends 'Bearer KEY' (default)")
    p.add_argument("--to", default="", help="the mobile number to verify (default: a random +44 7400 number)")
    p.add_argument("--proto-dir", default=DEFAULT_PROTO_DIR, help="include directory of verify/v1/verify.proto")
    p.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for the server")
    p.add_argument("--rpc-timeout", type=float, default=10.0, help="deadline of each unary call, seconds")
    p.add_argument("--outbox-timeout", type=float, default=10.0, help="seconds to wait for the code and receipt")
    p.add_argument("--watch-timeout", type=float, default=10.0, help="deadline of the WatchEvents read, seconds")
    args = p.parse_args()

    r = Results()
    try:
        run(args, r)
    except Abort:
        pass
    except Exception as exc:  # report, do not hide behind a traceback only
        r.fail("unexpected error", "no exception", f"{type(exc).__name__}: {exc}")
    return r.summary()


if __name__ == "__main__":
    sys.exit(main())
