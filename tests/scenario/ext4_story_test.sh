#!/usr/bin/env bash
# The life of a real ext4 disk through the CLI: a full backup, then
# incrementals after files are added, changed and deleted, after an fstrim,
# after the disk grows (truncate + resize2fs) and after writes to the new
# space. Every checkpoint's export equals the image saved right after its
# backup, exported views loop-mount and show files as they were, and
# `check --deep` passes.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"

R=$T/repo
IMG=$T/disk.raw
MNT=$T/mnt
mkdir -p "$MNT" "$T/saved"

mount_rw() { mount -o loop "$IMG" "$MNT"; }
unmount() { sync; umount "$MNT"; }

# backup_and_save CHECKPOINT [extra backup args]: backs up the image and keeps
# a sparse copy of what it was; the --json report is left in $T/CHECKPOINT.json.
backup_and_save() {
  local cp=$1
  shift
  ok "$CHAINFS" backup "$R" vm1 "$cp" --disk vda="$IMG" --json "$@"
  cp "$T/last.out" "$T/$cp.json"
  cp --sparse=always "$IMG" "$T/saved/$cp.raw"
}

# report CHECKPOINT FIELD: a number from the disk's backup report.
report() { jq -er ".disks[0].$2" "$T/$1.json"; }

step "c1: a fresh ext4 file system with files, full backup"
ok "$CHAINFS" init "$R"
truncate -s 64M "$IMG"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$IMG"
mount_rw
on_exit "umount $MNT"
echo "hello, version 1" >"$MNT/hello.txt"
mkdir "$MNT/docs"
for i in $(seq 1 20); do seq "$i" 5000 >"$MNT/docs/seq$i.txt"; done
random_file big 8M "$MNT/big.bin"
random_file keep 3M "$MNT/keep.bin"
unmount
backup_and_save c1
[ "$(jq -r '.disks[0].kind' "$T/c1.json")" = full ] || fail "c1 is not full"

step "c2: a file changed, files added and deleted, incremental"
mount_rw
echo "hello, version 2" >"$MNT/hello.txt"
rm "$MNT/docs/seq3.txt" "$MNT/docs/seq4.txt"
mkdir "$MNT/new"
random_file new2 1M "$MNT/new/added.bin"
unmount
backup_and_save c2
[ "$(jq -r '.disks[0].kind' "$T/c2.json")" = incremental ] || fail "c2 is not incremental"
[ "$(report c2 blocks_stored)" -lt $(($(report c1 blocks_stored) / 4)) ] ||
  fail "c2 stored $(report c2 blocks_stored) blocks, c1 $(report c1 blocks_stored): an incremental should store only what changed"

step "c3: the big file deleted and the space trimmed (fstrim), incremental"
mount_rw
rm "$MNT/big.bin"
echo "hello, version 3" >"$MNT/hello.txt"
sync  # ext4 frees the blocks of a deleted file only when its journal commits
fstrim "$MNT"
unmount
backup_and_save c3
# 8 MiB of random data became discarded space: the loop device punched holes,
# so the incremental must record at least some of it as zeroed blocks.
[ "$(report c3 blocks_zeroed)" -ge 64 ] ||
  fail "c3 after fstrim zeroed only $(report c3 blocks_zeroed) blocks, expected >= 64 (8 MiB trimmed)"

step "c4: the disk grows to 96 MiB (truncate + resize2fs), incremental"
truncate -s 96M "$IMG"
e2fsck -f -p "$IMG" >/dev/null
resize2fs "$IMG" >/dev/null 2>&1
mount_rw
echo "hello, version 4" >"$MNT/hello.txt"
unmount
backup_and_save c4
[ "$(report c4 virtual_size)" -eq $((96 << 20)) ] || fail "c4 virtual size $(report c4 virtual_size), expected 96 MiB"

step "c5: writes into the grown space, incremental"
mount_rw
random_file grown 40M "$MNT/grown.bin"
rm "$MNT/keep.bin"
echo "hello, version 5" >"$MNT/hello.txt"
unmount
backup_and_save c5

step "c6: differential against c2 (--since c2)"
mount_rw
echo "hello, version 6" >"$MNT/hello.txt"
unmount
backup_and_save c6 --since c2
[ "$(jq -r '.disks[0].kind + " " + .disks[0].base' "$T/c6.json")" = "differential c2" ] ||
  fail "c6 is not a differential on c2: $(cat "$T/c6.json")"

step "every checkpoint's export equals the image saved at its backup"
for cp in c1 c2 c3 c4 c5 c6; do
  ok "$CHAINFS" export "$R" vm1 "$cp" vda "$T/export.$cp.raw"
  cmp "$T/export.$cp.raw" "$T/saved/$cp.raw" || fail "export of $cp differs from the image saved at its backup"
done
# Exports are sparse: the trimmed checkpoint takes less space than its size.
used=$(du -k "$T/export.c3.raw" | cut -f1)
[ "$used" -lt $((64 * 1024)) ] || fail "export of c3 is not sparse ($used KiB used of 64 MiB)"

step "export onto a block device writes every byte, zeros included"
random_file garbage 96M "$T/device.img"
dev=$(losetup -f --show "$T/device.img")
on_exit "losetup -d $dev"
ok "$CHAINFS" export "$R" vm1 c4 vda "$dev"
cmp "$dev" "$T/saved/c4.raw" || fail "export of c4 onto $dev differs from the saved image (old bytes left in holes?)"
small=$(losetup -f --show --sizelimit 1M "$T/device.img")
on_exit "losetup -d $small"
expect_rc 1 "smaller than the view" "$CHAINFS" export "$R" vm1 c1 vda "$small"

step "exported views loop-mount read-only and show files as they were"
# show_file CHECKPOINT PATH WANT: mounts the export of CHECKPOINT read-only
# and compares PATH in it with the file WANT ("absent": PATH must not exist).
show_file() {
  local m="$T/view.$1" rc=0
  mkdir -p "$m"
  mount -o loop,ro,noload "$T/export.$1.raw" "$m"
  if [ "$3" = absent ]; then
    [ ! -e "$m/$2" ] || rc=1
  else
    cmp -s "$m/$2" "$3" || rc=1
  fi
  umount "$m"
  [ "$rc" -eq 0 ] || fail "$2 at checkpoint $1 is not as it was (expected: $3)"
}
want() { printf '%s\n' "$2" >"$T/want.$1"; echo "$T/want.$1"; }
random_file keep 3M "$T/keep.bin"
random_file grown 40M "$T/grown.bin"
seq 3 5000 >"$T/seq3.txt"
show_file c1 hello.txt "$(want 1 "hello, version 1")"
show_file c4 hello.txt "$(want 4 "hello, version 4")"
show_file c6 hello.txt "$(want 6 "hello, version 6")"
show_file c1 docs/seq3.txt "$T/seq3.txt"
show_file c2 docs/seq3.txt absent
show_file c1 big.bin "$(random_file big 8M "$T/big.bin" && echo "$T/big.bin")"
show_file c3 big.bin absent
show_file c4 keep.bin "$T/keep.bin"
show_file c5 keep.bin absent
show_file c5 grown.bin "$T/grown.bin"
# The view of c4 still holds the file system of c4 at full size.
e2fsck -fn "$T/export.c4.raw" >/dev/null 2>&1 || fail "e2fsck finds the exported c4 file system damaged"

step "check --deep passes"
expect_rc 0 '^OK: 1 group\(s\), 6 checkpoint\(s\)' "$CHAINFS" check "$R" --deep

echo "PASS: ext4_story"
