#!/usr/bin/env bash
# Mounting and unmounting: a bad repository, option or mountpoint fails
# before daemonizing (exit 1, or 2 for an unknown option) and leaves no mount
# and no process; the daemonized mount goes away cleanly with umount,
# fusermount3 -u and SIGTERM (exit 0 even with files still open, which it
# frees); `mount -t fuse.chainfs` through the installed
# helper and an fstab line (mount -T FSTAB) work with their options; by
# default only the mounting user can read, uid=/umask=/allow_other open it up.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

R=$T/repo
M=$T/mnt
mkdir -p "$M"
HELPER=/sbin/mount.fuse.chainfs

# daemon_pid: the pid of the chainfs daemon serving $M (empty if none).
daemon_pid() { pgrep -f -- "chainfs mount .*$M" || true; }

# gone LABEL: no mount on $M and no daemon left.
gone() {
  local i
  for i in $(seq 200); do
    [ -z "$(daemon_pid)" ] && ! findmnt -rn -M "$M" >/dev/null && return 0
    sleep 0.05
  done
  fail "$1: mount or daemon left behind: $(findmnt -rn -M "$M") pid $(daemon_pid)"
}

# as_nobody CMD...: runs CMD as uid/gid 65534.
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }

on_exit "umount -l '$M'"
on_exit 'p=$(pgrep -f -- "chainfs mount .*'"$M"'"); [ -n "$p" ] && kill $p'

step "setup"
chmod 755 "$T"  # so that another user can reach the mountpoint
ok "$CHAINFS" init "$R"
random_file 1 $((1 << 20)) "$T/vda.img"
ok "$CHAINFS" backup "$R" vm1 c1 --disk vda="$T/vda.img"

step "bad requests fail before daemonizing and leave nothing"
expect_rc 1 "nope" "$CHAINFS" mount "$T/nope" "$M"
gone "missing repository"
mkdir "$T/empty"
expect_rc 1 "not a chainfs repository" "$CHAINFS" mount "$T/empty" "$M"
gone "directory without chainfs.json"
echo '{"version": 99}' >"$T/empty/chainfs.json"
expect_rc 1 "chainfs.json" "$CHAINFS" mount "$T/empty" "$M"
gone "unsupported repository version"
expect_rc 2 "bogus" "$CHAINFS" mount "$R" "$M" -o allow_other,bogus
gone "unknown option"
expect_rc 1 "mountpoint" "$CHAINFS" mount "$R" "$T/no-such-dir"
expect_rc 1 "log=" "$CHAINFS" mount "$R" "$M" -o log="$T"   # a directory
gone "unwritable log"

step "daemonized mount: umount"
ok "$CHAINFS" mount "$R" "$M" -o log="$T/daemon.log"
wait_mounted "$M" || fail "daemonized mount did not appear"
[ -n "$(daemon_pid)" ] || fail "no daemon process after a daemonized mount"
cmp "$M/vm1/c1/vda.raw" "$T/vda.img" || fail "daemonized mount reads wrong bytes"
[ -f "$T/daemon.log" ] || fail "log=PATH did not create the log file"
findmnt -rn -M "$M" -o FSTYPE,SOURCE,OPTIONS | grep -q "^fuse.chainfs chainfs:$R ro," ||
  fail "mount table entry: $(findmnt -rn -M "$M" -o FSTYPE,SOURCE,OPTIONS)"
umount "$M"
gone "umount"

step "daemonized mount: SIGTERM"
ok "$CHAINFS" mount "$R" "$M"
wait_mounted "$M" || fail "daemonized mount did not appear"
kill -TERM "$(daemon_pid)"
gone "SIGTERM"

step "fusermount3 -u"
mount_fg "$R" "$M"
unmount_wait "$M"
gone "fusermount3 -u"

step "SIGTERM to a foreground mount with a disk and a directory still open: exit 0"
# Their releases never come; the daemon frees them itself (a leak would fail
# the AddressSanitizer build's exit status).
mount_fg "$R" "$M"
exec 3<"$M/vm1/c1/vda.raw"
head -c 65536 <&3 >/dev/null
exec 4<"$M/vm1"
kill -TERM "$MOUNT_PID"
rc=0
wait "$MOUNT_PID" || rc=$?
exec 3<&- 4<&-
[ "$rc" -eq 0 ] || { tail -5 "$T/mount.log" >&2; fail "SIGTERM with files open: exit status $rc"; }
gone "SIGTERM with files open"

step "permissions: only the mounting user by default"
ok "$CHAINFS" mount "$R" "$M"
wait_mounted "$M" || fail "mount did not appear"
[ "$(stat -c %a "$M/vm1/c1/vda.raw")" = 400 ] || fail "default file mode $(stat -c %a "$M/vm1/c1/vda.raw")"
[ "$(stat -c %a "$M/vm1")" = 500 ] || fail "default directory mode $(stat -c %a "$M/vm1")"
as_nobody stat "$T/repo" >/dev/null || fail "another user cannot reach the test directory"
as_nobody cat "$M/vm1/c1/vda.raw" >/dev/null 2>&1 && fail "another user read a default mount"
umount "$M" && gone "umount"
ok "$CHAINFS" mount "$R" "$M" -o allow_other
wait_mounted "$M" || fail "mount did not appear"
as_nobody ls "$M/vm1" >/dev/null 2>&1 && fail "allow_other without umask let another user list (mode 0500)"
umount "$M" && gone "umount"

step "mount -t fuse.chainfs through the installed helper"
if [ -e "$HELPER" ]; then
  cp -a "$HELPER" "$T/helper.saved"
  on_exit "cp -a '$T/helper.saved' '$HELPER'"
else
  on_exit "rm -f '$HELPER'"
fi
sed "s|@CHAINFS_BIN@|$CHAINFS|" "$SRC/fusefs/mount.chainfs" >"$HELPER"
chmod 755 "$HELPER"
mount -t fuse.chainfs "$R" "$M" -o allow_other,umask=022 || fail "mount -t fuse.chainfs failed"
wait_mounted "$M" || fail "mount -t fuse.chainfs did not appear"
[ "$(stat -c %a "$M/vm1/c1/vda.raw")" = 444 ] || fail "umask=022 gave mode $(stat -c %a "$M/vm1/c1/vda.raw")"
as_nobody cat "$M/vm1/c1/vda.raw" | cmp - "$T/vda.img" || fail "allow_other,umask=022: another user cannot read"
umount "$M"
gone "umount after mount -t"

step "an fstab line (mount -T FSTAB MOUNTPOINT)"
echo "$R $M fuse.chainfs noauto,nofail,_netdev,uid=4242,gid=4343,x-systemd.automount 0 0" >"$T/fstab"
mount -T "$T/fstab" "$M" || fail "mount from an fstab line failed"
wait_mounted "$M" || fail "fstab mount did not appear"
[ "$(stat -c %u:%g "$M/vm1/c1/vda.raw")" = 4242:4343 ] ||
  fail "uid=/gid= from fstab gave $(stat -c %u:%g "$M/vm1/c1/vda.raw")"
umount "$M"
gone "umount after fstab mount"
echo PASS
