#!/usr/bin/env bash
# -o direct_io: disk views bypass the kernel's page cache. Views read the
# same bytes as without it (a checkpoint, and a later one that rewrote,
# zeroed and grew the disk); nothing of a view is left in the page cache
# after reading it, so a re-read reaches the daemon (its cache hits move),
# where without the option the re-read stays in the kernel; views advertise
# 1 MiB as their preferred I/O size; reads at, past and across the end return
# what they should (the kernel does not clip them); an ext4 checkpoint
# loop-mounts and shows its files; a private mmap reads the view, a shared
# one is refused (ENODEV).
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

R=$T/repo
M=$T/mnt
A=$T/vda.img
BS=65536
mkdir -p "$T/src" "$T/lc"
on_exit "umount '$T/src'; umount '$T/lc'"

# counter KEY: one counter of the mount's cache.
counter() { "$CHAINFS" stats "$M" --json | jq -er ".cache.$1"; }
# cached_pages FILE: pages of FILE in the kernel's page cache (cachestat(2),
# Linux 6.5; it needs no mmap, which a direct_io file may refuse).
cached_pages() {
  python3 - "$1" <<'PY'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
class Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]
class Stat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("cache", "dirty", "wb", "evicted", "recent")]
fd = os.open(sys.argv[1], os.O_RDONLY)
r, s = Range(0, 0), Stat()  # len 0: up to the end of the file
if libc.syscall(451, fd, ctypes.byref(r), ctypes.byref(s), 0) != 0:
    sys.exit("cachestat of %s: %s" % (sys.argv[1], os.strerror(ctypes.get_errno())))
print(s.cache)
PY
}
# settle: waits until the cache's counters stop moving (the kernel's
# readahead of a buffered read may still be in flight when dd returns).
settle() {
  local a b
  a=$("$CHAINFS" stats "$M" --json | jq -c .cache)
  for _ in $(seq 50); do
    sleep 0.2
    b=$("$CHAINFS" stats "$M" --json | jq -c .cache)
    [ "$a" = "$b" ] && return 0
    a=$b
  done
  fail "the cache's counters never settled"
}
# reread_hits VIEW FIRST: cache hits of a buffered re-read of 8 blocks of
# VIEW (in the 1 MiB c2 rewrote), after a first read of the whole view
# (FIRST=view: nothing is left for the kernel's readahead to fetch) or of
# the same 8 blocks (FIRST=blocks: a whole-view scan may evict them).
reread_hits() {
  if [ "$2" = view ]; then
    cat "$1" >/dev/null
  else
    dd if="$1" of=/dev/null bs=$BS count=8 skip=324 status=none
  fi
  settle
  local h
  h=$(counter hits)
  dd if="$1" of=/dev/null bs=$BS count=8 skip=324 status=none
  settle
  echo $(($(counter hits) - h))
}

step "setup: c1 an ext4 disk; c2 rewrites 1 MiB, zeroes 1 MiB and grows the disk"
ok "$CHAINFS" init "$R"
truncate -s 32M "$A"
mkfs.ext4 -q -F "$A"
mount -o loop "$A" "$T/src"
random_file 1 $((3 << 20)) "$T/src/blob"
seq 1 50000 >"$T/src/numbers"
umount "$T/src"
cp "$A" "$T/c1.img"
ok "$CHAINFS" backup "$R" vm1 c1 --disk vda="$A"
random_file 2 $((1 << 20)) "$T/chunk"
dd if="$T/chunk" of="$A" bs=1M seek=20 conv=notrunc status=none
dd if=/dev/zero of="$A" bs=1M seek=2 count=1 conv=notrunc status=none
truncate -s 40M "$A"
cp "$A" "$T/c2.img"
ok "$CHAINFS" backup "$R" vm1 c2 --disk vda="$A"

step "without direct_io: a view read stays in the page cache, a re-read never reaches the daemon"
mount_fg "$R" "$M"
cmp "$M/vm1/c1/vda.raw" "$T/c1.img" || fail "default mount: c1 differs from its image"
[ "$(cached_pages "$M/vm1/c1/vda.raw")" -gt 0 ] || fail "default mount: nothing of c1 in the page cache"
hits=$(reread_hits "$M/vm1/c2/vda.raw" view)
# Memory pressure from elsewhere on a shared machine may evict a page once
# (CI saw 1 hit, once); a mount that keeps nothing in the page cache misses
# every time: measure again before calling it a failure.
[ "$hits" -eq 0 ] || hits=$(reread_hits "$M/vm1/c2/vda.raw" view)
[ "$hits" -eq 0 ] || fail "default mount: a re-read reached the daemon ($hits cache hits)"
[ "$(stat -c %o "$M/vm1/c1/vda.raw")" -eq $BS ] || fail "default mount: st_blksize is not the block size"
unmount_wait "$M"

step "direct_io: the same bytes, nothing in the page cache, re-reads served by the daemon"
mount_fg "$R" "$M" -o direct_io
cmp "$M/vm1/c1/vda.raw" "$T/c1.img" || fail "direct_io: c1 differs from its image"
cmp "$M/vm1/c2/vda.raw" "$T/c2.img" || fail "direct_io: c2 differs from its image"
[ "$(stat -c %s "$M/vm1/c2/vda.raw")" -eq $((40 << 20)) ] || fail "direct_io: c2 has the wrong size"
pages=$(cached_pages "$M/vm1/c1/vda.raw")
[ "$pages" -eq 0 ] || fail "direct_io: $pages pages of c1 in the page cache"
hits=$(reread_hits "$M/vm1/c2/vda.raw" blocks)
[ "$hits" -eq 8 ] || fail "direct_io: a re-read of 8 blocks made $hits cache hits, expected 8"
[ "$(stat -c %o "$M/vm1/c1/vda.raw")" -eq $((1 << 20)) ] || fail "direct_io: st_blksize is not 1 MiB"

step "direct_io: reads at, past and across the end, and unaligned ones (the kernel clips none)"
python3 - "$M/vm1/c2/vda.raw" "$T/c2.img" <<'PY' || fail "direct_io: a read near the end or unaligned went wrong"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
want = open(sys.argv[2], "rb").read()
size = len(want)
assert os.fstat(fd).st_size == size
assert os.pread(fd, 1 << 20, size) == b"", "a read at the end returned bytes"
assert os.pread(fd, 4096, size + (1 << 30)) == b"", "a read past the end returned bytes"
assert os.pread(fd, 1 << 20, size - 1000) == want[-1000:], "a read across the end"
assert os.pread(fd, 12345, 777) == want[777:777 + 12345], "an unaligned read"
assert os.pread(fd, 3 << 20, (2 << 20) - 5) == want[(2 << 20) - 5:(5 << 20) - 5], "across the zeroed MiB"
PY

step "direct_io: c1 loop-mounts and shows its files"
mount -o loop,ro,noload "$M/vm1/c1/vda.raw" "$T/lc"
seq 1 50000 | cmp - "$T/lc/numbers" || fail "direct_io: numbers differs on the loop mount"
random_file 1 $((3 << 20)) "$T/blob.want"
cmp "$T/lc/blob" "$T/blob.want" || fail "direct_io: blob differs on the loop mount"
umount "$T/lc"

step "direct_io: a private mmap reads the view; a shared one is refused"
python3 - "$M/vm1/c2/vda.raw" "$T/c2.img" <<'PY' || fail "direct_io: mmap behaves unexpectedly"
import errno, mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
with open(sys.argv[2], "rb") as f:
    f.seek(20 << 20)
    want = f.read(1 << 20)
m = mmap.mmap(fd, 1 << 20, mmap.MAP_PRIVATE, mmap.PROT_READ, offset=20 << 20)
assert m[:] == want, "private mmap: bytes differ"
try:
    mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ)
    sys.exit("shared mmap was allowed")
except OSError as e:
    assert e.errno == errno.ENODEV, e
PY
unmount_wait "$M"
echo PASS
