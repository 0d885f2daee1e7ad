#!/usr/bin/env bash
# One writer at a time: while a consolidation holds the repository lock, a
# backup, a prune and a second consolidate are refused with an error naming
# the holder (pid, host, since when). When the holder dies (SIGKILL, nothing
# cleaned up), the kernel drops its flock and the next writer takes over.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"

R=$T/repo
IMG=$T/vda.raw
export CHAINFS_FAILPOINT_DIR=$T

step "setup: four checkpoints"
ok "$CHAINFS" init "$R" --block-size 4K
random_file s1 1048576 "$IMG"
for c in c1 c2 c3 c4; do
  random_file "$c" 65536 "$T/blk"
  dd if="$T/blk" of="$IMG" bs=4096 seek=$((RANDOM % 200)) conv=notrunc status=none
  ok "$CHAINFS" backup "$R" g $c --disk vda="$IMG"
done

step "a consolidation paused while holding the lock"
CHAINFS_FAILPOINTS=consolidate.after-space-check=pause \
  "$CHAINFS" consolidate "$R" g --drop c2 >"$T/holder.out" 2>&1 &
HOLDER=$!
on_exit "kill -9 $HOLDER"
for i in $(seq 200); do
  [ -e "$T/consolidate.after-space-check.paused" ] && break
  sleep 0.05
done
[ -e "$T/consolidate.after-space-check.paused" ] || fail "the consolidation never reached its pause"

host=$(hostname)
holder_re="locked by another writer \(pid $HOLDER on host $host since [0-9]{4}-[0-9]{2}-[0-9]{2}T.*: consolidate g\)"
expect_rc 1 "$holder_re" "$CHAINFS" backup "$R" g c5 --disk vda="$IMG"
expect_rc 1 "$holder_re" "$CHAINFS" prune "$R" g --keep-last 1
expect_rc 1 "$holder_re" "$CHAINFS" consolidate "$R" g --drop c3
[ ! -e "$R/groups/g/checkpoints/c5.json" ] || fail "a refused backup made a checkpoint"

step "the holder dies; the next writer takes the lock over"
kill -9 "$HOLDER"
wait "$HOLDER" 2>/dev/null || true
ok "$CHAINFS" consolidate "$R" g --drop c2
[ ! -e "$R/groups/g/checkpoints/c2.json" ] || fail "c2 still exists after the takeover run"
ok "$CHAINFS" backup "$R" g c5 --disk vda="$IMG"
expect_rc 0 '^OK' "$CHAINFS" check "$R" --deep
ok "$CHAINFS" export "$R" g c5 vda "$T/out.raw"
cmp "$T/out.raw" "$IMG" || fail "c5 does not read as its source"
echo PASS
