#!/usr/bin/env bash
# Consolidation killed at every failpoint, at every time it is reached:
#   consolidate --drop, consolidate --full-at and prune, each killed
#   (SIGKILL) at the N-th hit of each of its failpoints, for every N.
# After every kill: `check --deep` passes and every checkpoint that exists
# reads exactly as before (dropped ones not yet removed included). Then the
# same command run again finishes the job: the expected checkpoints remain,
# each reading as before, no journal and no unreferenced delta is left.
# CHAINFS_CRASH_STRIDE=K kills at hits 1, 1+K, 1+2K, ... only (scripts/test's
# sanitizer pass, where every run of the binary costs ~6x: the release pass
# kills at every hit).
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"

R=$T/repo
P=$T/pristine
FAILPOINTS=(
  consolidate.after-space-check consolidate.before-write-delta file.before-fsync
  consolidate.after-write-delta consolidate.before-sync-dir consolidate.after-sync-dir
  txn.before-commit txn.after-commit txn.before-write-manifest txn.after-write-manifest
  txn.before-delete-manifest txn.after-delete-manifest txn.before-delete-delta
  txn.after-delete-delta txn.before-remove-journal txn.after-remove-journal
)

# write_blocks IMG SEED FIRST COUNT: COUNT random 4 KiB blocks at block FIRST.
write_blocks() {
  random_file "$2" $(($4 * 4096)) "$T/blk"
  dd if="$T/blk" of="$1" bs=4096 seek="$3" conv=notrunc status=none
}
zero_blocks() { dd if=/dev/zero of="$1" bs=4096 seek="$2" count="$3" conv=notrunc status=none; }

step "setup: a chain with incrementals, a differential, a resize, zeroing, two disks"
ok "$CHAINFS" init "$R" --block-size 4K
A=$T/vda.raw B=$T/vdb.raw
truncate -s 256K "$A"
write_blocks "$A" a1 0 64
truncate -s 128K "$B"
write_blocks "$B" b1 0 20
ok "$CHAINFS" backup "$R" g c1 --disk vda="$A" --disk vdb="$B"
write_blocks "$A" a2 5 10
ok "$CHAINFS" backup "$R" g c2 --disk vda="$A" --disk vdb="$B"
zero_blocks "$A" 30 8
write_blocks "$B" b3 2 3
ok "$CHAINFS" backup "$R" g c3 --disk vda="$A" --disk vdb="$B"
truncate -s 100K "$A"  # shrink to an unaligned size
ok "$CHAINFS" backup "$R" g c4 --disk vda="$A" --disk vdb="$B" --since c2
truncate -s 320K "$A"  # grow again: the tail reads zeros
write_blocks "$A" a5 70 4
ok "$CHAINFS" backup "$R" g c5 --disk vda="$A" --disk vdb="$B"
write_blocks "$A" a6 0 2
zero_blocks "$B" 0 4
ok "$CHAINFS" backup "$R" g c6 --disk vda="$A" --disk vdb="$B"
check_deep() { expect_rc 0 '^OK' "$CHAINFS" check "$R" --deep; }
check_deep

# Expected bytes of every view, taken before any consolidation.
mkdir -p "$T/before"
for c in c1 c2 c3 c4 c5 c6; do
  for d in vda vdb; do
    ok "$CHAINFS" export "$R" g $c $d "$T/before/$c.$d"
  done
done
cp -a "$R" "$P"

checkpoints() { ls "$R/groups/g/checkpoints" | sed -n 's/\.json$//p' | LC_ALL=C sort | tr '\n' ' '; }

# views_as_before LABEL: every checkpoint that exists reads as before.
views_as_before() {
  local c d
  for c in $(checkpoints); do
    for d in vda vdb; do
      "$CHAINFS" export "$R" g "$c" "$d" - 2>"$T/export.err" | cmp -s - "$T/before/$c.$d" ||
        { cat "$T/export.err" >&2; fail "$1: view g/$c/$d differs from before"; }
    done
  done
}

# run_case NAME EXPECTED_CHECKPOINTS CMD...: the kill loop for one command.
run_case() {
  local name=$1 want=$2 fp n rc kills stride=${CHAINFS_CRASH_STRIDE:-1}
  shift 2
  for fp in "${FAILPOINTS[@]}"; do
    kills=0
    for ((n = 1; ; n += stride)); do
      rm -rf "$R" && cp -a "$P" "$R"
      rc=0
      CHAINFS_FAILPOINTS="$fp=$n*kill" "$@" >"$T/run.out" 2>&1 || rc=$?
      if [ "$rc" -eq 0 ]; then break; fi  # reached fewer than n times: ran to the end
      [ "$rc" -eq 137 ] || { cat "$T/run.out" >&2; fail "$name: $fp=$n*kill: exit $rc, not a kill"; }
      kills=$((kills + 1))
      check_deep
      views_as_before "$name killed at $fp hit $n"
      # Run it again: it finishes the job (or, killed after the very end,
      # finds its checkpoints already gone).
      rc=0
      "$@" >"$T/rerun.out" 2>&1 || rc=$?
      if [ "$rc" -ne 0 ]; then
        grep -q 'no such checkpoint' "$T/rerun.out" && [ "$(checkpoints)" = "$want" ] ||
          { cat "$T/rerun.out" >&2; fail "$name: re-run after $fp=$n*kill failed"; }
      fi
      [ "$(checkpoints)" = "$want" ] ||
        fail "$name: after $fp=$n*kill and a re-run: checkpoints '$(checkpoints)', expected '$want'"
      [ ! -e "$R/groups/g/txn.json" ] || fail "$name: journal left after the re-run"
      [ -z "$(unreferenced_deltas "$R" g)" ] || fail "$name: unreferenced deltas left after $fp=$n*kill"
      check_deep
      views_as_before "$name re-run after $fp hit $n"
    done
    [ "$kills" -gt 0 ] || fail "$name: failpoint $fp was never reached"
    echo "   $name: $fp killed $kills time(s), recovered each time"
  done
  # And the run without a kill gives the expected result too.
  [ "$(checkpoints)" = "$want" ] || fail "$name: checkpoints '$(checkpoints)', expected '$want'"
  views_as_before "$name uninterrupted"
}

step "consolidate --drop c2,c4 (c3 and c5 lose their base; c4 is c5's)"
run_case drop "c1 c3 c5 c6 " "$CHAINFS" consolidate "$R" g --drop c2,c4
step "consolidate --full-at c4 (c5 and c6 sit on c4; c4 is differential on c2)"
run_case full-at "c4 c5 c6 " "$CHAINFS" consolidate "$R" g --full-at c4
step "prune --keep-last 2"
run_case prune "c5 c6 " "$CHAINFS" prune "$R" g --keep-last 2
echo "PASS"
