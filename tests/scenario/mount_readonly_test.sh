#!/usr/bin/env bash
# Everything under a mount is read-only: every write-like call fails with
# EROFS (EACCES is also accepted for opening a file for writing), never a
# crash; the daemon keeps serving reads afterwards.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

R=$T/repo
M=$T/mnt
step "setup: one checkpoint, mounted"
ok "$CHAINFS" init "$R"
random_file 1 $((1 << 20)) "$T/vda.img"
echo '<domain/>' >"$T/domain.xml"
ok "$CHAINFS" backup "$R" vm1 c1 --disk vda="$T/vda.img" --config "$T/domain.xml"
mount_fg "$R" "$M"

step "write-like calls on files, directories and the symlink"
python3 - "$M" <<'PY' || fail "a write-like call did not fail with EROFS/EACCES (see above)"
import errno, os, sys
m = sys.argv[1]
disk, cpdir, grp = f"{m}/vm1/c1/vda.raw", f"{m}/vm1/c1", f"{m}/vm1"
calls = {
    "open O_WRONLY": lambda: os.open(disk, os.O_WRONLY),
    "open O_RDWR": lambda: os.open(disk, os.O_RDWR),
    "open O_TRUNC": lambda: os.open(disk, os.O_RDONLY | os.O_TRUNC),
    "open manifest O_RDWR": lambda: os.open(f"{cpdir}/checkpoint.json", os.O_RDWR),
    "create": lambda: os.open(f"{cpdir}/new", os.O_CREAT | os.O_WRONLY, 0o600),
    "create in root": lambda: os.open(f"{m}/new", os.O_CREAT | os.O_WRONLY, 0o600),
    "mkdir": lambda: os.mkdir(f"{grp}/c9"),
    "rmdir": lambda: os.rmdir(cpdir),
    "unlink": lambda: os.unlink(disk),
    "unlink latest": lambda: os.unlink(f"{grp}/latest"),
    "rename": lambda: os.rename(disk, f"{cpdir}/x.raw"),
    "rename dir": lambda: os.rename(cpdir, f"{grp}/c2"),
    "link": lambda: os.link(disk, f"{cpdir}/x.raw"),
    "symlink": lambda: os.symlink("c1", f"{grp}/other"),
    "mknod": lambda: os.mknod(f"{cpdir}/fifo", 0o600 | 0o010000),
    "chmod": lambda: os.chmod(disk, 0o666),
    "chown": lambda: os.chown(disk, 1, 1),
    "truncate": lambda: os.truncate(disk, 0),
    "utime": lambda: os.utime(disk, (0, 0)),
    "setxattr": lambda: os.setxattr(disk, "user.x", b"1"),
    "removexattr": lambda: os.removexattr(disk, "user.x"),
}
bad = []
for name, call in calls.items():
    try:
        call()
        bad.append(f"{name}: succeeded")
    except OSError as e:
        ok = {errno.EROFS} | ({errno.EACCES} if name.startswith("open") else set())
        if e.errno not in ok:
            bad.append(f"{name}: {errno.errorcode.get(e.errno)}")
for b in bad:
    print("FAIL:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY

step "the daemon still serves reads"
kill -0 "$MOUNT_PID" || fail "daemon died"
cmp "$M/vm1/c1/vda.raw" "$T/vda.img" || fail "vm1/c1/vda.raw differs after the write attempts"
ls "$R/groups/vm1/checkpoints" | grep -qx c1.json || fail "repository changed"
unmount_wait "$M"
echo PASS
