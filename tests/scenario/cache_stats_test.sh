#!/usr/bin/env bash
# The block cache and readahead of a mount, seen through `chainfs stats`:
# a second read of a block is a hit; two checkpoints sharing a block load it
# once; a sequential dd uses readahead, random 4 KiB fio reads do not; a block
# failing its checksum is not cached (two reads fail, two failures counted);
# -o cache_size=0 keeps nothing.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

R=$T/repo
M=$T/mnt
A=$T/vda.img
B=$T/vdb.img
BS=65536

# counter KEY: one counter of the mount's cache (jq path below .cache).
counter() { "$CHAINFS" stats "$M" --json | jq -er ".cache.$1"; }
# direct_read FILE BLOCK: reads one block with O_DIRECT (bypasses the page cache).
direct_read() { dd if="$1" of=/dev/null bs=$BS count=1 skip="$2" iflag=direct status=none; }
# expect_delta WHAT BEFORE KEY WANT: counter KEY moved by WANT since BEFORE.
expect_delta() {
  local now
  now=$(counter "$3")
  [ $((now - $2)) -eq "$4" ] || fail "$1: $3 moved by $((now - $2)), expected $4"
}

step "setup: vm1 c1 full, c2 rewrites blocks 10-19; vm2 c1 with a flipped byte in block 3"
ok "$CHAINFS" init "$R" --compression none
random_file 1 $((32 << 20)) "$A"
ok "$CHAINFS" backup "$R" vm1 c1 --disk vda="$A"
random_file 2 $((10 * BS)) "$T/chunk"
dd if="$T/chunk" of="$A" bs=$BS seek=10 conv=notrunc status=none
ok "$CHAINFS" backup "$R" vm1 c2 --disk vda="$A"
random_file 3 $((1 << 20)) "$B"
ok "$CHAINFS" backup "$R" vm2 c1 --disk vdb="$B"
delta=$R/groups/vm2/deltas/$(jq -r '.disks[0].delta' "$R/groups/vm2/checkpoints/c1.json")
# Uncompressed: stored block i follows the header at header_size + i * BS.
perl -e 'open(F, "+<", $ARGV[0]) or die; seek(F, $ARGV[1], 0); read(F, $b, 1);
         seek(F, $ARGV[1], 0); print F chr(ord($b) ^ 0xff); close(F) or die' "$delta" $(($(delta_header_size "$delta") + 3 * BS + 7))
mount_fg "$R" "$M" -o log="$T/daemon.log",cache_size=64M

step "the statistics file is hidden and chainfs stats prints it"
ls -a "$M" | grep -q chainfs-stats && fail "ls lists the statistics file"
ok "$CHAINFS" stats "$M"
grep -q "hits" "$T/last.out" || fail "chainfs stats prints no hits line: $(cat "$T/last.out")"
[ "$(counter capacity_bytes)" -eq $((64 << 20)) ] || fail "capacity is not the cache_size option"

step "a second read of a block is a hit"
h=$(counter hits) m=$(counter misses)
direct_read "$M/vm1/c1/vda.raw" 100
expect_delta "first read of block 100" "$m" misses 1
expect_delta "first read of block 100" "$h" hits 0
direct_read "$M/vm1/c1/vda.raw" 100
expect_delta "second read of block 100" "$m" misses 1
expect_delta "second read of block 100" "$h" hits 1

step "two checkpoints sharing a block load it once"
h=$(counter hits) m=$(counter misses)
direct_read "$M/vm1/c1/vda.raw" 200
direct_read "$M/vm1/c2/vda.raw" 200
expect_delta "block 200 of c1 then of c2" "$m" misses 1
expect_delta "block 200 of c1 then of c2" "$h" hits 1
direct_read "$M/vm1/c2/vda.raw" 12  # rewritten in c2: c2's own block
expect_delta "block 12 of c2" "$m" misses 2

step "sequential dd: readahead issued and used"
i=$(counter readahead_issued) u=$(counter readahead_used)
dd if="$M/vm1/c2/vda.raw" of="$T/c2.out" bs=1M status=none
cmp "$T/c2.out" "$A" || fail "dd of c2 differs from the disk image"
issued=$(($(counter readahead_issued) - i)) used=$(($(counter readahead_used) - u))
echo "readahead: issued $issued, used $used"
# 512 blocks; random reads issue none. The bound leaves room for a slow
# (sanitizer) build whose reader sometimes overtakes the workers.
[ "$issued" -gt 50 ] || fail "sequential dd of 32 MiB issued $issued readahead loads"
[ "$used" -gt 50 ] || fail "sequential dd of 32 MiB used $used prefetched blocks"

step "random 4 KiB fio reads: no readahead"
i=$(counter readahead_issued) l=$(counter misses)
fio --name=rand --filename="$M/vm1/c1/vda.raw" --rw=randread --bs=4k --direct=1 \
  --size=32M --io_size=8M --randrepeat=1 --ioengine=psync --output="$T/fio.out" >/dev/null ||
  fail "fio failed: $(cat "$T/fio.out")"
[ "$(counter readahead_issued)" -eq "$i" ] ||
  fail "random reads issued $(($(counter readahead_issued) - i)) readahead loads"
[ "$(counter misses)" -gt "$l" ] || fail "fio's reads did not reach the cache"

step "a checksum failure is not cached: two reads fail, two failures counted"
c=$(counter checksum_failures) m=$(counter misses)
direct_read "$M/vm2/c1/vdb.raw" 3 2>/dev/null && fail "first read of the damaged block succeeded"
direct_read "$M/vm2/c1/vdb.raw" 3 2>/dev/null && fail "second read of the damaged block succeeded"
expect_delta "two reads of the damaged block" "$c" checksum_failures 2
expect_delta "two reads of the damaged block" "$m" misses 2
direct_read "$M/vm2/c1/vdb.raw" 2 || fail "the block before the damaged one does not read"

step "memory: the cache holds at most its capacity"
[ "$(counter bytes_held)" -le $((64 << 20)) ] || fail "bytes_held $(counter bytes_held) > 64 MiB"
unmount_wait "$M"

step "cache_size=0: nothing is kept, every read loads"
mount_fg "$R" "$M" -o cache_size=0
direct_read "$M/vm1/c1/vda.raw" 100
direct_read "$M/vm1/c1/vda.raw" 100
[ "$(counter misses)" -eq 2 ] || fail "cache_size=0: $(counter misses) misses for two reads, expected 2"
[ "$(counter hits)" -eq 0 ] || fail "cache_size=0: $(counter hits) hits, expected 0"
[ "$(counter bytes_held)" -eq 0 ] || fail "cache_size=0: $(counter bytes_held) bytes held"
"$CHAINFS" stats "$M" --json | jq -e '.readahead == null' >/dev/null || fail "cache_size=0: readahead is on"
unmount_wait "$M"
echo PASS
