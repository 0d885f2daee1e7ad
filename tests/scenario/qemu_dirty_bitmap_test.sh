#!/usr/bin/env bash
# Incremental backups driven by a QEMU dirty bitmap, with real QEMU tools:
# qemu-io writes into a qcow2 image (data, write-zeroes, discard), a
# persistent bitmap tracks them, `qemu-nbd -B` exports it and
# `nbdinfo --map=qemu:dirty-bitmap:...` turns it into the dirty map given to
# `chainfs backup --dirty`. The source is `qemu-img convert -O raw` of the
# qcow2 at that time. Each checkpoint's export must equal that raw image;
# with --dirty only the dirty blocks are read. Includes a differential
# (--since) from a second bitmap, a grow and a shrink (qemu-img resize).
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"

R=$T/repo
Q=$T/vm.qcow2
BS=65536

qio() { ok qemu-io -f qcow2 "${@/#/-c}" "$Q"; }

# dirty_map BITMAP OUT: the bitmap's dirty map, through qemu-nbd and nbdinfo.
dirty_map() {
  local sock=$T/nbd.sock pid
  rm -f "$sock"
  qemu-nbd -r -B "$1" -f qcow2 --socket="$sock" "$Q" &
  pid=$!
  on_exit "kill $pid"
  for _ in $(seq 300); do
    [ -S "$sock" ] && break
    kill -0 "$pid" 2>/dev/null || fail "qemu-nbd -B $1 exited before serving"
    sleep 0.1
  done
  nbdinfo --json --map="qemu:dirty-bitmap:$1" "nbd+unix:///?socket=$sock" >"$2" ||
    fail "nbdinfo could not read dirty bitmap $1"
  wait "$pid" || true  # qemu-nbd without -t exits when its client leaves
}

# dirty_blocks MAP SIZE: how many BS blocks the map marks dirty below SIZE.
dirty_blocks() {
  jq --argjson bs $BS --argjson size "$2" '[.[] | select(.type % 2 == 1 and .offset < $size)
     | ([.offset + .length, $size] | min) as $stop
     | (($stop + $bs - 1) / $bs | floor) - (.offset / $bs | floor)] | add // 0' "$1"
}

# backup_dirty CHECKPOINT BITMAP [args]: backs up a raw copy of the qcow2 as it
# is now, reading only what BITMAP marks dirty; checks blocks_read.
backup_dirty() {
  local cp=$1 bm=$2 size want got
  shift 2
  qemu-img convert -f qcow2 -O raw "$Q" "$T/raw.$cp"
  dirty_map "$bm" "$T/map.$cp.json"
  size=$(stat -c %s "$T/raw.$cp")
  ok "$CHAINFS" backup "$R" vm1 "$cp" --disk vda="$T/raw.$cp" --dirty vda="$T/map.$cp.json" --json "$@"
  cp "$T/last.out" "$T/report.$cp.json"
  want=$(dirty_blocks "$T/map.$cp.json" "$size")
  got=$(jq -r '.disks[0].blocks_read' "$T/report.$cp.json")
  [ "$got" -eq "$want" ] || fail "$cp: backup read $got blocks, the dirty map marks $want"
  [ "$want" -gt 0 ] && [ "$want" -lt $((size / BS / 4)) ] ||
    fail "$cp: $want dirty blocks of $((size / BS)): the test's writes should dirty a few"
  echo "   $cp: $(jq -r '.disks[0] | "\(.kind) base \(.base): \(.blocks_read) blocks read, \(.blocks_stored) stored, \(.blocks_zeroed) zeroed"' "$T/report.$cp.json")"
}

step "c1: qcow2 with data, full backup of its raw conversion"
ok "$CHAINFS" init "$R"
ok qemu-img create -q -f qcow2 "$Q" 64M
qio 'write -P 0x11 0 8M' 'write -P 0x12 20M 4M' 'write -P 0x13 40M 2M' 'write -P 0x14 63M 1M'
qemu-img convert -f qcow2 -O raw "$Q" "$T/raw.c1"
ok "$CHAINFS" backup "$R" vm1 c1 --disk vda="$T/raw.c1" --json
[ "$(jq -r '.disks[0].blocks_read' "$T/last.out")" -eq $(((64 << 20) / BS)) ] || fail "c1: a full backup must read every block"
# inc: changes since the newest checkpoint; since-c1: changes since c1.
ok qemu-img bitmap --add "$Q" inc
ok qemu-img bitmap --add "$Q" since-c1

step "c2: data, unaligned data, write-zeroes and discard; incremental from the bitmap"
qio 'write -P 0x21 1M 64k' 'write -P 0x22 5000000 1000' 'write -z 21M 128k' 'discard 40M 1M'
backup_dirty c2 inc
[ "$(jq -r '.disks[0].blocks_zeroed' "$T/report.c2.json")" -ge 18 ] ||
  fail "c2: write-zeroes (2 blocks) and discard (16 blocks) should be zeroed blocks"
ok qemu-img bitmap --clear "$Q" inc

step "c3: more writes, incremental; the bitmap is cleared after each backup"
qio 'write -P 0x31 30M 256k' 'write -P 0x32 62M 2M'
backup_dirty c3 inc
ok qemu-img bitmap --clear "$Q" inc

step "c4: differential since c1 from the bitmap that was never cleared"
qio 'write -P 0x41 10M 64k'
backup_dirty c4 since-c1 --since c1
[ "$(jq -r '.disks[0].kind + " " + .disks[0].base' "$T/report.c4.json")" = "differential c1" ] ||
  fail "c4 is not a differential on c1"
ok qemu-img bitmap --clear "$Q" inc

step "c5: the disk grows to 96 MiB (qemu-img resize), writes in the new space"
ok qemu-img resize -q -f qcow2 "$Q" 96M
qio 'write -P 0x51 80M 1M' 'write -P 0x52 63M 64k'
backup_dirty c5 inc
[ "$(jq -r '.disks[0].virtual_size' "$T/report.c5.json")" -eq $((96 << 20)) ] || fail "c5 is not 96 MiB"
# Rotate instead of clear: remove the bitmap and start a new one.
ok qemu-img bitmap --remove "$Q" inc
ok qemu-img bitmap --add "$Q" inc

step "c6: the disk shrinks to 72 MiB (qemu-img resize --shrink), more writes"
qio 'write -P 0x61 2M 128k' 'discard 0 64k'
ok qemu-img resize -q -f qcow2 --shrink "$Q" 72M
backup_dirty c6 inc
[ "$(jq -r '.disks[0].virtual_size' "$T/report.c6.json")" -eq $((72 << 20)) ] || fail "c6 is not 72 MiB"

step "every checkpoint's export equals qemu-img convert -O raw at that time"
for cp in c1 c2 c3 c4 c5 c6; do
  ok "$CHAINFS" export "$R" vm1 "$cp" vda "$T/export.raw"
  cmp "$T/export.raw" "$T/raw.$cp" || fail "export of $cp differs from qemu-img convert of the qcow2 at $cp"
  # And as QEMU sees it: the same bytes as the qcow2's raw conversion.
  qemu-img compare -q -f raw -F raw "$T/export.raw" "$T/raw.$cp" || fail "qemu-img compare: export of $cp differs"
done
rm -f "$T/export.raw"

step "check --deep passes"
expect_rc 0 '^OK: 1 group\(s\), 6 checkpoint\(s\)' "$CHAINFS" check "$R" --deep

echo "PASS: qemu_dirty_bitmap"
