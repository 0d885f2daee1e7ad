#!/usr/bin/env bash
# Issue 14: a chain of 10,000 checkpoints and 1,000 groups (x 10) work under
# `ulimit -n 256` (chainfs commands and the mount daemon): mount, `ls -R`,
# the newest and the oldest views (and a few of the many groups) read byte
# for byte as chainfs_make_repo --expect says, `check`, one more `backup`
# (its view equals its source), `prune --keep-last 10`, `check` again and
# the surviving newest and oldest views read as before.
#
# Every step runs under a time limit and prints its time to stderr
# ("[time] STEP: S s"); a failed step is reported and the next ones still
# run (those that need it are skipped); the test fails if any step failed.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"
: "${CHAINFS_MAKE_REPO:?set CHAINFS_MAKE_REPO to the chainfs_make_repo binary}"

NOFILE=256
DEPTH=10000
GROUPS_N=1000
GROUP_DEPTH=10
# depth: a 1 MiB disk of 4 KiB blocks, 2 changed per checkpoint (the newest
# view reads from about 250 deltas); groups: 64 KiB disks.
DEEP_SHAPE=(--depth "$DEPTH" --disk-size 1M --block-size 4K --changed 2 --seed 14)
MANY_SHAPE=(--depth "$GROUP_DEPTH" --disk-size 64K --block-size 4K --changed 2 --seed 15)
LIMIT=${SCALE_STEP_LIMIT:-120}  # seconds a step may take

# Every chainfs command and the daemon run with at most $NOFILE descriptors
# (soft and hard limit: raising the soft one cannot help).
REAL_CHAINFS=$CHAINFS
mkdir "$T/bin"
printf '#!/bin/sh\nulimit -n %s || exit 1\nexec "%s" "$@"\n' "$NOFILE" "$REAL_CHAINFS" >"$T/bin/chainfs"
chmod +x "$T/bin/chainfs"
CHAINFS=$T/bin/chainfs

FAILED=()
# run_step NAME FUNCTION [ARGS...]: runs FUNCTION in a subshell (errexit on),
# prints its time; a failure is recorded, not fatal.
run_step() {
  local name=$1 start rc=0
  shift
  start=$(date +%s.%N)
  set +e
  (set -e; "$@")
  rc=$?
  set -e
  printf '   [time] %s: %.2f s%s\n' "$name" "$(echo "$(date +%s.%N) - $start" | bc)" \
    "$([ "$rc" -eq 0 ] || echo " (FAILED)")" >&2
  [ "$rc" -eq 0 ] || FAILED+=("$name")
  return 0
}
# lim CMD...: CMD within the step limit.
lim() { timeout "$LIMIT" "$@"; }

# expect_image IMAGE SHAPE... --group-index I --checkpoint C
expect_image() {
  local out=$1
  shift
  ok "$CHAINFS_MAKE_REPO" --expect "$@" --out "$out"
}

# same_view VIEW EXPECTED: the view through the mount equals the image.
same_view() {
  lim cmp "$1" "$2" || fail "$1 differs from $2 (or could not be read)"
}

# ls_count MNT GROUPS CHECKPOINTS: ls -R lists every group, checkpoint
# directory, disk file and checkpoint.json.
ls_count() {
  lim ls -R "$1" >"$T/ls.out" || fail "ls -R $1 failed or took more than $LIMIT s"
  local dirs raws jsons
  dirs=$(grep -c "^$1/[^/]*/c[0-9]*:\$" "$T/ls.out" || true)
  raws=$(grep -cx 'vda.raw' "$T/ls.out" || true)
  jsons=$(grep -cx 'checkpoint.json' "$T/ls.out" || true)
  [ "$dirs" -eq "$3" ] && [ "$raws" -eq "$3" ] && [ "$jsons" -eq "$3" ] ||
    fail "ls -R $1: $dirs checkpoint directories, $raws vda.raw, $jsons checkpoint.json; expected $3 each"
  [ "$(grep -c "^$1/[^/]*:\$" "$T/ls.out")" -eq "$2" ] || fail "ls -R $1: not $2 groups"
}

check_clean() {
  lim "$CHAINFS" check "$1" --json >"$T/check.json" || fail "check $1 failed or took too long"
  [ "$(jq '.problems | length' "$T/check.json")" -eq 0 ] || fail "check $1 reports problems"
}

# checkpoints_are REPO GROUP NAMES...: list shows exactly these checkpoints.
checkpoints_are() {
  local repo=$1 group=$2
  shift 2
  lim "$CHAINFS" list "$repo" "$group" --json >"$T/list.json" || fail "list $group failed"
  [ "$(jq -r '.[0].checkpoints[].name' "$T/list.json" | tr '\n' ' ')" = "$* " ] ||
    fail "$group has checkpoints $(jq -r '.[0].checkpoints[].name' "$T/list.json" | tr '\n' ' '), expected $*"
}


# backup_changed REPO GROUP NAME BASE_IMAGE SOURCE: SOURCE = BASE_IMAGE with
# three blocks rewritten, backed up as checkpoint NAME.
backup_changed() {
  cp "$4" "$5"
  random_file 99 $((3 * 4096)) "$T/chunk"
  local i
  for i in 0 1 2; do
    dd if="$T/chunk" of="$5" bs=4K skip="$i" seek=$((i * 37 + 3)) count=1 conv=notrunc status=none
  done
  lim "$CHAINFS" backup "$1" "$2" "$3" --disk vda="$5" >"$T/backup.out" 2>&1 ||
    { cat "$T/backup.out" >&2; fail "backup $2/$3 failed"; }
}

prune_last() {
  lim "$CHAINFS" prune "$1" "$2" --keep-last 10 >"$T/prune.out" 2>&1 ||
    { cat "$T/prune.out" >&2; fail "prune $2 --keep-last 10 failed"; }
  # Thousands of merged checkpoints are summed up, not printed on one line.
  [ "$(awk 'length > 300' "$T/prune.out" | wc -l)" -eq 0 ] ||
    fail "prune $2 printed a line of $(awk '{ print length }' "$T/prune.out" | sort -n | tail -1) characters"
}

cp_name() { printf 'c%06d' "$1"; }

D=$T/deep
MD=$T/mnt-deep
G=$T/many
MG=$T/mnt-many
NEW=$(cp_name $((DEPTH + 1)))

step "generate: 1 group of $DEPTH checkpoints; $GROUPS_N groups of $GROUP_DEPTH"
run_step "generate deep" ok "$CHAINFS_MAKE_REPO" "$D" --groups 1 --group-prefix deep "${DEEP_SHAPE[@]}"
run_step "generate many" ok "$CHAINFS_MAKE_REPO" "$G" --groups "$GROUPS_N" "${MANY_SHAPE[@]}"
[ ${#FAILED[@]} -eq 0 ] || fail "the generator failed"
expect_image "$T/deep.newest" "${DEEP_SHAPE[@]}" --checkpoint "$DEPTH"
expect_image "$T/deep.oldest" "${DEEP_SHAPE[@]}" --checkpoint 1
expect_image "$T/deep.keep" "${DEEP_SHAPE[@]}" --checkpoint $((DEPTH - 8))
for i in 1 500 1000; do
  expect_image "$T/many.$i.newest" "${MANY_SHAPE[@]}" --group-index "$i" --checkpoint "$GROUP_DEPTH"
  expect_image "$T/many.$i.oldest" "${MANY_SHAPE[@]}" --group-index "$i" --checkpoint 1
done

step "mount both under ulimit -n $NOFILE"
start=$(date +%s.%N)
mount_fg "$D" "$MD"
DEEP_PID=$MOUNT_PID
mount_fg "$G" "$MG"
MANY_PID=$MOUNT_PID
printf '   [time] mount both: %.2f s\n' "$(echo "$(date +%s.%N) - $start" | bc)" >&2
grep -Eq "^Max open files +$NOFILE +$NOFILE " "/proc/$DEEP_PID/limits" ||
  fail "the daemon does not run under ulimit -n $NOFILE"

step "ls -R"
run_step "ls -R deep ($DEPTH checkpoints)" ls_count "$MD" 1 "$DEPTH"
run_step "ls -R many ($GROUPS_N x $GROUP_DEPTH)" ls_count "$MG" "$GROUPS_N" $((GROUPS_N * GROUP_DEPTH))

step "read views, compare byte for byte"
run_step "read deep newest" same_view "$MD/deep0001/$(cp_name "$DEPTH")/vda.raw" "$T/deep.newest"
run_step "read deep oldest" same_view "$MD/deep0001/c000001/vda.raw" "$T/deep.oldest"
for i in 1 500 1000; do
  g=$(printf 'vm%04d' "$i")
  run_step "read many $g newest" same_view "$MG/$g/$(cp_name "$GROUP_DEPTH")/vda.raw" "$T/many.$i.newest"
  run_step "read many $g oldest" same_view "$MG/$g/c000001/vda.raw" "$T/many.$i.oldest"
done

step "check"
run_step "check deep" check_clean "$D"
run_step "check many" check_clean "$G"

step "backup one more checkpoint"
run_step "backup deep $NEW" backup_changed "$D" deep0001 "$NEW" "$T/deep.newest" "$T/deep.src"
run_step "backup many vm1000 $(cp_name $((GROUP_DEPTH + 1)))" backup_changed "$G" vm1000 \
  "$(cp_name $((GROUP_DEPTH + 1)))" "$T/many.1000.newest" "$T/many.src"
[[ " ${FAILED[*]} " == *" backup "* ]] && fail "backups failed: ${FAILED[*]}"
run_step "read deep $NEW" eval 'eventually test -e "$MD/deep0001/$NEW/vda.raw" && same_view "$MD/deep0001/$NEW/vda.raw" "$T/deep.src"'
run_step "read many vm1000 new" eval 'eventually test -e "$MG/vm1000/$(cp_name $((GROUP_DEPTH + 1)))/vda.raw" && same_view "$MG/vm1000/$(cp_name $((GROUP_DEPTH + 1)))/vda.raw" "$T/many.src"'

step "prune --keep-last 10"
run_step "prune deep" prune_last "$D" deep0001
run_step "prune many vm1000" prune_last "$G" vm1000
kept=()
for i in $(seq $((DEPTH - 8)) $((DEPTH + 1))); do kept+=("$(cp_name "$i")"); done
run_step "list deep after prune" checkpoints_are "$D" deep0001 "${kept[@]}"
run_step "list many vm1000 after prune" checkpoints_are "$G" vm1000 $(for i in $(seq 2 11); do cp_name "$i"; echo; done)

step "after prune: check, surviving views"
run_step "check deep after prune" check_clean "$D"
run_step "check many after prune" check_clean "$G"
run_step "read deep oldest kept" eval 'eventually test ! -e "$MD/deep0001/$(cp_name $((DEPTH - 9)))" && same_view "$MD/deep0001/${kept[0]}/vda.raw" "$T/deep.keep"'
run_step "read deep newest after prune" same_view "$MD/deep0001/$NEW/vda.raw" "$T/deep.src"
run_step "read many vm1000 after prune" eval 'eventually test ! -e "$MG/vm1000/c000001" && same_view "$MG/vm1000/c000011/vda.raw" "$T/many.src"'
run_step "ls -R deep after prune" ls_count "$MD" 1 10

step "unmount"
rss_kib=$(awk '/^VmRSS/ {print $2}' "/proc/$DEEP_PID/status")
echo "   deep daemon RSS: $rss_kib KiB" >&2
unmount_wait "$MD" "$DEEP_PID"
unmount_wait "$MG" "$MANY_PID"

[ ${#FAILED[@]} -eq 0 ] || fail "steps failed: $(printf '[%s] ' "${FAILED[@]}")"
echo "PASS: scale"
