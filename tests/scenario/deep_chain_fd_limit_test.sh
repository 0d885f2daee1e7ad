#!/usr/bin/env bash
# Issue 14: a chain deeper than the open-file limit. Under `ulimit -n 128`
# (soft and hard: chainfs cannot raise it), 200 incremental backups of a
# 1 MiB disk succeed, the mount reads the newest and the oldest view byte for
# byte, and check and export work: delta files are opened through a cache of
# at most 64 descriptors (chain/base/file_cache.h), not one per layer for life.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

R=$T/repo
A=$T/vda.img
M=$T/mnt
N=200

# limited CMD...: runs CMD with at most 128 descriptors.
limited() { (ulimit -n 128 && exec "$@"); }

step "$N checkpoints of a 1 MiB disk (4K blocks), each changing one block, under ulimit -n 128"
ok "$CHAINFS" init "$R" --block-size 4K
random_file 1 $((1 << 20)) "$A"
for i in $(seq 1 $N); do
  printf 'checkpoint %04d' "$i" |
    dd of="$A" bs=1 seek=$(((i * 7 % 256) * 4096 + i)) conv=notrunc status=none
  [ "$i" -eq 1 ] && cp "$A" "$T/exp.first"
  limited "$CHAINFS" backup "$R" vm1 "$(printf 'c%04d' "$i")" --disk vda="$A" --threads 1 \
    >"$T/backup.out" 2>&1 || { cat "$T/backup.out" >&2; fail "backup $i failed"; }
done
NEWEST=$(printf 'c%04d' $N)

step "mount under ulimit -n 128: newest and oldest view byte for byte"
mkdir -p "$M"
(ulimit -n 128 && exec "$CHAINFS" mount "$R" "$M" -f) 2>>"$T/mount.log" &
MOUNT_PID=$!  # the subshell that became the daemon
on_exit "kill $MOUNT_PID"
on_exit "fusermount3 -u '$M'"
wait_mounted "$M" || { cat "$T/mount.log" >&2; fail "mount did not appear"; }
grep -Eq 'Max open files +128 +128' "/proc/$MOUNT_PID/limits" ||
  fail "the daemon's open-file limit is not 128: $(grep 'Max open files' /proc/$MOUNT_PID/limits)"
cmp "$M/vm1/$NEWEST/vda.raw" "$A" || fail "the newest view ($N layers) differs from the disk"
cmp "$M/vm1/c0001/vda.raw" "$T/exp.first" || fail "the oldest view differs from the first disk"
fds=$(ls "/proc/$MOUNT_PID/fd" | wc -l)
[ "$fds" -le 128 ] || fail "the daemon has $fds descriptors open"
unmount_wait "$M"

step "check and export under ulimit -n 128"
limited "$CHAINFS" check "$R" >"$T/check.out" 2>&1 || { cat "$T/check.out" >&2; fail "check failed"; }
limited "$CHAINFS" check --deep "$R" vm1 "$NEWEST" >"$T/check.out" 2>&1 ||
  { cat "$T/check.out" >&2; fail "check --deep of $NEWEST failed"; }
ok limited "$CHAINFS" export "$R" vm1 "$NEWEST" vda "$T/out.raw"
cmp "$T/out.raw" "$A" || fail "export of $NEWEST differs from the disk"
echo "PASS"
