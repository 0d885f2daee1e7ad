#!/usr/bin/env bash
# Issue 13: links planted in a repository (shared storage others can write)
# never make chainfs, running as root, write or delete anything outside it;
# export writes devices and FIFOs in place, creates its temporary exclusively
# under an unpredictable name and its image 0600, and a SIGTERM removes the
# temporary.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"

R=$T/repo
O=$T/outside
SRCIMG=$T/disk.raw

# outside_state: every file of $O with its bytes.
outside_state() { (cd "$O" && find . -mindepth 1 | LC_ALL=C sort | xargs -r sha256sum 2>&1); }

# expect_outside_intact LABEL
expect_outside_intact() {
  outside_state >"$T/outside.now"
  if ! diff -u "$T/outside.before" "$T/outside.now" >"$T/outside.diff"; then
    sed 's/^/    | /' "$T/outside.diff" >&2
    fail "$1: files outside the repository changed"
  fi
}

step "setup: a repository with vm1/c1, and an outside directory with 3 files"
ok "$CHAINFS" init "$R"
random_file 1 $((16 << 20)) "$SRCIMG"
ok "$CHAINFS" backup "$R" vm1 c1 --disk vda="$SRCIMG"
mkdir -p "$O"
for f in c1.vda.0123456789abcdef.delta c2.json.tmp.77 keep; do echo "$f" >"$O/$f"; done
outside_state >"$T/outside.before"

step "groups/vm2/deltas a link: backup into the new group fails, nothing written there"
mkdir -p "$R/groups/vm2"
ln -s "$O" "$R/groups/vm2/deltas"
expect_rc 1 'groups/vm2/deltas is a symbolic link' "$CHAINFS" backup "$R" vm2 c1 --disk vda="$SRCIMG"
expect_outside_intact "backup with linked deltas"
rm -r "$R/groups/vm2"

step "groups/vm3/checkpoints a link: backup fails, no *.tmp* deleted there"
mkdir -p "$R/groups/vm3"
ln -s "$O" "$R/groups/vm3/checkpoints"
expect_rc 1 'groups/vm3/checkpoints is a symbolic link' \
  "$CHAINFS" backup "$R" vm3 c1 --disk vda="$SRCIMG"
expect_outside_intact "backup with linked checkpoints"
rm -r "$R/groups/vm3"

step "prune with vm1's deltas a link: nothing deleted outside"
mv "$R/groups/vm1/deltas" "$T/real-deltas"
ln -s "$O" "$R/groups/vm1/deltas"
rc=0
"$CHAINFS" prune "$R" vm1 --keep-last 1 >"$T/last.out" 2>&1 || rc=$?
expect_outside_intact "prune with linked deltas"
rm "$R/groups/vm1/deltas"
mv "$T/real-deltas" "$R/groups/vm1/deltas"

step "the lock a link to an outside file: not overwritten"
rm -f "$R/lock"
ln -s "$O/keep" "$R/lock"
expect_rc 1 'lock is a symbolic link' "$CHAINFS" backup "$R" vm1 c2 --disk vda="$SRCIMG"
expect_outside_intact "backup with a linked lock"

step "a dangling lock link: prune creates no file outside"
rm "$R/lock"
ln -s "$O/created" "$R/lock"
expect_rc 1 'lock is a symbolic link' "$CHAINFS" prune "$R" vm1 --keep-last 1
[ ! -e "$O/created" ] || fail "prune created $O/created through a dangling lock link"
expect_outside_intact "prune with a dangling lock link"
rm "$R/lock"
expect_rc 0 '^OK' "$CHAINFS" check "$R" --deep

step "export: a link pre-created as OUTPUT in a 1777 directory is refused, its target kept"
S=$T/shared
mkdir -p "$S" && chmod 1777 "$S"
ln -s "$O/keep" "$S/vda.raw" && chown -h nobody "$S/vda.raw"
expect_rc 1 'symbolic link' "$CHAINFS" export "$R" vm1 c1 vda "$S/vda.raw"
expect_outside_intact "export to a planted link"
[ -z "$(find "$S" -name '*chainfs-partial*')" ] || fail "a partial file was left in $S"

step "export: images are 0600 unless --mode says otherwise"
ok "$CHAINFS" export "$R" vm1 c1 vda "$S/img.raw"
[ "$(stat -c %a "$S/img.raw")" = 600 ] || fail "exported image is mode $(stat -c %a "$S/img.raw")"
cmp "$S/img.raw" "$SRCIMG" || fail "export differs from the source"
ok "$CHAINFS" export "$R" vm1 c1 vda "$S/img644.raw" --mode 0644
[ "$(stat -c %a "$S/img644.raw")" = 644 ] || fail "--mode 0644 gave $(stat -c %a "$S/img644.raw")"
expect_rc 1 'mode' "$CHAINFS" export "$R" vm1 c1 vda "$S/bad.raw" --mode 0999

step "export to /dev/null leaves it a character device"
ok "$CHAINFS" export "$R" vm1 c1 vda /dev/null
[ "$(stat -c %F /dev/null)" = "character special file" ] ||
  fail "/dev/null is now a $(stat -c %F /dev/null)"

step "export to a FIFO streams the bytes"
mkfifo "$T/pipe"
cat "$T/pipe" >"$T/from-pipe" &
reader=$!
ok "$CHAINFS" export "$R" vm1 c1 vda "$T/pipe"
wait "$reader"
cmp "$T/from-pipe" "$SRCIMG" || fail "bytes read from the FIFO differ from the source"
[ -p "$T/pipe" ] || fail "the FIFO was replaced"

step "SIGTERM during an export removes the partial file and fails"
FP=$T/fp
mkdir -p "$FP"
CHAINFS_FAILPOINTS=export.chunk-written=pause CHAINFS_FAILPOINT_DIR=$FP \
  "$CHAINFS" export "$R" vm1 c1 vda "$T/slow.raw" >"$T/slow.out" 2>&1 &
pid=$!
for _ in $(seq 500); do [ -e "$FP/export.chunk-written.paused" ] && break; sleep 0.02; done
[ -e "$FP/export.chunk-written.paused" ] || fail "the export never reached its first chunk"
ls "$T"/slow.raw.chainfs-partial.* >/dev/null || fail "no partial file while exporting"
kill -TERM "$pid"
rm "$FP/export.chunk-written.paused"
rc=0
wait "$pid" || rc=$?
[ "$rc" -ne 0 ] || fail "export stopped by SIGTERM exited 0"
[ -z "$(ls "$T"/slow.raw* 2>/dev/null)" ] || fail "left behind: $(ls "$T"/slow.raw*)"
grep -q 'signal 15' "$T/slow.out" || { cat "$T/slow.out" >&2; fail "no message naming the signal"; }

echo PASS
