#!/usr/bin/env bash
# Every checkpoint of a story (full, incrementals, a new disk, grow, shrink,
# grow again, a differential, zeroed ranges) shows as GROUP/CHECKPOINT/DISK.raw
# byte-equal to the image saved at backup time; checkpoint.json and the VM
# config are the stored bytes; `latest` names the newest; mtime is the
# creation time; st_blocks counts stored data. Then 8 parallel readers on
# different checkpoints and offsets, and SEEK_DATA/SEEK_HOLE on a sparse view
# (cp --sparse keeps the holes).
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

R=$T/repo
A=$T/vda.img
V=$T/vdb.img
M=$T/mnt
CPS=()

# put SEED OFFSET BYTES IMAGE: writes reproducible random bytes at OFFSET.
put() {
  random_file "$1" "$3" "$T/chunk"
  dd if="$T/chunk" of="$4" bs=4K iflag=count_bytes oflag=seek_bytes seek="$2" conv=notrunc status=none
}

# backup CHECKPOINT [ARGS...]: backs up vda (and vdb once it exists) and saves
# the expected images as $T/exp.CHECKPOINT.DISK.
backup() {
  local cp=$1 disks=(--disk vda="$A")
  shift
  [ -e "$V" ] && disks+=(--disk vdb="$V")
  ok "$CHAINFS" backup "$R" vm1 "$cp" "${disks[@]}" "$@"
  cp --sparse=always "$A" "$T/exp.$cp.vda"
  [ -e "$V" ] && cp --sparse=always "$V" "$T/exp.$cp.vdb"
  CPS+=("$cp")
}

step "story: 8 checkpoints of vda (and vdb from c2)"
ok "$CHAINFS" init "$R" --block-size 64K
truncate -s 8M "$A"
put 1 0 $((1 << 20)) "$A"                 # data at 0..1M, hole 1M..5M
put 2 $((5 << 20)) $((2 << 20)) "$A"     # data at 5M..7M, hole to 8M
echo '<domain type="kvm"><name>vm1</name></domain>' >"$T/domain.xml"
backup c1 --config "$T/domain.xml"
put 3 $((4096 * 3)) 5000 "$A"            # unaligned, inside a block
truncate -s 3M "$V" && put 4 $((1 << 20)) 100000 "$V"
backup c2
truncate -s 12M "$A" && put 5 $((10 << 20)) 70000 "$A"   # grow
backup c3
truncate -s 6M "$A"                       # shrink
backup c4
truncate -s 9M "$A" && put 6 $((8 << 20)) 4096 "$A"      # grow again: 6M..8M must read 0
backup c5
put 7 $((64 << 10)) 300000 "$A"
backup c6 --since c2                      # differential
dd if=/dev/zero of="$A" bs=64K seek=1 count=8 conv=notrunc status=none   # zeroed range
backup c7
put 8 100 10 "$A"
backup c8

mount_fg "$R" "$M"

step "every DISK.raw equals the saved image"
for cp in "${CPS[@]}"; do
  for d in vda vdb; do
    [ -e "$T/exp.$cp.$d" ] || continue
    [ -e "$M/vm1/$cp/$d.raw" ] || fail "$M/vm1/$cp/$d.raw missing"
    size=$(stat -c %s "$M/vm1/$cp/$d.raw")
    [ "$size" -eq "$(stat -c %s "$T/exp.$cp.$d")" ] || fail "vm1/$cp/$d.raw has size $size"
    cmp "$M/vm1/$cp/$d.raw" "$T/exp.$cp.$d" || fail "vm1/$cp/$d.raw differs from the image saved at $cp"
  done
done
[ -e "$M/vm1/c1/vdb.raw" ] && fail "c1 shows vdb, which it does not have"

step "checkpoint.json, config, latest, mtime, st_blocks"
for cp in "${CPS[@]}"; do
  cmp "$M/vm1/$cp/checkpoint.json" "$R/groups/vm1/checkpoints/$cp.json" ||
    fail "vm1/$cp/checkpoint.json differs from the stored manifest"
  ns=$(jq -r .created_unix_ns "$R/groups/vm1/checkpoints/$cp.json")
  for f in "$M/vm1/$cp" "$M/vm1/$cp/vda.raw" "$M/vm1/$cp/checkpoint.json"; do
    [ "$(stat -c %Y "$f")" -eq $((ns / 1000000000)) ] || fail "mtime of $f is not the creation time"
  done
done
cmp "$M/vm1/c1/domain.xml" "$T/domain.xml" || fail "vm1/c1/domain.xml differs from the config given"
[ -e "$M/vm1/c2/domain.xml" ] && fail "c2 shows a config it does not have"
[ "$(readlink "$M/vm1/latest")" = c8 ] || fail "latest -> $(readlink "$M/vm1/latest"), expected c8"
cmp "$M/vm1/latest/vda.raw" "$T/exp.c8.vda" || fail "latest/vda.raw differs from c8"
stored=$(jq '.disks[] | select(.name == "vda") | .stored_bytes' "$R/groups/vm1/checkpoints/c1.json")
[ "$(stat -c %b "$M/vm1/c1/vda.raw")" -eq $(((stored + 511) / 512)) ] ||
  fail "st_blocks of c1/vda.raw is $(stat -c %b "$M/vm1/c1/vda.raw"), stored bytes $stored"
[ $(($(stat -c %b "$M/vm1/c1/vda.raw") * 512)) -lt $((8 << 20)) ] || fail "du of a sparse view counts holes"
ls "$M/vm1" | sort >"$T/ls"
printf '%s\n' "${CPS[@]}" latest | sort | diff - "$T/ls" || fail "listing of vm1 is wrong"

step "8 parallel readers on different checkpoints and offsets"
readers=(c1:0:1048576 c2:12288:70000 c3:10485760:2000000 c4:0:6291456
  c5:6291456:3145728 c6:65000:400000 c7:0:9437184 c8:99:131072)
pids=()
for i in "${!readers[@]}"; do
  IFS=: read -r cp off len <<<"${readers[$i]}"
  (for round in 1 2 3; do
    cmp_region "$M/vm1/$cp/vda.raw" "$T/exp.$cp.vda" "$off" "$len" || exit 1
  done) &
  pids+=($!)
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || fail "parallel reader ${readers[$i]} read wrong bytes"
done

step "SEEK_DATA / SEEK_HOLE on a sparse view"
python3 - "$M/vm1/c1/vda.raw" "$T/exp.c1.vda" <<'PY' || fail "SEEK_DATA/SEEK_HOLE on vm1/c1/vda.raw"
import os, sys
view, exp = sys.argv[1], sys.argv[2]
fd = os.open(view, os.O_RDONLY)
size = os.fstat(fd).st_size
segs, off = [], 0
while off < size:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    h = os.lseek(fd, d, os.SEEK_HOLE)
    assert h > d, (d, h)
    segs.append((d, h))
    off = h
M = 1 << 20
want = [(0, M), (5 * M, 7 * M)]
if segs != want:
    sys.exit(f"data segments {segs}, expected {want}")
try:
    os.lseek(fd, 7 * M, os.SEEK_DATA)
    sys.exit("SEEK_DATA in the trailing hole did not fail")
except OSError as e:
    assert e.errno == 6, e  # ENXIO
assert os.lseek(fd, 2 * M, os.SEEK_HOLE) == 2 * M
assert os.lseek(fd, 2 * M, os.SEEK_DATA) == 5 * M
PY
cp --sparse=always "$M/vm1/c1/vda.raw" "$T/copy"
cmp "$T/copy" "$T/exp.c1.vda" || fail "cp --sparse copy of c1/vda.raw differs"
[ "$(stat -c %b "$T/copy")" -le $(((3 << 20) / 512 + 64)) ] || fail "cp --sparse copy is not sparse"

unmount_wait "$M"
echo "PASS"
