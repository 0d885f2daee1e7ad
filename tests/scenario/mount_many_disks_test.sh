#!/usr/bin/env bash
# Issue 13: a checkpoint of 3,000 disks mounts and lists (`ls -l`) in bounded
# time and memory: every disk node copied the whole checkpoint (1.46 GiB and
# 19 s for `ls -l`); now the nodes of a checkpoint share one copy. Each view
# still reads its bytes (each disk has its own delta: a delta is bound to
# its disk, so disks cannot share one).
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

R=$T/repo
A=$T/vda.img
M=$T/mnt
N=3000

step "a checkpoint of $N disks (one backup, each disk its own small delta)"
ok "$CHAINFS" init "$R"
random_file 1 $((16 << 10)) "$A"
mkdir "$T/disks"
args=()
for i in $(seq 0 $((N - 1))); do
  ln "$A" "$T/disks/d$i"
  args+=(--disk "d$i=$T/disks/d$i")
done
start=$(date +%s)
ok "$CHAINFS" backup "$R" vm1 c1 --threads 2 "${args[@]}"
echo "   backup of $N disks took $(($(date +%s) - start)) s"
m=$R/groups/vm1/checkpoints/c1.json
[ "$(jq '.disks | length' "$m")" -eq "$N" ] || fail "manifest does not have $N disks"

step "mount, ls -l the checkpoint: $N disk files"
mount_fg "$R" "$M"
start=$(date +%s)
timeout 300 ls -l "$M/vm1/c1" >"$T/ls.out" || fail "ls -l of $N disks failed or timed out"
echo "   ls -l took $(($(date +%s) - start)) s"
[ "$(grep -c '\.raw$' "$T/ls.out")" -eq "$N" ] || fail "ls -l shows $(grep -c '\.raw$' "$T/ls.out") disk files, expected $N"
grep -q " $((16 << 10)) .* d2999.raw$" "$T/ls.out" || fail "d2999.raw does not have the disk's size: $(grep d2999 "$T/ls.out")"
for d in d0 d1234 d2999; do
  cmp "$M/vm1/c1/$d.raw" "$A" || fail "$d.raw differs from the source"
done
rss_kib=$(awk '/^VmRSS/ {print $2}' "/proc/$MOUNT_PID/status")
echo "   daemon RSS after ls -l: $rss_kib KiB"
unmount_wait "$M"
echo "PASS: mount_many_disks"
