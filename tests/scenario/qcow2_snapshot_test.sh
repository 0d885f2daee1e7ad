#!/usr/bin/env bash
# A VM disk kept as a qcow2 overlay on a template, with internal snapshots
# (`qemu-img snapshot -c`) as its restore points: chainfs shows each snapshot
# as a checkpoint of its image (IMAGE.TAG) beside the image itself, at the
# disk size it had, and a file is restored from it by loop-mounting its
# disk.raw through the FUSE mount. Every view equals what QEMU reads after
# `qemu-img snapshot -a` (reverting a copy); list, check --deep and export
# agree; a damaged snapshot table is refused by name while the image itself
# is still served; the source is never written by chainfs. Last, while
# mounted, a snapshot taken appears and a deleted one disappears.
#
#   base.qcow2  ext4 holding the template's files (qemu-img convert)
#   vm.qcow2    on base.qcow2: monday's changes, snapshot "monday", then
#               tuesday's changes and the disk grown from 64 to 96 MiB (the
#               filesystem with it: resize2fs), then snapshot "wednesday"
#               taken by QEMU itself with the VM's state (savevm in a paused
#               TCG machine, as libvirt's internal snapshots of a running
#               domain are): its VM state clusters lie past the disk.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

for t in qemu-img qemu-io qemu-system-x86_64 python3 jq mkfs.ext4 resize2fs e2fsck; do
  command -v "$t" >/dev/null || fail "$t not installed (scripts/setup-deps)"
done

S=$T/src     # the source directory: nothing below may change once made
W=$T/work    # scratch: the filesystem as a raw file, references
M=$T/mnt
MB=$((1 << 20))
mkdir -p "$S/img" "$T/dmg" "$W/rw" "$T/lm"
on_exit "umount '$T/lm'; umount '$W/rw'"

# apply OLD NEW IMAGE: writes the 64 KiB blocks where raw file NEW differs
# from raw file OLD (or lies past its end) into qcow2 IMAGE, one qemu-io.
apply() {
  python3 - "$1" "$2" "$3" "$W" <<'PY' || fail "writing the changed blocks into $3"
import os, subprocess, sys
old, new, image, scratch = sys.argv[1:]
B = 64 << 10
a, b = open(old, "rb").read(), open(new, "rb").read()
runs = []
for off in range(0, len(b), B):
    if a[off:off + B] != b[off:off + B]:
        if runs and runs[-1][0] + runs[-1][1] == off:
            runs[-1][1] += B
        else:
            runs.append([off, B])
assert runs, "nothing changed"
cmds = []
for i, (off, n) in enumerate(runs):
    p = os.path.join(scratch, f"run.{i}")
    with open(p, "wb") as f:
        f.write(b[off:off + n])
    cmds += ["-c", f"write -q -s {p} {off} {n}"]
subprocess.run(["qemu-io", "-f", "qcow2"] + cmds + [image], check=True, stdout=subprocess.DEVNULL)
for i in range(len(runs)):
    os.unlink(os.path.join(scratch, f"run.{i}"))
PY
}
# edit: loop-mounts $W/fs.raw read-write and runs the arguments there.
edit() {
  mount -o loop "$W/fs.raw" "$W/rw" || fail "mount -o loop $W/fs.raw"
  (cd "$W/rw" && "$@") || fail "editing the filesystem: $*"
  umount "$W/rw"
}
# reverted IMAGE ID OUT: what QEMU reads after reverting a copy of IMAGE to
# internal snapshot ID (the copy beside IMAGE, so its backing file resolves).
reverted() {
  local copy
  copy="$(dirname "$1")/.revert.qcow2"
  cp "$1" "$copy"
  ok qemu-img snapshot -a "$2" "$copy"
  ok qemu-img convert -O raw "$copy" "$3"
  rm -f "$copy"
}
tree_state() {
  (cd "$1" && find . -printf '%y %p %s %T@\n' | LC_ALL=C sort &&
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}

step "the images: a template, an overlay with snapshot monday, grown since"
mkdir -p "$W/tree/etc" "$W/tree/data"
echo template >"$W/tree/hello.txt"
seq 1 20000 >"$W/tree/etc/numbers"
random_file tpl $((3 * MB)) "$W/tree/data/template.bin"
truncate -s 64M "$W/fs.raw"
mkfs.ext4 -q -F -d "$W/tree" "$W/fs.raw"
ok qemu-img convert -O qcow2 "$W/fs.raw" "$S/img/base.qcow2"
ok qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$S/img/vm.qcow2"
cp --sparse=always "$W/fs.raw" "$W/fs.before"
edit sh -c "echo monday > hello.txt && head -c $((2 * MB)) /dev/urandom > data/monday.bin && rm etc/numbers"
apply "$W/fs.before" "$W/fs.raw" "$S/img/vm.qcow2"
mount -o ro,loop "$W/fs.raw" "$W/rw"
(cd "$W/rw" && sha256sum hello.txt data/monday.bin data/template.bin) >"$W/monday.sums"
umount "$W/rw"
ok qemu-img snapshot -c monday "$S/img/vm.qcow2"

cp --sparse=always "$W/fs.raw" "$W/fs.before"
truncate -s 96M "$W/fs.raw"
e2fsck -fy "$W/fs.raw" >/dev/null 2>&1 || true
resize2fs "$W/fs.raw" >/dev/null 2>&1 || fail "resize2fs $W/fs.raw"
ok qemu-img resize -q "$S/img/vm.qcow2" 96M
edit sh -c "echo tuesday > hello.txt && rm data/monday.bin && head -c $((5 * MB)) /dev/urandom > data/tuesday.bin"
apply "$W/fs.before" "$W/fs.raw" "$S/img/vm.qcow2"
mount -o ro,loop "$W/fs.raw" "$W/rw"
(cd "$W/rw" && sha256sum hello.txt data/tuesday.bin data/template.bin) >"$W/tuesday.sums"
umount "$W/rw"
rm -f "$W/fs.before"
printf 'savevm wednesday\nquit\n' |
  timeout 120 qemu-system-x86_64 -machine pc,accel=tcg -nodefaults -S -display none -monitor stdio \
    -drive file="$S/img/vm.qcow2",if=none,id=d0,format=qcow2 -device virtio-blk-pci,drive=d0 >"$T/qemu.out" 2>&1 ||
  { cat "$T/qemu.out" >&2; fail "qemu-system-x86_64 savevm wednesday"; }
ok qemu-img snapshot -l "$S/img/vm.qcow2"
grep -q wednesday "$T/last.out" || { cat "$T/qemu.out" >&2; fail "savevm made no snapshot wednesday"; }

reverted "$S/img/vm.qcow2" monday "$W/ref.monday"
ok qemu-img convert -O raw "$S/img/vm.qcow2" "$W/ref.vm"
cmp "$W/ref.vm" "$W/fs.raw" || fail "vm.qcow2 does not read as the filesystem written into it"
[ "$(stat -c %s "$W/ref.monday")" = $((64 * MB)) ] || fail "reverting to monday gives $(stat -c %s "$W/ref.monday") bytes"
cmp -s "$W/ref.monday" <(head -c $((64 * MB)) "$W/ref.vm") && fail "monday's disk equals today's: the edits did nothing"
tree_state "$S" >"$T/src.before"

step "list --json: vm's checkpoints base, vm.monday (64 MiB, on base), vm.wednesday and vm (96 MiB, on base)"
ok "$CHAINFS" list --json "$S/img"
jq -e '[.[] | select(.group == "vm") | .checkpoints[] |
        {name, parent: (.parent // ""), size: .disks[0].virtual_size}] ==
       [{"name": "base", "parent": "", "size": 67108864},
        {"name": "vm.monday", "parent": "base", "size": 67108864},
        {"name": "vm.wednesday", "parent": "base", "size": 100663296},
        {"name": "vm", "parent": "base", "size": 100663296}]' "$T/last.out" >/dev/null ||
  fail "list --json: $(jq -c '[.[] | .checkpoints[] | {name, parent, disks}]' "$T/last.out" 2>&1 | head -c 2000)"

step "mount: vm/vm.monday/disk.raw is monday's disk; loop-mounted, monday's files"
mount_fg "$S/img" "$M" -o log="$T/daemon.log"
[ "$(ls "$M/vm" | LC_ALL=C sort | paste -sd' ')" = "base latest vm vm.monday vm.wednesday" ] ||
  fail "vm holds $(ls "$M/vm" | paste -sd' ')"
[ "$(readlink "$M/vm/latest")" = vm ] || fail "vm/latest -> $(readlink "$M/vm/latest")"
[ "$(stat -c %s "$M/vm/vm.monday/disk.raw")" = $((64 * MB)) ] || fail "vm.monday/disk.raw: $(stat -c %s "$M/vm/vm.monday/disk.raw") bytes"
[ "$(stat -c %s "$M/vm/vm/disk.raw")" = $((96 * MB)) ] || fail "vm/disk.raw: $(stat -c %s "$M/vm/vm/disk.raw") bytes"
cmp "$M/vm/vm.monday/disk.raw" "$W/ref.monday" || fail "vm.monday/disk.raw differs from qemu-img snapshot -a monday"
cmp "$M/vm/vm/disk.raw" "$W/ref.vm" || fail "vm/disk.raw differs from qemu-img convert"
jq -e '.snapshot.name == "monday" and .snapshot.id == "1" and ."virtual-size" == 67108864 and .format == "qcow2"' \
  "$M/vm/vm.monday/image.json" >/dev/null || fail "vm.monday/image.json: $(cat "$M/vm/vm.monday/image.json")"
# wednesday: today's disk, not its saved VM state (which follows the disk).
cmp "$M/vm/vm.wednesday/disk.raw" "$W/ref.vm" || fail "vm.wednesday/disk.raw differs from qemu-img convert"
jq -e '.snapshot.name == "wednesday" and .snapshot."vm-state-size" > 0' "$M/vm/vm.wednesday/image.json" >/dev/null ||
  fail "vm.wednesday/image.json: $(cat "$M/vm/vm.wednesday/image.json")"
jq -e '[.snapshots[].name] == ["monday", "wednesday"] and ."virtual-size" == 100663296 and (has("snapshot") | not)' \
  "$M/vm/vm/image.json" >/dev/null || fail "vm/image.json: $(cat "$M/vm/vm/image.json")"
mount -o ro,loop "$M/vm/vm.monday/disk.raw" "$T/lm" || fail "mount -o ro,loop vm.monday/disk.raw"
(cd "$T/lm" && sha256sum -c --quiet "$W/monday.sums") || fail "monday's files (loop-mounted through chainfs) differ"
[ "$(cat "$T/lm/hello.txt")" = monday ] || fail "monday's hello.txt: $(cat "$T/lm/hello.txt")"
[ ! -e "$T/lm/data/tuesday.bin" ] || fail "monday's disk holds tuesday's file"
umount "$T/lm"
mount -o ro,loop "$M/vm/vm/disk.raw" "$T/lm" || fail "mount -o ro,loop vm/disk.raw"
(cd "$T/lm" && sha256sum -c --quiet "$W/tuesday.sums") || fail "today's files (loop-mounted through chainfs) differ"
[ "$(df -B1M --output=size "$T/lm" | tail -1 | tr -d ' ')" -gt 80 ] || fail "today's filesystem is not the grown one"
umount "$T/lm"
unmount_wait "$M"

step "export of the snapshot; check --deep (the VM state clusters are no damage)"
ok "$CHAINFS" export "$S/img" vm vm.monday disk "$W/out.raw"
cmp "$W/out.raw" "$W/ref.monday" || fail "export of vm.monday differs"
ok "$CHAINFS" check --deep "$S/img"
grep -q '0 problem' "$T/last.out" || fail "check --deep: $(cat "$T/last.out")"

step "a damaged snapshot table: vm.snapshots refused by name, vm itself still served"
cp "$S/img/base.qcow2" "$S/img/vm.qcow2" "$T/dmg/"
python3 - "$T/dmg/vm.qcow2" <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(64)
    table = struct.unpack(">Q", f.read(8))[0]
    f.seek(table)  # the first entry's L1 table offset: far past the end
    f.write(struct.pack(">Q", 1 << 40))
PY
expect_rc 1 "vm\.snapshots.*$T/dmg/vm\.qcow2: snapshot 'monday' \(id 1\): L1 table at offset 1099511627776 .*past the end" \
  "$CHAINFS" list "$T/dmg"
ok "$CHAINFS" export "$T/dmg" vm vm disk "$W/out.raw"
cmp "$W/out.raw" "$W/ref.vm" || fail "vm from the damaged copy differs"
expect_rc 1 "vm\.snapshots" "$CHAINFS" check "$T/dmg"


step "the source was never written"
tree_state "$S" >"$T/src.after"
diff "$T/src.before" "$T/src.after" >&2 || fail "the source directory changed"

step "while mounted: a snapshot taken appears, a deleted one disappears (the image changes in place)"
mount_fg "$S/img" "$M" -o log="$T/daemon.log"
[ -f "$M/vm/vm.monday/disk.raw" ] || fail "no vm.monday in the mount"
sleep 3  # longer than a local directory takes to settle: the rescan must not depend on it
ok qemu-img snapshot -c thursday "$S/img/vm.qcow2"
eventually test -f "$M/vm/vm.thursday/disk.raw" || fail "snapshot thursday did not appear: $(ls "$M/vm" | paste -sd' ')"
cmp "$M/vm/vm.thursday/disk.raw" "$W/ref.vm" || fail "vm.thursday/disk.raw differs from qemu-img convert"
ok qemu-img snapshot -d monday "$S/img/vm.qcow2"
eventually test ! -e "$M/vm/vm.monday" || fail "deleted snapshot monday is still shown: $(ls "$M/vm" | paste -sd' ')"
unmount_wait "$M"
echo "PASS"
