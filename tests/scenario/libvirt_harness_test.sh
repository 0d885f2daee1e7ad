#!/usr/bin/env bash
# The libvirt test harness (libvirt_lib.sh) checked on its own, without chainfs:
# A private libvirtd runs a TCG guest with vda:64M vdb:32M; a pull-mode
# backup job with checkpoint cp1 exports both disks over NBD, which must
# equal the ground truth taken before it (also after a write made during the
# job); then, after a hot-plugged vdc and a grown vdb, an incremental job
# from cp1 whose dirty bitmaps mark exactly what was written. Finally
# lv_stop must leave no process behind.
set -euo pipefail
: "${CHAINFS:=/bin/true}"  # lib.sh wants it; unused here
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/libvirt_lib.sh"

S=$T/nbd.sock

# nbd EXPORT: the URI of EXPORT on the backup job's NBD server.
nbd() { echo "nbd+unix:///$1?socket=$S"; }

# backup_xml [INCREMENTAL] DISK[:full]...: pull-mode backup XML on $S.
backup_xml() {
  local inc=$1 d
  shift
  echo "<domainbackup mode='pull'>"
  [ -z "$inc" ] || echo "  <incremental>$inc</incremental>"
  echo "  <server transport='unix' socket='$S'/>"
  echo "  <disks>"
  for d in "$@"; do
    echo "    <disk name='${d%:*}' backup='yes' type='file'$([ "${d#*:}" = full ] && echo " backupmode='full'")>"
    echo "      <scratch file='$T/scratch-${d%:*}.qcow2'/>"
    echo "    </disk>"
  done
  echo "  </disks>"
  echo "</domainbackup>"
}

# checkpoint_xml NAME DISK...
checkpoint_xml() {
  local d
  echo "<domaincheckpoint><name>$1</name><disks>"
  shift
  for d in "$@"; do echo "<disk name='$d' checkpoint='bitmap'/>"; done
  echo "</disks></domaincheckpoint>"
}

# same_as_truth TRUTHDIR DISK...: every DISK's NBD export equals its truth.
same_as_truth() {
  local dir=$1 d
  shift
  for d in "$@"; do
    rm -f "$T/got.raw"
    ok nbdcopy "$(nbd "$d")" "$T/got.raw"
    cmp "$T/got.raw" "$dir/$d.raw" || fail "export $d differs from the ground truth"
  done
}

# dirty DISK: the export's dirty extents as "offset+length" lines.
dirty() {
  nbdinfo --json --map="qemu:dirty-bitmap:backup-$1" "$(nbd "$1")" |
    jq -r '.[] | select(.type % 2 == 1) | "\(.offset)+\(.length)"'
}

step "start libvirtd and a guest (vda 64M, vdb 32M)"
t0=$SECONDS
lv_start "$T/lv"
echo "   libvirtd answered after $((SECONDS - t0)) s"
t0=$SECONDS
lv_define_guest vm1 "$T/vm1" vda:64M vdb:32M
echo "   guest running after $((SECONDS - t0)) s"
[ "$(lv_virsh domstate vm1)" = running ] || fail "vm1 is not running"

step "lv_write fails loudly on a qemu-io error or an unknown disk"
# in_subshell CMD...: runs CMD in a subshell, so its `fail` cannot end the test.
in_subshell() { ("$@"); }
expect_rc 1 'write failed' in_subshell lv_write vm1 vda 0x5a 100M 64k
expect_rc 1 'not found' in_subshell lv_write vm1 vdx 0x5a 0 64k

step "writes, ground truth, a checkpoint"
lv_write vm1 vda 0x11 0 4M
lv_write vm1 vda 0x12 60M 1M
lv_write vm1 vdb 0x21 1M 1M
ok lv_virsh checkpoint-create-as vm1 cp0
lv_truth vm1 "$T/t1"
[ "$(stat -c %s "$T/t1/vda.raw") $(stat -c %s "$T/t1/vdb.raw")" = "$((64 << 20)) $((32 << 20))" ] ||
  fail "ground truth sizes are wrong"
cmp -s <(head -c 4M "$T/t1/vda.raw") <(head -c 4M /dev/zero | tr '\0' '\021') ||
  fail "ground truth of vda lacks the write at 0"

step "full pull-mode backup with checkpoint cp1; a write during the job is not in the export"
backup_xml "" vda vdb >"$T/b1.xml"
checkpoint_xml cp1 vda vdb >"$T/cp1.xml"
ok lv_virsh backup-begin vm1 "$T/b1.xml" "$T/cp1.xml"
nbdinfo --list "$(nbd "")" >"$T/list.txt" || fail "nbdinfo --list failed"
[ "$(grep -c -E '^export="(vda|vdb)":' "$T/list.txt")" -eq 2 ] ||
  fail "exports vda and vdb not listed: $(cat "$T/list.txt")"
lv_write vm1 vda 0x13 8M 64k
same_as_truth "$T/t1" vda vdb
ok lv_virsh domjobabort vm1
lv_virsh checkpoint-list vm1 --name | grep -qx cp1 || fail "checkpoint cp1 not listed"

step "hot-plug vdc, grow vdb to 48M, write; incremental job from cp1 (vdc in full)"
lv_hotplug vm1 vdc "$T/vm1/vdc.qcow2" 16M
lv_resize vm1 vdb 48M
lv_write vm1 vda 0x14 1M 64k
lv_write vm1 vdb 0x22 40M 128k
lv_write vm1 vdc 0x31 2M 64k
lv_truth vm1 "$T/t2"
[ "$(stat -c %s "$T/t2/vdb.raw")" -eq $((48 << 20)) ] || fail "vdb did not grow to 48M"
[ -f "$T/t2/vdc.raw" ] || fail "no ground truth of the hot-plugged vdc"
backup_xml cp1 vda vdb vdc:full >"$T/b2.xml"
checkpoint_xml cp2 vda vdb vdc >"$T/cp2.xml"
ok lv_virsh backup-begin vm1 "$T/b2.xml" "$T/cp2.xml"
same_as_truth "$T/t2" vda vdb vdc
got=$(dirty vda | paste -sd' ')
[ "$got" = "$((1 << 20))+65536 $((8 << 20))+65536" ] || fail "vda dirty since cp1: '$got'"
got=$(dirty vdb | paste -sd' ')
echo "   vda dirty since cp1: $(dirty vda | paste -sd' ')"
echo "   vdb dirty since cp1 (grown 32M -> 48M): $got"
dirty vdb | grep -qx "$((40 << 20))+131072" || fail "vdb's write at 40M is not dirty: '$got'"
ok lv_virsh domjobabort vm1
lv_virsh checkpoint-list vm1 --name | grep -qx cp2 || fail "checkpoint cp2 not listed"

step "lv_stop leaves no process behind"
pids="$LV_PID $(cat "$LV_DIR/run/qemu/vm1.pid")"
lv_stop
for p in $pids; do
  [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null || echo gone)" != gone ] &&
    [ "$(awk '{print $3}' "/proc/$p/stat")" != Z ] && fail "pid $p still runs after lv_stop"
done
[ -z "$(lv_leftovers)" ] || fail "processes left in libvirtd's namespace: $(lv_leftovers)"
echo "PASS (${SECONDS} s)"
