#!/usr/bin/env bash
# A walk through verifyd with grpcurl and server reflection only (no .proto files needed):
# list the services, describe VerifyService, start a verification, read the code from the sim
# carrier's outbox, check it. Prints each command before running it, then "walkthrough ok".
#
#   scripts/grpcurl-walkthrough.sh [ADDR [OUTBOX]]
#
#   ADDR     verifyd's gRPC address, HOST:PORT (or $ADDR; default 127.0.0.1:50051)
#   OUTBOX   the sim carrier's outbox JSONL file (or $OUTBOX; default ./verifyd-sim-outbox.jsonl)
#
# Optional environment: GRPCURL (default $VERIFYD_TEST_GRPCURL, else grpcurl on PATH),
# PYTHON (default python3), TO (number to verify; default a random +44 7400 mobile number),
# VERIFYD_API_KEY (sent as "authorization: Bearer KEY"), OUTBOX_TIMEOUT (seconds, default 10).
# Exits non-zero on any failure.
set -euo pipefail

ADDR="${1:-${ADDR:-127.0.0.1:50051}}"
OUTBOX="${2:-${OUTBOX:-verifyd-sim-outbox.jsonl}}"
GRPCURL="${GRPCURL:-${VERIFYD_TEST_GRPCURL:-grpcurl}}"
PYTHON="${PYTHON:-python3}"
OUTBOX_TIMEOUT="${OUTBOX_TIMEOUT:-10}"
TO="${TO:-$(printf '+447400%06d' $(((RANDOM * 32768 + RANDOM) % 1000000)))}"

die() {
  printf 'walkthrough FAILED: %s\n' "$*" >&2
  exit 1
}

command -v "$GRPCURL" >/dev/null 2>&1 || die "grpcurl not found (set GRPCURL, or run scripts/test --install-only and use .tools/bin/grpcurl)"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set PYTHON)"

GRPCURL_ARGS=(-plaintext -max-time 10)
if [[ -n "${VERIFYD_API_KEY:-}" ]]; then
  GRPCURL_ARGS+=(-H "authorization: Bearer ${VERIFYD_API_KEY}")
fi

# Prints the command (as a reader would type it), runs it, prints and keeps its output in $OUT.
OUT=""
run_grpcurl() {
  local arg line='$ grpcurl -plaintext'
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_.:/+=-]+$ ]]; then line+=" $arg"; else line+=" '$arg'"; fi
  done
  printf '\n%s\n' "$line"
  if ! OUT="$("$GRPCURL" "${GRPCURL_ARGS[@]}" "$@" 2>&1)"; then
    printf '%s\n' "$OUT"
    die "grpcurl $* failed"
  fi
  printf '%s\n' "$OUT"
}

# 1. What does the server offer?
run_grpcurl "$ADDR" list
grep -qx 'verify.v1.VerifyService' <<<"$OUT" || die "verify.v1.VerifyService is not in the list of services"

run_grpcurl "$ADDR" describe verify.v1.VerifyService
grep -q 'rpc Verify' <<<"$OUT" || die "describe did not show rpc Verify"

# 2. Start a verification.
run_grpcurl -d "{\"to\":\"$TO\"}" "$ADDR" verify.v1.VerifyService/Verify
ID="$("$PYTHON" -c '
import json, sys
print(json.loads(sys.stdin.read())["verification"]["id"])
' <<<"$OUT" 2>/dev/null)" || die "no verification id in the Verify response"
printf '\nverification id: %s\n' "$ID"

# 3. The sim carrier "delivers" the code by writing a line to its outbox file.
printf 'waiting up to %s s for the code in %s ...\n' "$OUTBOX_TIMEOUT" "$OUTBOX"
CODE="$("$PYTHON" - "$OUTBOX" "$ID" "$OUTBOX_TIMEOUT" <<'PY'
import json, sys, time
path, vid, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
deadline = time.monotonic() + timeout
while True:
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("verification_id") == vid and entry.get("code"):
                    print(entry["code"])
                    sys.exit(0)
    except FileNotFoundError:
        pass
    if time.monotonic() >= deadline:
        sys.exit(1)
    time.sleep(0.1)
PY
)" || die "no code for $ID in $OUTBOX within $OUTBOX_TIMEOUT s"
printf 'code from the outbox: %s\n' "$CODE"

# 4. Check it.
run_grpcurl -d "{\"verification_id\":\"$ID\",\"code\":\"$CODE\"}" "$ADDR" verify.v1.VerifyService/Check
grep -q 'CHECK_RESULT_APPROVED' <<<"$OUT" || die "Check did not answer CHECK_RESULT_APPROVED"

printf '\nwalkthrough ok\n'
