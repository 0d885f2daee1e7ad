#!/usr/bin/env bash
# A corrupt stored block (one byte flipped inside it in the delta file) makes
# reads of that block fail with EIO and logs one line naming the repository,
# checkpoint, disk and offset; the neighbouring blocks and other checkpoints
# still read correctly and the daemon keeps running.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

R=$T/repo
M=$T/mnt
A=$T/vda.img
BS=65536

step "setup: blocks 4, 5, 6 hold data (stored raw), one byte of the second stored block flipped"
ok "$CHAINFS" init "$R" --compression none
truncate -s 1M "$A"
random_file 1 $((3 * BS)) "$T/chunk"
dd if="$T/chunk" of="$A" bs=$BS seek=4 conv=notrunc status=none
ok "$CHAINFS" backup "$R" vm1 c1 --disk vda="$A"
cp "$A" "$T/exp.c1"
ok "$CHAINFS" backup "$R" vm1 c2 --disk vda="$A" --full
delta=$R/groups/vm1/deltas/$(jq -r '.disks[0].delta' "$R/groups/vm1/checkpoints/c1.json")
# Stored blocks follow the header; raw blocks are BS bytes each.
perl -e 'open(F, "+<", $ARGV[0]) or die; seek(F, $ARGV[1], 0); read(F, $b, 1);
         seek(F, $ARGV[1], 0); print F chr(ord($b) ^ 0xff); close(F) or die' "$delta" $(($(delta_header_size "$delta") + BS + 1000))
mount_fg "$R" "$M" -o log="$T/daemon.log"

step "the damaged block fails with EIO, its neighbours read"
python3 - "$M/vm1/c1/vda.raw" "$T/exp.c1" <<'PY' >"$T/blocks" || fail "block reads of c1: $(cat "$T/blocks")"
import errno, os, sys
BS = 65536
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
exp = open(sys.argv[2], "rb").read()
import mmap
buf = mmap.mmap(-1, BS)
bad = []
for b in range(16):
    try:
        n = os.preadv(fd, [buf], b * BS)
        if n != BS or buf[:] != exp[b * BS:(b + 1) * BS]:
            print(f"block {b}: wrong bytes"); sys.exit(1)
    except OSError as e:
        if e.errno != errno.EIO:
            print(f"block {b}: {e}"); sys.exit(1)
        bad.append(b)
print("EIO blocks", bad)
sys.exit(0 if len(bad) == 1 and bad[0] in (4, 5, 6) else 1)
PY
cat "$T/blocks"
badblock=$(sed -n 's/^EIO blocks \[\([0-9]*\)\]$/\1/p' "$T/blocks")

step "one log line per failed read names repository, checkpoint, disk and offset"
grep -i "read failed" "$T/daemon.log" >"$T/errors" || fail "no log line for the failed read"
[ "$(wc -l <"$T/errors")" -eq 1 ] || fail "expected one log line, got: $(cat "$T/errors")"
line=$(cat "$T/errors")
for want in "$R" "c1" "vda" "offset $((badblock * BS))"; do
  grep -qF -- "$want" <<<"$line" || fail "log line does not name '$want': $line"
done

step "the daemon goes on: other checkpoints and a buffered read of the rest"
kill -0 "$MOUNT_PID" || fail "daemon died"
cmp "$M/vm1/c2/vda.raw" "$T/exp.c1" || fail "c2 (stored separately) does not read"
dd if="$M/vm1/c1/vda.raw" bs=$BS count=4 status=none | cmp - <(head -c $((4 * BS)) "$T/exp.c1") ||
  fail "blocks 0-3 of c1 do not read through the page cache"
dd if="$M/vm1/c1/vda.raw" bs=$BS count=1 skip="$badblock" status=none 2>/dev/null >/dev/null &&
  fail "a buffered read of the damaged block succeeded"
unmount_wait "$M"
echo PASS
