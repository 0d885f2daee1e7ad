#!/usr/bin/env bash
# labels: tsan
# One minute of scripts/soak: backups, racing backups refused by the lock,
# prunes and consolidations on a mounted repository while two readers verify
# every view they reach against the bytes backed up (0 mismatches, 0
# errors), then check --deep. In the ThreadSanitizer build this runs the
# daemon under TSan: parallel readers, live refresh, consolidation while
# mounted.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"

step "soak for ${CHAINFS_SOAK_MINUTES:-1} minute(s)"
rc=0
python3 "$SRC/scripts/soak" "${CHAINFS_SOAK_MINUTES:-1}" --size-mib 8 --keep "$T/soak" --json \
  >"$T/soak.json" || rc=$?
cat "$T/soak.json"
[ "$rc" -eq 0 ] || { tail -20 "$T/soak/mount.log" >&2; fail "soak reported problems (exit $rc)"; }
jq -e '.mismatches == 0 and .errors == 0 and .check_exit == 0' "$T/soak.json" >/dev/null ||
  fail "soak figures show a problem"
# It must have exercised what it claims to.
jq -e '.backups >= 3 and .reads_verified >= 10 and (.prunes + .consolidations) >= 1' \
  "$T/soak.json" >/dev/null || fail "soak did too little to mean anything"
echo PASS
