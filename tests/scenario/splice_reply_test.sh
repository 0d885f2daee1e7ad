#!/usr/bin/env bash
# Reads of raw stored bytes answered by splice (fusefs/driver/splice_reply.h):
# a qcow2 chain whose views mix raw clusters (spliced from the image files),
# compressed ones (decoded, from the cache) and zeros in the same reply reads
# exactly as `qemu-img convert` gives it, with dd of 1 MiB and with reads of
# odd sizes at odd offsets; `chainfs stats` shows the replies were spliced.
# -o nosplice copies them (same bytes, nothing spliced); a native repository
# never splices. An image cut short while mounted reads EIO past the cut (the
# spliced read fails and is copied, which reports it), never a short read or
# zeros, and the daemon stays up.
# labels: tsan
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

for t in qemu-img qemu-io python3 jq openssl; do
  command -v "$t" >/dev/null || fail "$t not installed (scripts/setup-deps)"
done

I=$T/img
M=$T/mnt
MB=$((1 << 20))
mkdir -p "$I"

# stat_of KEY: a counter of the mount's replies.
stat_of() { "$CHAINFS" stats "$M" --json | jq -er ".replies.$1"; }
# same_reads VIEW TRUTH: the view equals TRUTH read with dd bs=1M and with
# 400 preads of odd sizes (1 byte to 1.3 MiB) at odd offsets.
same_reads() {
  cmp <(dd if="$1" bs=1M status=none) "$2" || fail "dd of $1 differs from $2"
  python3 - "$1" "$2" <<'PY' || fail "odd-sized reads of $1 differ from $2"
import os, random, sys
r = random.Random(11)
want = open(sys.argv[2], "rb").read()
fd = os.open(sys.argv[1], os.O_RDONLY)
assert os.fstat(fd).st_size == len(want), "size"
for _ in range(400):
    off = r.randrange(len(want))
    n = r.choice([1, 511, 4096, 65537, 300001, 1300000])
    got = os.pread(fd, n, off)
    if got != want[off:off + n]:
        sys.exit(f"pread({n}, {off}) differs")
PY
}

step "images: a compressed base (text and random), two raw overlays, a raw base under a qcow2"
random_file 1 $((6 * MB)) "$T/rand"
python3 -c 'import sys; sys.stdout.buffer.write((b"chainfs\n" * (10 << 17))[:10 << 20])' >"$T/text"
cat "$T/rand" "$T/text" >"$T/base.raw"
ok qemu-img convert -q -c -O qcow2 "$T/base.raw" "$I/b0.qcow2"
ok qemu-img create -q -f qcow2 -b b0.qcow2 -F qcow2 "$I/b1.qcow2"
ok qemu-io -f qcow2 -c "write -P 0x41 1M 3M" -c "write -z 8M 1M" -c "write -P 0x42 12M 100K" "$I/b1.qcow2"
ok qemu-img create -q -f qcow2 -b b1.qcow2 -F qcow2 "$I/b2.qcow2"
ok qemu-io -f qcow2 -c "write -P 0x43 2M 64K" -c "write -P 0x44 7M 1500K" -c "discard 13M 1M" "$I/b2.qcow2"
cat "$T/rand" "$T/text" >"$I/rawbase.raw"
ok qemu-img create -q -f qcow2 -b rawbase.raw -F raw "$I/rtop.qcow2"
ok qemu-io -f qcow2 -c "write -P 0x45 5M 64K" "$I/rtop.qcow2"
for n in b0 b1 b2 rtop; do ok qemu-img convert -O raw "$I/$n.qcow2" "$T/$n.ref"; done

step "mount: every view as qemu-img reads it, the raw clusters spliced"
mount_fg "$I" "$M" -o log="$T/daemon.log"
for v in b2/b0 b2/b1 b2/b2 rtop/rtop; do same_reads "$M/$v/disk.raw" "$T/${v#*/}.ref"; done
spliced=$(stat_of spliced_bytes)
[ "$spliced" -ge $((16 * MB)) ] || fail "only $spliced bytes spliced over four 16 MiB views"
[ "$(stat_of spliced_replies)" -gt 0 ] || fail "no reply spliced"
[ "$(stat_of splice_fallbacks)" = 0 ] || fail "$(stat_of splice_fallbacks) replies copied instead of spliced"
unmount_wait "$M"

step "-o nosplice: the same bytes, copied"
mount_fg "$I" "$M" -o nosplice,log="$T/daemon.log"
for v in b2/b2 rtop/rtop; do same_reads "$M/$v/disk.raw" "$T/${v#*/}.ref"; done
[ "$(stat_of spliced_bytes)" = 0 ] || fail "-o nosplice spliced $(stat_of spliced_bytes) bytes"
unmount_wait "$M"

step "a native repository: its blocks are checked and decoded, never spliced"
R=$T/repo
ok "$CHAINFS" init "$R" --compression none
ok "$CHAINFS" backup "$R" vm1 c1 --disk vda="$T/base.raw"
mount_fg "$R" "$M"
cmp "$M/vm1/c1/vda.raw" "$T/base.raw" || fail "native view differs"
[ "$(stat_of spliced_bytes)" = 0 ] || fail "a native repository spliced $(stat_of spliced_bytes) bytes"
unmount_wait "$M"

step "an image cut short while mounted: EIO past the cut, never a short read; the daemon stays up"
C=$T/cut
mkdir -p "$C"
ok qemu-img convert -q -O qcow2 "$T/base.raw" "$C/whole.qcow2"
mount_fg "$C" "$M" -o log="$T/daemon.log"
V=$M/whole/whole/disk.raw
cmp_region "$V" "$T/base.raw" 0 $MB || fail "the first MiB differs before the cut"
size=$(stat -c %s "$C/whole.qcow2")
truncate -s $((size / 2)) "$C/whole.qcow2"
sync
echo 3 >/proc/sys/vm/drop_caches
fallbacks=$(stat_of splice_fallbacks)
err=$(dd if="$V" of=/dev/null bs=1M skip=14 count=1 iflag=direct 2>&1) && fail "read past the cut succeeded: $err"
grep -qi "input/output error" <<<"$err" || fail "read past the cut: '$err', expected EIO"
python3 - "$V" <<'PY' || fail "a buffered read past the cut"
import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    data = os.pread(fd, 1 << 20, 14 << 20)
    sys.exit(f"read {len(data)} bytes past the cut")
except OSError as e:
    if e.errno != errno.EIO:
        sys.exit(f"errno {e.errno}, expected EIO")
PY
[ "$(stat_of splice_fallbacks)" -gt "$fallbacks" ] || fail "the failed splice was not counted"
grep -q "truncated" "$T/daemon.log" || fail "the daemon log does not say the image is truncated: $(tail -3 "$T/daemon.log")"
grep -q "whole.qcow2" "$T/daemon.log" || fail "the daemon log does not name whole.qcow2"
kill -0 "$MOUNT_PID" || fail "the daemon died"
cmp_region "$V" "$T/base.raw" 0 $MB || fail "the first MiB differs after the cut"
unmount_wait "$M"
echo PASS
