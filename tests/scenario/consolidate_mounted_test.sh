#!/usr/bin/env bash
# labels: tsan
# Consolidation while mounted: readers loop over every surviving view through
# the mount, comparing bytes, while `consolidate --drop` runs; the
# consolidation pauses at each of its intermediate states (journal committed,
# each manifest written or removed, each old delta removed) so that readers
# see every one of them. No read fails (no EIO), no byte differs; the dropped
# checkpoints leave the tree; a file already open on a dropped checkpoint
# keeps reading its old bytes to the end.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

R=$T/repo
M=$T/mnt
A=$T/vda.raw
export CHAINFS_FAILPOINT_DIR=$T/fp
mkdir -p "$CHAINFS_FAILPOINT_DIR"

# write_blocks IMG SEED FIRST COUNT: COUNT random 64 KiB blocks at block FIRST.
write_blocks() {
  random_file "$2" $(($4 * 65536)) "$T/blk"
  dd if="$T/blk" of="$1" bs=64K seek="$3" conv=notrunc status=none
}

step "setup: c1 full, c2..c6 incremental (c4 differential on c2), mounted"
ok "$CHAINFS" init "$R"
random_file base $((8 << 20)) "$A"
ok "$CHAINFS" backup "$R" g c1 --disk vda="$A"
for i in 2 3 4 5 6; do
  write_blocks "$A" "s$i" $((i * 9)) 6
  since=()
  [ $i -eq 4 ] && since=(--since c2)
  ok "$CHAINFS" backup "$R" g c$i --disk vda="$A" "${since[@]}"
done
mkdir -p "$T/before"
for c in c1 c2 c3 c4 c5 c6; do ok "$CHAINFS" export "$R" g $c vda "$T/before/$c"; done
mount_fg "$R" "$M"
for c in c1 c2 c3 c4 c5 c6; do
  cmp -s "$M/g/$c/vda.raw" "$T/before/$c" || fail "$c reads wrong through the mount before anything"
done
exec 7<"$M/g/c2/vda.raw"
head -c 65536 <&7 >"$T/c2.head"   # read once through the open file

step "readers loop over the survivors during consolidate --drop c2,c4"
SURVIVORS="c1 c3 c5 c6"
reader() {
  local c
  while [ ! -e "$T/stop" ]; do
    for c in $SURVIVORS; do
      cmp "$M/g/$c/vda.raw" "$T/before/$c" >>"$T/reader$1.err" 2>&1 ||
        echo "reader $1: g/$c/vda.raw differs or failed" >>"$T/reader$1.err"
    done
    echo x >>"$T/reader$1.rounds"
  done
}
: >"$T/reader1.rounds"
: >"$T/reader2.rounds"
reader 1 &
R1=$!
reader 2 &
R2=$!
on_exit "touch '$T/stop'; kill $R1 $R2"

fps=""
for p in txn.after-commit txn.after-write-manifest txn.after-delete-manifest txn.after-delete-delta; do
  fps+="${fps:+,}$p=pause"
done
CHAINFS_FAILPOINTS=$fps "$CHAINFS" consolidate "$R" g --drop c2,c4 >"$T/cons.out" 2>&1 &
CONS=$!
on_exit "kill -9 $CONS"
paused=0
while kill -0 "$CONS" 2>/dev/null; do
  for f in "$CHAINFS_FAILPOINT_DIR"/*.paused; do
    [ -e "$f" ] || continue
    # Let both readers finish at least one full round in this state.
    r1=$(wc -l <"$T/reader1.rounds")
    r2=$(wc -l <"$T/reader2.rounds")
    for i in $(seq 400); do
      [ "$(wc -l <"$T/reader1.rounds")" -gt $((r1 + 1)) ] &&
        [ "$(wc -l <"$T/reader2.rounds")" -gt $((r2 + 1)) ] && break
      sleep 0.05
    done
    paused=$((paused + 1))
    rm -f "$f"
  done
  sleep 0.02
done
wait "$CONS" || { cat "$T/cons.out" >&2; fail "consolidate failed while mounted"; }
[ "$paused" -ge 4 ] || fail "the consolidation paused only $paused times"
sleep 1.5  # readers keep going after the switch (the mount rescans each second)
touch "$T/stop"
wait "$R1" "$R2" || true
if [ -s "$T/reader1.err" ] || [ -s "$T/reader2.err" ]; then
  sort "$T"/reader*.err | uniq -c | sort -rn | head -20 >&2
  echo "mount log:" >&2
  tail -20 "$T/mount.log" >&2
  fail "a reader saw an error or different bytes during the consolidation"
fi
echo "   readers finished $(cat "$T"/reader*.rounds | wc -l) rounds over $paused paused states"

step "dropped checkpoints leave the tree; survivors read as before"
for i in $(seq 100); do
  [ ! -e "$M/g/c2" ] && [ ! -e "$M/g/c4" ] && break
  sleep 0.05
done
[ ! -e "$M/g/c2" ] && [ ! -e "$M/g/c4" ] || fail "c2 or c4 still in the mounted tree: $(ls "$M/g")"
for c in $SURVIVORS; do
  cmp -s "$M/g/$c/vda.raw" "$T/before/$c" || fail "$c differs through the mount after consolidating"
done

step "the file opened on c2 before keeps reading its old bytes"
cmp -s "$T/c2.head" <(head -c 65536 "$T/before/c2") || fail "first read of c2 was wrong"
tail -c +65537 "$T/before/c2" >"$T/c2.rest"
cmp - "$T/c2.rest" <&7 || fail "the open file on dropped c2 no longer reads its old bytes"
exec 7<&-

step "once no file holds them, the mount keeps no removed delta open (their space is freed)"
# The mount keeps recently read views for quick reopening (issue 14); a
# listing of the group drops those whose chain the consolidation changed.
for i in $(seq 50); do
  ls "$M/g" >/dev/null
  held=$(ls -l "/proc/$MOUNT_PID/fd" | grep -c 'deltas/.*(deleted)' || true)
  [ "$held" -eq 0 ] && break
  sleep 0.1
done
[ "$held" -eq 0 ] || { ls -l "/proc/$MOUNT_PID/fd" | grep deleted >&2; fail "the mount still holds $held removed delta file(s)"; }
for c in $SURVIVORS; do
  cmp -s "$M/g/$c/vda.raw" "$T/before/$c" || fail "$c differs through the mount at the end"
done
unmount_wait "$M"
expect_rc 0 '^OK' "$CHAINFS" check "$R" --deep
echo PASS
