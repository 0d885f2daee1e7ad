#!/usr/bin/env bash
# labels: tsan
# A live view: a checkpoint committed while mounted appears without
# remounting (listing, lookup, `latest`); a checkpoint removed (its manifest
# and delta gone, as consolidation or prune leave it) disappears, while a file
# already open on it keeps returning the bytes it returned before.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

R=$T/repo
M=$T/mnt
A=$T/vda.img


step "setup: c1, mounted; a new group appears too"
ok "$CHAINFS" init "$R"
random_file 1 $((2 << 20)) "$A"
ok "$CHAINFS" backup "$R" vm1 c1 --disk vda="$A"
cp "$A" "$T/exp.c1"
mount_fg "$R" "$M"
ls "$M/vm1" >/dev/null
[ "$(readlink "$M/vm1/latest")" = c1 ] || fail "latest is not c1"

step "c2 committed while mounted appears"
random_file 2 100000 "$T/chunk" && dd if="$T/chunk" of="$A" bs=4K seek=10 conv=notrunc status=none
ok "$CHAINFS" backup "$R" vm1 c2 --disk vda="$A"
cp "$A" "$T/exp.c2"
eventually test -e "$M/vm1/c2/vda.raw" || fail "vm1/c2 did not appear by lookup"
ls "$M/vm1" | grep -qx c2 || fail "vm1/c2 not in the listing"
eventually sh -c "[ \"\$(readlink '$M/vm1/latest')\" = c2 ]" || fail "latest did not move to c2"
cmp "$M/vm1/c2/vda.raw" "$T/exp.c2" || fail "vm1/c2/vda.raw differs from the image"
cmp "$M/vm1/latest/vda.raw" "$T/exp.c2" || fail "latest/vda.raw is not c2"
ok "$CHAINFS" backup "$R" vm2 c1 --disk vda="$T/exp.c1"
eventually test -e "$M/vm2/c1/vda.raw" || fail "group vm2 did not appear"

step "c2 removed while a file on it is open"
exec 7<"$M/vm1/c2/vda.raw"
head -c 65536 <&7 >/dev/null   # read once through the open file
delta=$(jq -r '.disks[0].delta' "$R/groups/vm1/checkpoints/c2.json")
rm "$R/groups/vm1/checkpoints/c2.json" "$R/groups/vm1/deltas/$delta"
eventually sh -c "! ls '$M/vm1' | grep -qx c2" || fail "vm1/c2 still listed after removal"
eventually sh -c "! test -e '$M/vm1/c2'" || fail "vm1/c2 still found by lookup after removal"
eventually sh -c "[ \"\$(readlink '$M/vm1/latest')\" = c1 ]" || fail "latest did not go back to c1"
# The open file still reads c2's bytes, including blocks never read before.
python3 - "$T/exp.c2" <<'PY' || fail "the open file on the removed c2 no longer reads c2's bytes"
import os, sys
exp = open(sys.argv[1], "rb").read()
got = bytearray()
off = 0
while off < len(exp):
    b = os.pread(7, 1 << 20, off)
    if not b:
        break
    got += b
    off += len(b)
sys.exit(0 if bytes(got) == exp else 1)
PY
exec 7<&-
cmp "$M/vm1/c1/vda.raw" "$T/exp.c1" || fail "vm1/c1 changed"

step "c2 re-created with other content gets fresh bytes"
random_file 3 $((2 << 20)) "$A"
ok "$CHAINFS" backup "$R" vm1 c2 --disk vda="$A"
eventually test -e "$M/vm1/c2/vda.raw" || fail "re-created vm1/c2 did not appear"
cmp "$M/vm1/c2/vda.raw" "$A" || fail "re-created vm1/c2 shows stale bytes"
unmount_wait "$M"
echo PASS
