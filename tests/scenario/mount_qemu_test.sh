#!/usr/bin/env bash
# A QEMU dirty-bitmap story: a qcow2 disk written with qemu-io, a persistent
# dirty bitmap exported by qemu-nbd -B and mapped with nbdinfo --json --map,
# backed up with `chainfs backup --dirty`; every mounted checkpoint equals
# `qemu-img convert -O raw` of the source at that time, and qemu-img reads
# the mounted view (convert to qcow2 and compare).
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

R=$T/repo
M=$T/mnt
Q=$T/vm.qcow2
SOCK=$T/nbd.sock
SIZE=$((32 << 20))

# dirty_map BITMAP OUT: nbdinfo's map of the bitmap, from qemu-nbd -B.
dirty_map() {
  rm -f "$SOCK"
  qemu-nbd -r -f qcow2 -B "$1" -k "$SOCK" "$Q" &
  local pid=$!
  on_exit "kill $pid"
  for i in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
  nbdinfo --json --map="qemu:dirty-bitmap:$1" "nbd+unix:///?socket=$SOCK" >"$2" ||
    fail "nbdinfo --map of bitmap $1 failed"
  wait $pid 2>/dev/null || true   # qemu-nbd exits when its one client leaves
}

# backup_dirty CHECKPOINT BITMAP: incremental backup reading only the dirty
# extents; fails unless fewer blocks than the whole disk were read.
backup_dirty() {
  dirty_map "$2" "$T/map.$1.json"
  qemu-img convert -f qcow2 -O raw "$Q" "$T/exp.$1"
  ok "$CHAINFS" backup "$R" vm1 "$1" --disk vda="$T/exp.$1" --dirty vda="$T/map.$1.json" --json
  read_blocks=$(jq '.disks[0].blocks_read' "$T/last.out")
  [ "$read_blocks" -gt 0 ] && [ "$read_blocks" -lt $((SIZE / 65536 / 4)) ] ||
    fail "$1: backup --dirty read $read_blocks blocks; the bitmap should limit it"
}

step "c1: full backup of a qcow2 disk written with qemu-io"
ok "$CHAINFS" init "$R"
qemu-img create -q -f qcow2 "$Q" "$SIZE"
qemu-io -f qcow2 -c 'write -P 0x11 0 4M' -c 'write -P 0x22 16M 1M' -c 'write -P 0x5a 31M 1M' "$Q" >/dev/null
qemu-img convert -f qcow2 -O raw "$Q" "$T/exp.c1"
ok "$CHAINFS" backup "$R" vm1 c1 --disk vda="$T/exp.c1"
qemu-img bitmap --add "$Q" b1

step "c2: writes, write-zeroes and an unaligned write tracked by bitmap b1"
qemu-io -f qcow2 -c 'write -P 0x33 1M 64k' -c 'write -P 0x44 100k 4k' -c 'write -z 16M 512k' \
  -c 'write -P 0x55 20M 3M' -c 'write -P 0x66 70001 1000' "$Q" >/dev/null
backup_dirty c2 b1

step "c3: new bitmap b2 for the next increment"
qemu-img bitmap --remove "$Q" b1
qemu-img bitmap --add "$Q" b2
qemu-io -f qcow2 -c 'write -P 0x77 2M 128k' -c 'discard 0 64k' -c 'write -P 0x88 31M 4k' "$Q" >/dev/null
backup_dirty c3 b2

mount_fg "$R" "$M"

step "every checkpoint equals qemu-img convert -O raw of the source at that time"
for cp in c1 c2 c3; do
  cmp "$M/vm1/$cp/vda.raw" "$T/exp.$cp" || fail "vm1/$cp/vda.raw differs from the source at $cp"
done

step "qemu-img reads the mounted views"
qemu-img convert -f raw -O qcow2 "$M/vm1/c3/vda.raw" "$T/c3.qcow2"
qemu-img compare -q -f qcow2 -F qcow2 "$T/c3.qcow2" "$Q" || fail "qcow2 copy of vm1/c3 differs from the source"
qemu-img compare -q -f raw -F raw "$M/vm1/c2/vda.raw" "$T/exp.c2" || fail "qemu-img compare of vm1/c2"
unmount_wait "$M"
echo PASS
