#!/usr/bin/env bash
# Issue 14: a chain deeper than the open-file limit. Under `ulimit -n 128`
# (soft and hard: chainfs cannot raise it), 200 incremental backups of a
# 1 MiB disk succeed, the mount reads the newest and the oldest view byte for
# byte, and check and export work: delta files are opened through a cache of
# at most 64 descriptors (chain/base/file_cache.h), not one per layer for life.
# Under `ulimit -n 8192`, export and the mount daemon (once it has forked)
# grow their descriptor table before any delta file is opened.
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

step "under ulimit -n 8192: the descriptor table is grown before any delta file opens"
# A process of several threads that grows its table as files open waits for
# an RCU grace period at each doubling (chain/base/file_cache.h,
# ReserveDescriptorTable); chainfs grows it while it has one thread. A
# process started from bash has 256 slots (bash holds descriptor 255).
WANT=$((8192 / 2 + 256))  # the file cache's capacity plus the margin
fdsize() { awk '/^FDSize/ {print $2}' "/proc/$1/status" 2>/dev/null; }
# table_at_least PID: PID's table has at least $WANT slots.
table_at_least() { [ "$(fdsize "$1")" -ge "$WANT" ]; }
mkfifo "$T/out.fifo"
# export opens the FIFO and waits there for a reader, its view not read yet.
(ulimit -n 8192 && exec "$CHAINFS" export "$R" vm1 "$NEWEST" vda "$T/out.fifo") &
EXPORT_PID=$!
if ! eventually table_at_least "$EXPORT_PID"; then
  got=$(fdsize "$EXPORT_PID")
  cat "$T/out.fifo" >/dev/null
  fail "chainfs export's descriptor table has $got slots before reading, not $WANT"
fi
cmp "$T/out.fifo" "$A" || fail "export of $NEWEST to a FIFO differs from the disk"
wait "$EXPORT_PID" || fail "export of $NEWEST to a FIFO failed"
M2=$T/mnt2
mkdir -p "$M2"
(ulimit -n 8192 && exec "$CHAINFS" mount "$R" "$M2") 2>>"$T/mount.log" ||
  fail "mount (daemonized) failed: $(tail -3 "$T/mount.log")"
on_exit "fusermount3 -u '$M2'"
wait_mounted "$M2" || fail "the daemonized mount did not appear"
DAEMON=$(pgrep -n -f -- "mount $R $M2") || fail "no daemon process found for $M2"
eventually table_at_least "$DAEMON" ||
  fail "the daemon's descriptor table has $(fdsize "$DAEMON") slots after its fork, not $WANT"
cmp "$M2/vm1/$NEWEST/vda.raw" "$A" || fail "the newest view (daemonized mount) differs from the disk"
fusermount3 -u "$M2" || fail "fusermount3 -u $M2 failed"
eventually sh -c "! kill -0 $DAEMON" || fail "daemon $DAEMON still running after unmounting"
echo "PASS"
