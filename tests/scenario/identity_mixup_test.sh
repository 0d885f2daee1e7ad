#!/usr/bin/env bash
# Issue 13 item 1: two delta files swapped (a botched copy or restore, a sync
# tool that renamed files) are detected, never read as wrong bytes: `check`
# fails naming the manifest and the delta file, `export` fails, and in a
# mount the affected views give EIO with a log line while the others read.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

R=$T/repo
M=$T/mnt
A=$T/vda.img
B=$T/vdb.img
BS=65536

step "setup: vm1 with disks vda and vdb, checkpoints c1 (full), c2, c3"
ok "$CHAINFS" init "$R"
random_file 1 $((16 * BS)) "$A"
random_file 2 $((8 * BS)) "$B"
for c in 1 2 3; do
  random_file $((10 + c)) "$BS" "$T/chunk"
  dd if="$T/chunk" of="$A" bs=$BS seek=$((c * 2)) conv=notrunc status=none
  dd if="$T/chunk" of="$B" bs=$BS seek=$c conv=notrunc status=none
  ok "$CHAINFS" backup "$R" vm1 "c$c" --disk vda="$A" --disk vdb="$B"
  cp "$A" "$T/exp.c$c.vda"
  cp "$B" "$T/exp.c$c.vdb"
done
ok "$CHAINFS" check "$R" --deep
grep -q "unbound" "$T/last.out" && fail "a fresh repository has unbound deltas: $(cat "$T/last.out")"

step "swap the delta files of c1 and c2 of vda with mv"
d1=$(jq -r '.disks[] | select(.name == "vda") | .delta' "$R/groups/vm1/checkpoints/c1.json")
d2=$(jq -r '.disks[] | select(.name == "vda") | .delta' "$R/groups/vm1/checkpoints/c2.json")
D=$R/groups/vm1/deltas
swap() { mv "$D/$d1" "$D/swap.tmp" && mv "$D/$d2" "$D/$d1" && mv "$D/swap.tmp" "$D/$d2"; }
swap

step "check fails naming the manifest and the delta file of each side"
expect_rc 1 "FAILED" "$CHAINFS" check "$R"
grep -F "c1.json" "$T/last.out" | grep -qF "$d1" || fail "check does not name c1.json and $d1: $(cat "$T/last.out")"
grep -F "c2.json" "$T/last.out" | grep -qF "$d2" || fail "check does not name c2.json and $d2: $(cat "$T/last.out")"
grep -q "checkpoint c2 (manifest: c1)" "$T/last.out" || fail "check does not say which field differs"
for c in c1 c2 c3; do
  grep -q "^PROBLEM vm1/$c/vda" "$T/last.out" || fail "no problem reported for $c/vda"
done
grep -q "^PROBLEM vm1/c./vdb" "$T/last.out" && fail "vdb reported although untouched"
expect_rc 1 "FAILED" "$CHAINFS" check "$R" --deep

step "export of an affected view fails; an unaffected one exports its bytes"
for c in c1 c2 c3; do
  expect_rc 1 "$d1|$d2" "$CHAINFS" export "$R" vm1 "$c" vda "$T/out.$c"
  [ -e "$T/out.$c" ] && fail "export of $c/vda left an output file"
done
ok "$CHAINFS" export "$R" vm1 c2 vdb "$T/out.vdb"
cmp "$T/out.vdb" "$T/exp.c2.vdb" || fail "export of c2/vdb differs"

step "in a mount: affected views give EIO with a log line, the others read"
mount_fg "$R" "$M" -o log="$T/daemon.log"
for c in c1 c2 c3; do
  err=$(cat "$M/vm1/$c/vda.raw" 2>&1 >/dev/null) && fail "reading $c/vda succeeded"
  grep -qi "input/output error" <<<"$err" || fail "reading $c/vda: '$err', expected EIO"
  cmp "$M/vm1/$c/vdb.raw" "$T/exp.$c.vdb" || fail "$c/vdb does not read its bytes"
done
grep -F "c1.json" "$T/daemon.log" | grep -qF "$d1" ||
  fail "no log line naming c1.json and $d1: $(cat "$T/daemon.log")"
kill -0 "$MOUNT_PID" || fail "daemon died"
unmount_wait "$M"

step "swapped back, everything reads as before"
swap
ok "$CHAINFS" check "$R" --deep
for c in c1 c2 c3; do
  ok "$CHAINFS" export "$R" vm1 "$c" vda "$T/back.$c"
  cmp "$T/back.$c" "$T/exp.$c.vda" || fail "export of $c/vda differs after swapping back"
done
echo PASS
