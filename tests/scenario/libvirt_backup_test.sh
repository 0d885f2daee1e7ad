#!/usr/bin/env bash
# Issue 16: chainfs backup --domain against a real libvirtd and a real QEMU
# (TCG) guest with two qcow2 disks, both started here (libvirt_lib.sh).
# Ground truth for a checkpoint: the guest flushed and paused, each disk
# copied with qemu-img convert -U (lv_truth), no write until the backup.
# Every view is compared byte for byte with it.
# Covers: full, incremental, --since, two disks, a hot-plugged disk, a disk
# grown with blockresize, --exclude, a backup killed with SIGKILL while its
# job runs (the next one holds every change), the job aborted from outside,
# a checkpoint deleted behind our back, another tool's checkpoint left
# alone, prune deleting libvirt checkpoints (also with libvirtd down),
# SIGTERM, a full repository disk, the VM shut down mid-backup, a shut-off
# domain, domain.xml in the mount, and the systemd unit's command line.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/libvirt_lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

R=$T/repo
export CHAINFS_FAILPOINT_DIR=$T/fp
# The jobs' sockets and scratch files go in a directory made under $TMPDIR.
export TMPDIR=$T/tmp
mkdir -p "$CHAINFS_FAILPOINT_DIR" "$TMPDIR"
no_work_dirs() {
  [ -z "$(ls -A "$TMPDIR")" ] || fail "$1: left in \$TMPDIR: $(ls "$TMPDIR")"
}

# backup CP [ARGS...]: chainfs backup --domain vm1 --json; its report in
# $T/last.out (ok leaves it there).
backup() {
  local cp=$1
  shift
  ok "$CHAINFS" backup "$R" vm1 "$cp" --domain vm1 --connect "$LV_URI" --json "$@"
}
disk_json() { jq -r '.disks[] | select(.name == "'"$1"'") | .'"$2" "$T/last.out"; }

# same_as_truth CP TRUTHDIR DISK...: each view equals the ground truth.
same_as_truth() {
  local cp=$1 dir=$2 d
  shift 2
  for d in "$@"; do
    ok "$CHAINFS" export "$R" vm1 "$cp" "$d" "$T/got.raw"
    cmp "$T/got.raw" "$dir/$d.raw" || fail "view vm1/$cp/$d differs from the guest's disk at $cp"
    rm -f "$T/got.raw"
  done
}

# lv_checkpoints: the domain's libvirt checkpoints, sorted, one a line.
lv_checkpoints() { lv_virsh checkpoint-list vm1 --name | sed '/^$/d' | sort; }
has_checkpoint() { lv_checkpoints | grep -qxF -- "$1"; }
# checkpoints: the group's chainfs checkpoints, comma-separated.
checkpoints() { "$CHAINFS" list "$R" vm1 --json | jq -r '.[0].checkpoints | map(.name) | join(",")'; }
job_active() { lv_virsh backup-dumpxml vm1 >/dev/null 2>&1; }  # a backup job exists

# held CMD...: runs CMD in the background, held at its first read batch
# (the job is running); its pid in $HELD, output in $T/held.out.
held() {
  rm -f "$CHAINFS_FAILPOINT_DIR"/*.paused
  CHAINFS_FAILPOINTS="backup.read-batch=1*pause" "$@" >"$T/held.out" 2>&1 &
  HELD=$!
  for _ in $(seq 600); do
    [ -e "$CHAINFS_FAILPOINT_DIR/backup.read-batch.paused" ] && return 0
    kill -0 "$HELD" 2>/dev/null || { cat "$T/held.out" >&2; fail "the backup ended before reading"; }
    sleep 0.1
  done
  fail "the backup did not reach its first read"
}

step "start libvirtd and guest vm1 (vda 64M, vdb 32M, read-only raw boot disk sda)"
lv_start "$T/lv"
lv_define_guest vm1 "$T/vm1" vda:64M vdb:32M
ok "$CHAINFS" init "$R"
# Another tool's checkpoint: never touched, never deleted by us.
ok lv_virsh checkpoint-create-as vm1 othertool-1 >/dev/null

step "c1: first backup is full, both disks; sda skipped as read-only"
lv_write vm1 vda 0x11 0 8M
lv_write vm1 vdb 0x22 4M 4M
lv_truth vm1 "$T/t1"
backup c1
[ "$(disk_json vda kind)" = full ] && [ "$(disk_json vdb kind)" = full ] || fail "c1 not full: $(cat "$T/last.out")"
jq -e '.skipped[] | select(.disk == "sda") | .why | test("read-only")' "$T/last.out" >/dev/null ||
  fail "sda not listed as skipped: $(cat "$T/last.out")"
[ "$(jq -r .libvirt_checkpoint "$T/last.out")" = "chainfs.vm1.c1" ] || fail "no libvirt checkpoint named: $(cat "$T/last.out")"
same_as_truth c1 "$T/t1" vda vdb
has_checkpoint chainfs.vm1.c1 || fail "libvirt has no checkpoint chainfs.vm1.c1: $(lv_checkpoints)"
job_active && fail "the backup job of c1 is still running"

step "c2: incremental reads exactly the blocks written since c1"
lv_write vm1 vda 0x5a 1M 64k
lv_write vm1 vdb 0x5b 30M 128k
lv_truth vm1 "$T/t2"
backup c2
[ "$(disk_json vda kind)" = incremental ] || fail "c2/vda not incremental: $(cat "$T/last.out")"
[ "$(disk_json vda blocks_read)" = 1 ] || fail "c2/vda read $(disk_json vda blocks_read) blocks, 1 written"
[ "$(disk_json vdb blocks_read)" = 2 ] || fail "c2/vdb read $(disk_json vdb blocks_read) blocks, 2 written"
same_as_truth c2 "$T/t2" vda vdb

step "c3: --since c1 is differential and holds the changes of c2 and after"
lv_write vm1 vda 0x33 40M 64k
lv_truth vm1 "$T/t3"
backup c3 --since c1
[ "$(disk_json vda kind)" = differential ] && [ "$(disk_json vda base)" = c1 ] || fail "c3 not differential on c1"
[ "$(disk_json vda blocks_read)" = 2 ] || fail "c3/vda read $(disk_json vda blocks_read) blocks, 2 changed since c1"
same_as_truth c3 "$T/t3" vda vdb

step "c4: vdc hot-plugged (taken full), vda grown to 96M, vdb excluded"
lv_hotplug vm1 vdc "$T/vm1/vdc.qcow2" 16M
lv_write vm1 vdc 0x44 0 1M
lv_resize vm1 vda 96M
lv_write vm1 vda 0x45 90M 64k
lv_truth vm1 "$T/t4"
backup c4 --exclude vdb
[ "$(disk_json vdc kind)" = full ] && [ "$(disk_json vdc added_later)" = true ] || fail "hot-plugged vdc not full: $(cat "$T/last.out")"
[ "$(disk_json vda kind)" = incremental ] && [ "$(disk_json vda virtual_size)" = $((96 << 20)) ] ||
  fail "grown vda not incremental at 96M: $(cat "$T/last.out")"
jq -e '.disks | map(.name) | index("vdb") == null' "$T/last.out" >/dev/null || fail "excluded vdb was backed up"
jq -e '.skipped[] | select(.disk == "vdb") | .why | test("exclude")' "$T/last.out" >/dev/null || fail "vdb not listed as excluded"
same_as_truth c4 "$T/t4" vda vdc
expect_rc 1 "no disk vdz" "$CHAINFS" backup "$R" vm1 cx --domain vm1 --connect "$LV_URI" --exclude vdz
expect_rc 1 "has no disk chainfs can back up" "$CHAINFS" backup "$R" vm1 cx --domain vm1 \
  --connect "$LV_URI" --exclude vda --exclude vdb --exclude vdc

step "c5: SIGKILL while the job runs; the next run ends the job, deletes its checkpoint, loses nothing"
lv_write vm1 vda 0x51 2M 64k                       # before the job
held "$CHAINFS" backup "$R" vm1 c5 --domain vm1 --connect "$LV_URI"
job_active || fail "no backup job while the backup is held"
lv_write vm1 vda 0x52 3M 64k                       # during the job
kill -9 "$HELD"
wait "$HELD" 2>/dev/null || true
rm -f "$CHAINFS_FAILPOINT_DIR"/*.paused
job_active || fail "the job of the killed backup did not stay active"
[ -n "$(ls -A "$TMPDIR")" ] || fail "the killed backup's job directory (socket, scratch files) is not there"
has_checkpoint chainfs.vm1.c5 || fail "the killed backup's libvirt checkpoint is not there to be repaired"
lv_write vm1 vda 0x53 4M 64k                       # after the kill
lv_write vm1 vdb 0x54 5M 64k                       # vdb: back after --exclude, so full
lv_truth vm1 "$T/t5"
backup c5
jq -e '.notes | map(select(test("ended the backup job"))) | length == 1' "$T/last.out" >/dev/null ||
  fail "the leftover job was not reported ended: $(cat "$T/last.out")"
[ "$(disk_json vda blocks_read)" = 3 ] || fail "c5/vda read $(disk_json vda blocks_read) blocks, 3 written since c4"
[ "$(disk_json vdb kind)" = full ] || fail "vdb, excluded from c4, not taken full in c5"
same_as_truth c5 "$T/t5" vda vdb vdc
job_active && fail "a job is left after c5"
no_work_dirs "after ending the killed backup's job"

step "SIGTERM mid-backup: the backup ends its job, deletes its checkpoint, and dies of the signal"
lv_write vm1 vda 0x55 5M 64k
held "$CHAINFS" backup "$R" vm1 term --domain vm1 --connect "$LV_URI"
kill -TERM "$HELD"
rm -f "$CHAINFS_FAILPOINT_DIR"/*.paused
RC=0
wait "$HELD" || RC=$?
[ "$RC" -eq 143 ] || fail "backup after SIGTERM exited $RC, expected 143: $(cat "$T/held.out")"
grep -q "stopped by signal 15" "$T/held.out" || fail "no 'stopped by signal' message: $(cat "$T/held.out")"
job_active && fail "the job of the stopped backup is still running"
has_checkpoint chainfs.vm1.term && fail "the stopped backup left libvirt checkpoint chainfs.vm1.term"
[ "$(checkpoints)" = c1,c2,c3,c4,c5 ] || fail "checkpoints after SIGTERM: $(checkpoints)"
no_work_dirs "after SIGTERM"

step "c6: the job aborted from outside: no checkpoint in either chain, the next run holds every change"
lv_write vm1 vdb 0x61 6M 64k
lv_write vm1 vda 0x62 7M 64k
held "$CHAINFS" backup "$R" vm1 c6 --domain vm1 --connect "$LV_URI"
ok lv_virsh domjobabort vm1 >/dev/null
rm -f "$CHAINFS_FAILPOINT_DIR"/*.paused
RC=0
wait "$HELD" || RC=$?
[ "$RC" -ne 0 ] || fail "the backup whose job was aborted succeeded: $(cat "$T/held.out")"
grep -q "vdb\|vda" "$T/held.out" || fail "the failure does not name the disk: $(cat "$T/held.out")"
[ "$(checkpoints)" = c1,c2,c3,c4,c5 ] ||
  fail "checkpoint c6 appeared although its job was aborted"
has_checkpoint chainfs.vm1.c6 && fail "the aborted run's libvirt checkpoint was left: $(lv_checkpoints)"
no_work_dirs "after the aborted job"
lv_truth vm1 "$T/t6"
backup c6
# vda: 5M (before the SIGTERM) and 7M; vdb: 6M.
[ "$(disk_json vdb blocks_read)" = 1 ] && [ "$(disk_json vda blocks_read)" = 2 ] ||
  fail "c6 read vda $(disk_json vda blocks_read), vdb $(disk_json vdb blocks_read) blocks; 2 and 1 written"
same_as_truth c6 "$T/t6" vda vdb vdc

step "the repository disk full mid-backup (another repository, same group): nothing left in either chain"
before=$(lv_checkpoints)
mkdir -p "$T/small"
ok mount -t tmpfs -o size=1M tmpfs "$T/small"
on_exit "umount -l $T/small"
ok "$CHAINFS" init "$T/small/r"
dd if=/dev/zero of="$T/small/filler" bs=4k status=none 2>/dev/null || true  # until ENOSPC
lv_write vm1 vda 0x65 12M 64k
expect_rc 1 "$T/small/r.*No space left on device|No space left on device" \
  "$CHAINFS" backup "$T/small/r" vm1 big --domain vm1 --connect "$LV_URI"
job_active && fail "the job of the failed backup is still running"
[ "$(lv_checkpoints)" = "$before" ] || fail "libvirt checkpoints changed: $(lv_checkpoints | tr '\n' ' ') (were $(echo $before))"
[ "$("$CHAINFS" list "$T/small/r" --json | jq -r '[.[].checkpoints[]] | length')" = 0 ] ||
  fail "a checkpoint appeared in the full repository"
umount "$T/small"

step "the VM shut down mid-backup: the backup fails, no checkpoint in either chain"
held "$CHAINFS" backup "$R" vm1 down --domain vm1 --connect "$LV_URI"
ok lv_virsh destroy --graceful vm1 >/dev/null
rm -f "$CHAINFS_FAILPOINT_DIR"/*.paused
RC=0
wait "$HELD" || RC=$?
[ "$RC" -ne 0 ] || fail "the backup of a domain shut down under it succeeded: $(cat "$T/held.out")"
[ "$(checkpoints)" = c1,c2,c3,c4,c5,c6 ] || fail "checkpoints after the failed run: $(checkpoints)"
ok lv_virsh start vm1 >/dev/null

step "c7: a libvirt checkpoint deleted behind our back: refused, naming --full; --full starts anew"
ok lv_virsh checkpoint-delete vm1 chainfs.vm1.c6 >/dev/null
expect_rc 1 "chainfs.vm1.c6.*--full" "$CHAINFS" backup "$R" vm1 c7 --domain vm1 --connect "$LV_URI"
# A look-alike of another's making in its place is not taken for ours.
ok lv_virsh checkpoint-create-as vm1 chainfs.vm1.c6 --description "made by hand" >/dev/null
expect_rc 1 "not made by chainfs.*made by hand.*--full" "$CHAINFS" backup "$R" vm1 c7 --domain vm1 --connect "$LV_URI"
has_checkpoint chainfs.vm1.c6 || fail "chainfs deleted a checkpoint it did not make"
ok lv_virsh checkpoint-delete vm1 chainfs.vm1.c6 >/dev/null
job_active && fail "a refused backup left a job"
has_checkpoint chainfs.vm1.c7 && fail "a refused backup left a libvirt checkpoint"
has_checkpoint chainfs.vm1.down && fail "the libvirt checkpoint of the run the shutdown failed is still there"
lv_write vm1 vda 0x71 8M 64k
lv_truth vm1 "$T/t7"
backup c7 --full
same_as_truth c7 "$T/t7" vda vdb  # vdc, plugged live only, went with the shutdown

step "prune --keep-last 2 deletes the dropped checkpoints' libvirt checkpoints, not another tool's"
ok "$CHAINFS" prune "$R" vm1 --keep-last 2 --json
cp "$T/last.out" "$T/prune.json"
# c6's libvirt checkpoint was deleted above, c1..c5's go now.
want=$(printf '%s\n' chainfs.vm1.c7 othertool-1 | sort)
[ "$(lv_checkpoints)" = "$want" ] || fail "libvirt checkpoints after prune: $(lv_checkpoints | tr '\n' ' '), want $(echo $want)"
jq -e '.libvirt_checkpoints_deleted | length == 5' "$T/prune.json" >/dev/null ||
  fail "prune did not report the libvirt checkpoints it deleted: $(cat "$T/prune.json")"

step "c8: the domain shut off: incremental from the images through c7's persistent bitmap"
ok lv_virsh destroy --graceful vm1 >/dev/null
ok qemu-io -f qcow2 -c 'write -P 0x81 9M 64k' "$T/vm1/vda.qcow2"
mkdir -p "$T/t8"
for d in vda vdb; do ok qemu-img convert -f qcow2 -O raw "$T/vm1/$d.qcow2" "$T/t8/$d.raw"; done
backup c8
[ "$(jq -r .offline "$T/last.out")" = true ] || fail "c8 not taken offline: $(cat "$T/last.out")"
[ "$(disk_json vda kind)" = incremental ] && [ "$(disk_json vda blocks_read)" = 1 ] ||
  fail "offline c8/vda: $(cat "$T/last.out")"
same_as_truth c8 "$T/t8" vda vdb
has_checkpoint chainfs.vm1.c8 && fail "libvirt made a checkpoint for an inactive domain?"

step "c9: running again; incremental on c8 through c7's libvirt checkpoint"
ok lv_virsh start vm1 >/dev/null
lv_write vm1 vdb 0x91 10M 64k
lv_truth vm1 "$T/t9"
backup c9
[ "$(disk_json vda kind)" = incremental ] && [ "$(disk_json vda base)" = c8 ] || fail "c9: $(cat "$T/last.out")"
[ "$(jq -r '.disks | map(.name) | join(",")' "$T/last.out")" = vda,vdb ] || fail "c9 disks: $(cat "$T/last.out")"
same_as_truth c9 "$T/t9" vda vdb

step "the mount shows domain.xml and domain-inactive.xml beside the disks"
M=$T/mnt
mount_fg "$R" "$M"
grep -q "<name>vm1</name>" "$M/vm1/c9/domain.xml" || fail "no domain.xml in vm1/c9"
grep -q "<name>vm1</name>" "$M/vm1/c9/domain-inactive.xml" || fail "no domain-inactive.xml in vm1/c9"
# vdc was plugged in live only: in c6's live definition, not its inactive one.
grep -q "dev='vdc'" "$M/vm1/c6/domain.xml" || fail "c6's domain.xml does not show the hot-plugged vdc"
grep -q "dev='vdc'" "$M/vm1/c6/domain-inactive.xml" && fail "c6's domain-inactive.xml shows the live-only vdc"
cmp "$M/vm1/c9/vda.raw" "$T/t9/vda.raw" || fail "mounted vm1/c9/vda.raw differs"
unmount_wait "$M"

step "the systemd unit's command line backs up the domain"
exec_start=$(sed -n 's/^ExecStart=//p' "$SRC/scripts/systemd/chainfs-backup@.service")
cmdline=$(sed -e 's/\$\$/$/g' -e 's/%%/%/g' -e 's/%i/vm1/g' -e "s|/usr/local/bin/chainfs|$CHAINFS|" <<<"$exec_start")
lv_write vm1 vda 0x99 11M 64k
CHAINFS_REPO=$R CHAINFS_CONNECT=$LV_URI CHAINFS_ARGS="--exclude vdb" eval "$cmdline" >"$T/unit.out" ||
  fail "the unit's ExecStart failed: $(cat "$T/unit.out")"
[[ "$(checkpoints)" =~ ^c6,c7,c8,c9,20[0-9]{6}T[0-9]{4}Z$ ]] || fail "the unit's run made no checkpoint: $(checkpoints)"
step "prune while libvirtd is down: a warning, never a failure; the next backup deletes the rest"
ok lv_virsh destroy --graceful vm1 >/dev/null
lv_stop
ok "$CHAINFS" prune "$R" vm1 --keep-last 1
grep -q "not deleted" "$T/last.err" || fail "prune with libvirt down gave no warning: $(cat "$T/last.out" "$T/last.err")"
last=$(checkpoints)
lv_start "$T/lv"
ok lv_virsh start vm1 >/dev/null
lv_write vm1 vda 0xa1 13M 64k
lv_truth vm1 "$T/t10"
backup c10
jq -e '[.notes[] | select(test("deleted libvirt checkpoint"))] | length == 2' "$T/last.out" >/dev/null ||
  fail "the backup after an unreachable prune did not delete the 2 left (c7, c9; c6 was deleted behind our back): $(cat "$T/last.out")"
want=$(printf '%s\n' "chainfs.vm1.$last" chainfs.vm1.c10 othertool-1 | sort)
[ "$(lv_checkpoints)" = "$want" ] || fail "libvirt checkpoints: $(lv_checkpoints | tr '\n' ' '), want $(echo $want)"
[ "$(disk_json vda blocks_read)" = 1 ] || fail "c10/vda read $(disk_json vda blocks_read) blocks, 1 written since $last"
same_as_truth c10 "$T/t10" vda vdb
echo "PASS"
