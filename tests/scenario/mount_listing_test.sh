#!/usr/bin/env bash
# Listings through the mount carry each entry's attributes (READDIRPLUS): a
# walk that lists every directory and stats every entry (what `ls -lR`, find
# and rsync do) on a fresh mount needs no LOOKUP below the groups, and every
# attribute it sees (type, mode, size, blocks, times, links) equals what a
# lookup by name gives on another fresh mount that never listed anything;
# each directory entry's inode number is the one stat gives. Files opened
# after a listing read as they should: a native repository of groups whose
# listings span many replies, and a qcow2 chain (foreign nodes). A
# checkpoint directory listed again is answered from the kernel's cache (no
# request reaches the mount); a group listed right after a backup shows
# the new checkpoint.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"
: "${CHAINFS_MAKE_REPO:?set CHAINFS_MAKE_REPO to the chainfs_make_repo binary}"

for t in qemu-img qemu-io python3 jq; do
  command -v "$t" >/dev/null || fail "$t not installed (scripts/setup-deps)"
done

R=$T/repo
I=$T/img
M=$T/mnt
GROUPS_N=3
DEPTH=300

# walk MNT OUT: lists every directory below MNT (os.scandir) and lstats
# every entry it finds; writes one JSON line per entry to OUT; fails if an
# entry's inode number differs from its stat's.
walk() {
  python3 - "$1" "$2" <<'PY' || fail "walking $1"
import json, os, stat, sys
root, out = sys.argv[1], sys.argv[2]
rows, pending = [], [root]
while pending:
    d = pending.pop()
    with os.scandir(d) as it:
        for e in it:
            st = e.stat(follow_symlinks=False)
            if e.inode() != st.st_ino:
                sys.exit("%s: listed as inode %d, stat says %d" % (e.path, e.inode(), st.st_ino))
            rows.append({"path": os.path.relpath(e.path, root), "mode": st.st_mode,
                         "size": st.st_size, "blocks": st.st_blocks, "nlink": st.st_nlink,
                         "mtime": st.st_mtime_ns, "ctime": st.st_ctime_ns})
            if stat.S_ISDIR(st.st_mode):
                pending.append(e.path)
with open(out, "w") as f:
    for r in sorted(rows, key=lambda r: r["path"]):
        f.write(json.dumps(r, sort_keys=True) + "\n")
PY
}

# by_name MNT LISTED OUT: lstats every path of LISTED by name, without
# listing any directory; writes the same lines to OUT.
by_name() {
  python3 - "$1" "$2" "$3" <<'PY' || fail "stat by name below $1"
import json, os, sys
root, listed, out = sys.argv[1:4]
with open(listed) as f, open(out, "w") as o:
    for line in f:
        p = json.loads(line)["path"]
        st = os.lstat(os.path.join(root, p))
        o.write(json.dumps({"path": p, "mode": st.st_mode, "size": st.st_size,
                            "blocks": st.st_blocks, "nlink": st.st_nlink,
                            "mtime": st.st_mtime_ns, "ctime": st.st_ctime_ns},
                           sort_keys=True) + "\n")
PY
}

# replies KEY: a counter of the mount's replies.
replies() { "$CHAINFS" stats "$M" --json | jq -er ".replies.$1"; }

# same_walks SOURCE WHAT: a walk of a fresh mount of SOURCE looks names up
# only at the root (the groups: their attributes would load every group),
# and sees what lookups by name see.
same_walks() {
  local source=$1 what=$2
  mount_fg "$source" "$M"
  walk "$M" "$T/listed.$what"
  local entries lookups groups
  entries=$(wc -l <"$T/listed.$what")
  groups=$(find "$M" -mindepth 1 -maxdepth 1 | wc -l)
  lookups=$(replies lookups)
  echo "$what: $entries entries walked, $lookups lookups, $groups groups" >&2
  # The groups, the stats file, and entries whose 1 s timeout ran out during
  # a slow walk; without attributes in listings, one per entry.
  [ "$lookups" -le $((groups + 1 + entries / 10)) ] ||
    fail "$what: a walk of $entries entries needed $lookups lookups"
  [ "$(replies entries_with_attributes)" -ge $((entries - groups)) ] ||
    fail "$what: only $(replies entries_with_attributes) of $entries entries listed with attributes"
  LISTED_MOUNT_PID=$MOUNT_PID
  # Another mount, where nothing was listed.
  mount_fg "$source" "$T/mnt2"
  by_name "$T/mnt2" "$T/listed.$what" "$T/named.$what"
  unmount_wait "$T/mnt2"
  diff "$T/listed.$what" "$T/named.$what" >&2 ||
    fail "$what: attributes from listings differ from lookups by name"
}

step "a repository of $GROUPS_N groups of $DEPTH checkpoints"
ok "$CHAINFS_MAKE_REPO" "$R" --groups "$GROUPS_N" --depth "$DEPTH" --disk-size 256K \
  --block-size 4K --changed 3 --seed 21
same_walks "$R" native
step "views opened after the listing read their bytes"
for n in 1 150 300; do
  cp=$(printf c%06d "$n")
  ok "$CHAINFS_MAKE_REPO" --expect --group-index 2 --checkpoint "$n" --depth "$DEPTH" \
    --disk-size 256K --block-size 4K --changed 3 --seed 21 --out "$T/expect.raw"
  cmp "$M/vm0002/$cp/vda.raw" "$T/expect.raw" || fail "vm0002/$cp/vda.raw differs"
done
[ "$(readlink "$M/vm0003/latest")" = c000300 ] || fail "vm0003/latest is not c000300"

step "the kernel keeps a checkpoint directory's listing; groups are listed anew"
# names DIR: the names a listing of DIR gives (os.listdir: opendir and
# getdents only, no stat), one per line, sorted.
names() { python3 -c 'import os, sys; print("\n".join(sorted(os.listdir(sys.argv[1]))))' "$1"; }
# The walk above listed every directory once. (listed COUNT_BEFORE WHAT: the
# mount answered at least one listing request since COUNT_BEFORE.)
listed() { [ "$(replies listings)" -gt "$1" ] || fail "$2: no listing request reached the mount"; }
unlisted() { [ "$(replies listings)" -eq "$1" ] || fail "$2: a listing request reached the mount"; }
cp1=$M/vm0001/c000150
before=$(replies listings)
for _ in 1 2 3; do
  names "$cp1" >"$T/cp.1"
  [ "$(cat "$T/cp.1")" = "$(printf 'checkpoint.json\nvda.raw')" ] || fail "c000150 lists: $(cat "$T/cp.1")"
done
unlisted "$before" "c000150 listed again after the walk"
names "$M/vm0001" >"$T/g.1"
listed "$before" "vm0001 listed again"
grep -qx c000300 "$T/g.1" && ! grep -qx c000301 "$T/g.1" || fail "vm0001 lists: $(tail -3 "$T/g.1")"
head -c 262144 /dev/urandom >"$T/src.raw"
ok "$CHAINFS" backup "$R" vm0001 c000301 --disk vda="$T/src.raw"
names "$M/vm0001" >"$T/g.2"
grep -qx c000301 "$T/g.2" || fail "vm0001 listed right after a backup lacks its new checkpoint c000301"
before=$(replies listings)
[ "$(names "$M/vm0001/c000301")" = "$(printf 'checkpoint.json\nvda.raw')" ] ||
  fail "c000301 lists: $(names "$M/vm0001/c000301")"
listed "$before" "c000301 listed for the first time"
before=$(replies listings)
[ "$(names "$M/vm0001/c000301")" = "$(printf 'checkpoint.json\nvda.raw')" ] ||
  fail "c000301 listed again lists: $(names "$M/vm0001/c000301")"
unlisted "$before" "c000301 listed again"
cmp "$M/vm0001/c000301/vda.raw" "$T/src.raw" || fail "vm0001/c000301/vda.raw differs from its source"
unmount_wait "$M" "$LISTED_MOUNT_PID"

step "a qcow2 chain"
mkdir -p "$I"
ok qemu-img create -q -f qcow2 "$I/b0.qcow2" 8M
ok qemu-io -f qcow2 -c "write -P 0x31 0 3M" "$I/b0.qcow2"
ok qemu-img create -q -f qcow2 -b b0.qcow2 -F qcow2 "$I/b1.qcow2" 12M
ok qemu-io -f qcow2 -c "write -P 0x32 2M 2M" -c "write -z 9M 1M" "$I/b1.qcow2"
same_walks "$I" qcow2
for n in b0 b1; do
  ok qemu-img convert -O raw "$I/$n.qcow2" "$T/$n.raw"
  cmp "$M/b1/$n/disk.raw" "$T/$n.raw" || fail "b1/$n/disk.raw differs from qemu-img convert"
done
unmount_wait "$M" "$LISTED_MOUNT_PID"
echo PASS
