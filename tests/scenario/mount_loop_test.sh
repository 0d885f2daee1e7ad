#!/usr/bin/env bash
# Taking files back: every checkpoint of an ext4 disk and of a partitioned
# disk (GPT: one ext4 and one xfs partition) loop-mounts read-only from the
# chainfs mount and shows exactly the files written at that time (rsync
# --checksum --dry-run prints nothing); rsync from two mounted points in time
# at once.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

R=$T/repo
M=$T/mnt
mkdir -p "$T/src" "$T/lc" "$T/p1" "$T/p2"
on_exit "umount '$T/src'; umount '$T/lc'; umount '$T/p1'; umount '$T/p2'"

# write_files DIR SEED: adds and changes files (text, random, sparse, links).
write_files() {
  local d=$1 s=$2
  mkdir -p "$d/etc" "$d/data/deep/er"
  seq "$s" $((s + 20000)) >"$d/etc/numbers.$s"
  random_file "$s" $((s * 37000 % 3000000 + 1000)) "$d/data/blob.$s"
  random_file "x$s" 5000 "$d/data/deep/er/small"        # rewritten every time
  ln -sf "../etc/numbers.$s" "$d/data/link"
  truncate -s 3M "$d/data/sparse.$s" && echo "end $s" >>"$d/data/sparse.$s"
  rm -f "$d/etc/numbers.$((s - 2))"                     # delete an older one
}

# same_tree GOT WANT LABEL: same files, contents, modes, times, links.
same_tree() {
  rsync -a --checksum --dry-run -i --delete --exclude=/lost+found "$1/" "$2/" >"$T/rsync.out" ||
    fail "$3: rsync failed"
  if [ -s "$T/rsync.out" ]; then
    sed 's/^/    | /' "$T/rsync.out" >&2
    fail "$3: the file tree differs from what was written"
  fi
}

# partitions DEV: waits for DEVp1 and DEVp2. Some kernels (without partition
# table parsers) leave the scan to userspace: partx -a adds them.
partitions() {
  local i
  for i in $(seq 40); do [ -b "${1}p2" ] && return 0; sleep 0.05; done
  partx -a "$1" 2>/dev/null || true
  for i in $(seq 100); do [ -b "${1}p2" ] && return 0; sleep 0.05; done
  fail "no partitions appeared on $1"
}

ok "$CHAINFS" init "$R"

step "ext4 disk: 3 checkpoints"
E=$T/ext4.img
truncate -s 64M "$E"
mkfs.ext4 -q -F "$E"
for n in 1 2 3; do
  mount -o loop "$E" "$T/src"
  write_files "$T/src" "$n"
  rm -rf "$T/tree.e$n" && cp -a "$T/src" "$T/tree.e$n"
  umount "$T/src"
  ok "$CHAINFS" backup "$R" ext c$n --disk vda="$E"
done

step "GPT disk, ext4 + xfs partitions: 2 checkpoints"
P=$T/gpt.img
truncate -s 400M "$P"
printf 'label: gpt\nsize=64M, type=linux\ntype=linux\n' | sfdisk -q "$P"
for n in 1 2; do
  dev=$(losetup -fP --show "$P")
  on_exit "losetup -d $dev"
  partitions "$dev"
  if [ "$n" = 1 ]; then
    mkfs.ext4 -q -F "${dev}p1"
    mkfs.xfs -q -f "${dev}p2"
  fi
  mount "${dev}p1" "$T/p1" && mount "${dev}p2" "$T/p2"
  write_files "$T/p1" $((10 + n))
  write_files "$T/p2" $((20 + n))
  rm -rf "$T/tree.p1.$n" "$T/tree.p2.$n"
  cp -a "$T/p1" "$T/tree.p1.$n" && cp -a "$T/p2" "$T/tree.p2.$n"
  umount "$T/p1" && umount "$T/p2"
  losetup -d "$dev"
  ok "$CHAINFS" backup "$R" gpt c$n --disk sda="$P"
done

mount_fg "$R" "$M"

step "loop-mount each ext4 checkpoint (ro,noload) and compare"
for n in 1 2 3; do
  mount -o loop,ro,noload "$M/ext/c$n/vda.raw" "$T/lc" || fail "cannot loop-mount ext/c$n/vda.raw"
  same_tree "$T/lc" "$T/tree.e$n" "ext/c$n"
  umount "$T/lc"
done

step "losetup -rP each GPT checkpoint; ext4 (noload) and xfs (norecovery) partitions"
for n in 1 2; do
  dev=$(losetup -rP --show -f "$M/gpt/c$n/sda.raw")
  on_exit "losetup -d $dev"
  partitions "$dev"
  mount -o ro,noload "${dev}p1" "$T/p1" || fail "cannot mount ext4 partition of gpt/c$n"
  mount -t xfs -o ro,norecovery "${dev}p2" "$T/p2" || fail "cannot mount xfs partition of gpt/c$n"
  same_tree "$T/p1" "$T/tree.p1.$n" "gpt/c$n partition 1 (ext4)"
  same_tree "$T/p2" "$T/tree.p2.$n" "gpt/c$n partition 2 (xfs)"
  umount "$T/p1" && umount "$T/p2"
  losetup -d "$dev"
done

step "rsync from two mounted points in time at once"
mkdir -p "$T/l1" "$T/l3"
on_exit "umount '$T/l1'; umount '$T/l3'"
mount -o loop,ro,noload "$M/ext/c1/vda.raw" "$T/l1"
mount -o loop,ro,noload "$M/ext/c3/vda.raw" "$T/l3"
rsync -a --exclude=/lost+found "$T/l1/" "$T/out1/" &
r1=$!
rsync -a --exclude=/lost+found "$T/l3/" "$T/out3/" &
r3=$!
wait $r1 || fail "rsync from ext/c1 failed"
wait $r3 || fail "rsync from ext/c3 failed"
same_tree "$T/out1" "$T/tree.e1" "rsync copy of ext/c1"
same_tree "$T/out3" "$T/tree.e3" "rsync copy of ext/c3"
umount "$T/l1" && umount "$T/l3"

unmount_wait "$M"
echo PASS
