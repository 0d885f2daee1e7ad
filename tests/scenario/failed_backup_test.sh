#!/usr/bin/env bash
# A failed backup changes nothing a reader can see, the repository still
# passes `check --deep`, and running the same command again succeeds:
#   - the process is killed (before the commit, mid-read, at the delta's
#     fsync, at the temporary manifest's fsync);
#   - the source shrinks while it is being read;
#   - the repository's file system fills up (ENOSPC).
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"

R=$T/repo
SRCIMG=$T/disk.raw

# make_source SEED MIB: a disk image of pseudo-random blocks with a few holes.
make_source() {
  random_file "$1" $(($2 << 20)) "$SRCIMG.new"
  truncate -s 1M "$T/hole" && dd if="$T/hole" of="$SRCIMG.new" bs=1M seek=3 conv=notrunc status=none
  mv "$SRCIMG.new" "$SRCIMG"
}

# check_clean: check --deep passes.
check_clean() {
  expect_rc 0 '^OK' "$CHAINFS" check "$R" --deep
}

# export_equals CHECKPOINT FILE
export_equals() {
  ok "$CHAINFS" export "$R" vm1 "$1" vda "$T/out.raw"
  cmp "$T/out.raw" "$2" || fail "export of vm1/$1 differs from the source it was taken from"
  rm -f "$T/out.raw"
}

step "setup: repository with one full checkpoint"
ok "$CHAINFS" init "$R"
make_source 1 16
ok "$CHAINFS" backup "$R" vm1 c1 --disk vda="$SRCIMG"
export_equals c1 "$SRCIMG"

n=1
# file.before-fsync: the 1st fsync is the intent record's (issue 13), the
# 2nd the delta's, the 3rd the manifest's temporary file (killed before its
# rename).
for fp in backup.before-commit=kill backup.read-batch=3*kill file.before-fsync=2*kill \
  file.before-fsync=3*kill; do
  n=$((n + 1))
  step "killed backup: CHAINFS_FAILPOINTS=$fp"
  make_source $((n * 10)) 16
  repo_visible "$R" >"$T/before"
  repo_files "$R" >"$T/files.before"
  rc=0
  { (CHAINFS_FAILPOINTS=$fp exec "$CHAINFS" backup "$R" vm1 c$n --disk vda="$SRCIMG") \
    >"$T/last.out" 2>&1 || rc=$?; } 2>/dev/null
  [ "$rc" -eq 137 ] || { cat "$T/last.out" >&2; fail "$fp: exited $rc, expected death by SIGKILL (137)"; }
  repo_visible "$R" >"$T/after"
  same_state "killed at $fp" "$T/before" "$T/after"
  # Byte for byte the same files, apart from the unreferenced leftovers and
  # the intent record that lists them.
  repo_files "$R" | grep -v -F -f <(unreferenced_deltas "$R" vm1; echo .tmp.; echo intent.json) >"$T/files.after" || true
  same_state "killed at $fp (all files but leftovers)" "$T/files.before" "$T/files.after"
  [ ! -e "$R/groups/vm1/checkpoints/c$n.json" ] || fail "$fp: checkpoint c$n exists after the kill"
  check_clean
  step "re-run of the same command succeeds and collects the leftovers"
  [ -n "$(unreferenced_deltas "$R" vm1)" ] || fail "$fp: the kill left no partial delta (failpoint not reached?)"
  ok "$CHAINFS" backup "$R" vm1 c$n --disk vda="$SRCIMG" --json
  removed=$(json_get "$T/last.out" .leftovers_removed)
  [ "$removed" -ge 1 ] || fail "$fp: re-run reports leftovers_removed=$removed, expected >= 1"
  left=$(unreferenced_deltas "$R" vm1)
  [ -z "$left" ] || fail "$fp: unreferenced delta files remain after the re-run: $left"
  [ -z "$(find "$R/groups/vm1/checkpoints" -name '*.tmp.*')" ] || fail "$fp: a temporary manifest remains after the re-run"
  [ ! -e "$R/groups/vm1/intent.json" ] || fail "$fp: the intent record remains after the re-run"
  export_equals c$n "$SRCIMG"
  check_clean
done

step "source shrinks while the backup reads it"
make_source 50 16
cp --sparse=always "$SRCIMG" "$T/saved.raw"
repo_files "$R" >"$T/before"
mkdir -p "$T/fp"
CHAINFS_FAILPOINTS='backup.read-batch=2*pause' CHAINFS_FAILPOINT_DIR=$T/fp \
  "$CHAINFS" backup "$R" vm1 c9 --disk vda="$SRCIMG" >"$T/bg.out" 2>&1 &
pid=$!
on_exit "kill $pid"
for _ in $(seq 600); do
  [ -e "$T/fp/backup.read-batch.paused" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
[ -e "$T/fp/backup.read-batch.paused" ] || { cat "$T/bg.out" >&2; fail "backup never reached failpoint backup.read-batch"; }
truncate -s 1M "$SRCIMG"
rm "$T/fp/backup.read-batch.paused"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 1 ] || { cat "$T/bg.out" >&2; fail "shrunk source: backup exited $rc, expected 1"; }
sed 's/^/    | /' "$T/bg.out"
grep -q "$SRCIMG" "$T/bg.out" || { cat "$T/bg.out" >&2; fail "shrunk source: message does not name the source $SRCIMG"; }
repo_files "$R" >"$T/after"
same_state "shrunk source" "$T/before" "$T/after"
check_clean
cp --sparse=always "$T/saved.raw" "$SRCIMG"
ok "$CHAINFS" backup "$R" vm1 c9 --disk vda="$SRCIMG"
export_equals c9 "$SRCIMG"

step "killed first backup of a new group: the group does not appear"
CHAINFS_FAILPOINTS=backup.before-commit=kill "$CHAINFS" backup "$R" newgroup c1 --disk vda="$SRCIMG" \
  >/dev/null 2>&1 && fail "the killed backup exited 0"
"$CHAINFS" list "$R" >"$T/list.out"
if grep -q newgroup "$T/list.out"; then cat "$T/list.out" >&2; fail "a killed first backup left group newgroup visible"; fi
ok "$CHAINFS" backup "$R" newgroup c1 --disk vda="$SRCIMG"
grep -q newgroup <("$CHAINFS" list "$R") || fail "re-run did not create group newgroup"

step "repository file system full (tmpfs of 8 MiB, 64 MiB of random data)"
SMALL=$T/small
mkdir -p "$SMALL"
mount -t tmpfs -o size=8m chainfs-scenario "$SMALL"
on_exit "umount $SMALL"
R=$SMALL/repo
ok "$CHAINFS" init "$R"
make_source 60 1
ok "$CHAINFS" backup "$R" vm1 c1 --disk vda="$SRCIMG"
make_source 61 64
repo_files "$R" >"$T/before"
expect_rc 1 'no space left' "$CHAINFS" backup "$R" vm1 c2 --disk vda="$SRCIMG"
sed 's/^/    | /' "$T/last.out"
grep -q "$R" "$T/last.out" || { cat "$T/last.out" >&2; fail "ENOSPC: message does not name the file being written"; }
repo_files "$R" >"$T/after"
same_state "ENOSPC" "$T/before" "$T/after"
[ ! -e "$R/groups/vm1/checkpoints/c2.json" ] || fail "ENOSPC: checkpoint c2 exists"
check_clean
step "after freeing space the same backup succeeds"
mount -o remount,size=160m "$SMALL"
ok "$CHAINFS" backup "$R" vm1 c2 --disk vda="$SRCIMG"
export_equals c2 "$SRCIMG"
check_clean

echo "PASS: failed_backup"
