# Helpers for the mount scenario tests (sourced after lib.sh; not a test).
#
#   mount_fg "$R" "$T/mnt"            # chainfs mount -f in the background
#   ...                               # MOUNT_PID is the daemon
#   unmount_wait "$T/mnt"             # fusermount3 -u, then the daemon exits
#
# Cleanups are registered with on_exit, so a failing test still unmounts and
# kills its daemon.

# wait_mounted MNT: waits until MNT is a FUSE mount answering requests.
wait_mounted() {
  local i
  for i in $(seq 200); do
    if findmnt -rn -M "$1" -t fuse.chainfs >/dev/null 2>&1 && stat "$1/." >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.05
  done
  return 1
}

# mount_fg REPO MNT [ARGS...]: mounts with -f as a background job; the
# daemon's stderr goes to $T/mount.log. Sets MOUNT_PID.
mount_fg() {
  local repo=$1 mnt=$2
  shift 2
  mkdir -p "$mnt"
  "$CHAINFS" mount "$repo" "$mnt" -f "$@" 2>>"$T/mount.log" &
  MOUNT_PID=$!
  on_exit "kill $MOUNT_PID"
  on_exit "fusermount3 -u '$mnt'"
  wait_mounted "$mnt" || { cat "$T/mount.log" >&2; fail "mount of $repo on $mnt did not appear"; }
}

# unmount_wait MNT [PID]: unmounts and waits for the daemon to exit; fails
# if the mount or the process remains.
unmount_wait() {
  local mnt=$1 pid=${2:-$MOUNT_PID} i
  fusermount3 -u "$mnt" || fail "fusermount3 -u $mnt failed"
  for i in $(seq 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -0 "$pid" 2>/dev/null && fail "daemon $pid still running after unmounting $mnt"
  findmnt -rn -M "$mnt" >/dev/null && fail "$mnt still mounted"
  local rc=0
  wait "$pid" 2>/dev/null || rc=$?
  [ "$rc" -eq 0 ] || { tail -5 "$T/mount.log" >&2; fail "daemon for $mnt exited with status $rc"; }
  return 0
}

# cmp_region FILE_A FILE_B OFFSET LENGTH: the bytes at OFFSET are equal.
cmp_region() {
  cmp -s <(dd if="$1" bs=64K iflag=skip_bytes,count_bytes skip="$3" count="$4" status=none) \
    <(dd if="$2" bs=64K iflag=skip_bytes,count_bytes skip="$3" count="$4" status=none)
}

# eventually CMD...: CMD succeeds within a few seconds (the mount rescans a
# group whose directory changed, at most every second).
eventually() {
  local i
  for i in $(seq 200); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  return 1
}
