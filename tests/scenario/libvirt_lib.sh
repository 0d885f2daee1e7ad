# shellcheck shell=bash
# A private libvirtd running real QEMU (TCG) guests, for scenario tests
# (sourced after lib.sh, which provides on_exit, fail and $T; not a test).
#
#   source "$SRC/tests/scenario/lib.sh"
#   source "$SRC/tests/scenario/libvirt_lib.sh"
#   lv_start "$T/lv"                           # libvirtd; sets LV_URI
#   lv_define_guest vm1 "$T/vm1" vda:64M vdb:32M
#   lv_write vm1 vda 0x5a 1M 64k               # through QEMU's block layer
#   lv_truth vm1 "$T/truth"                    # $T/truth/vda.raw, vdb.raw
#   lv_virsh backup-begin vm1 backup.xml cp1.xml
#   lv_stop                                    # also registered with on_exit
#
# Privacy: a system-mode libvirtd reads its QEMU driver config from the fixed
# path /etc/libvirt/qemu.conf and keeps its state under /run/libvirt,
# /var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt (no option or
# environment variable moves them). So libvirtd runs in its own mount
# namespace (unshare -m) where DIR/{etc,run,lib,log,cache} are bind-mounted
# over those five directories; its client socket lives in DIR/sock, outside
# them, so virsh on the host reaches it. Nothing of the host's libvirt is
# read or written (only the empty mount points and the libvirt-qemu user are
# created if missing), and the mounts vanish with the namespace's last process.
# QEMU runs as root, unconfined, without cgroups or namespaces, logging to
# the plain file DIR/log/qemu/NAME.log (stdio_handler="file": no virtlogd).
# libvirt keeps each QEMU's pid in DIR/run/qemu/NAME.pid (lv_stop uses it).

LV_DIR=
LV_URI=
LV_PID=
LV_MNTNS=

# lv_virsh ARGS...: virsh against the private libvirtd.
lv_virsh() { virsh -q -c "$LV_URI" "$@"; }

# _lv_user: libvirt 9.0's QEMU driver refuses to load without the
# libvirt-qemu user and group it was built for, even when QEMU runs as root.
_lv_user() {
  getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
  getent passwd libvirt-qemu >/dev/null ||
    useradd --system -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
}

# lv_start DIR: starts a private libvirtd under DIR, waits until it answers;
# sets LV_DIR, LV_URI and LV_PID and registers lv_stop with on_exit. Probing
# QEMU's capabilities takes ~8 s; LV_CACHE=DIR (optional) keeps that probe's
# cache (libvirt's /var/cache/libvirt) across runs: then it starts in < 1 s.
lv_start() {
  local d=$1 cache=
  if [ -n "${LV_CACHE:-}" ]; then
    mkdir -p "$LV_CACHE"
    cache=$(cd "$LV_CACHE" && pwd)
  fi
  [ -z "$LV_PID" ] || fail "lv_start: a libvirtd (pid $LV_PID) is already running"
  mkdir -p "$d"/{etc,run,lib,log,cache,sock}
  d=$(cd "$d" && pwd)
  _lv_user
  mkdir -p /etc/libvirt /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt
  cat >"$d/etc/qemu.conf" <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
lock_manager = "nop"
EOF
  cat >"$d/libvirtd.conf" <<EOF
unix_sock_dir = "$d/sock"
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
listen_tls = 0
listen_tcp = 0
log_outputs = "3:file:$d/libvirtd.log"
EOF
  LV_DIR=$d
  LV_URI="qemu:///system?socket=$d/sock/libvirt-sock"
  export LV_DIR LV_URI
  # unshare and sh exec: $! is libvirtd's own pid.
  # shellcheck disable=SC2016  # expanded by the inner sh
  unshare --mount --propagation private -- sh -c '
    d=$1
    for p in etc:/etc/libvirt run:/run/libvirt lib:/var/lib/libvirt \
             log:/var/log/libvirt cache:/var/cache/libvirt; do
      mount --bind "$d/${p%%:*}" "${p#*:}" || exit 1
    done
    [ -z "$2" ] || mount --bind "$2" /var/cache/libvirt || exit 1
    exec libvirtd -f "$d/libvirtd.conf" -p "$d/libvirtd.pid"' sh "$d" "$cache" \
    >>"$d/libvirtd.out" 2>&1 </dev/null &
  LV_PID=$!
  LV_MNTNS=
  on_exit lv_stop
  local hostns
  hostns=$(readlink /proc/self/ns/mnt)
  for _ in $(seq 600); do
    # Its mount namespace, once unshare has made it (for lv_leftovers).
    [ -n "$LV_MNTNS" ] || LV_MNTNS=$(readlink "/proc/$LV_PID/ns/mnt" 2>/dev/null | grep -vxF "$hostns") || true
    [ -n "$LV_MNTNS" ] && virsh -q -c "$LV_URI" version >/dev/null 2>&1 && return 0
    kill -0 "$LV_PID" 2>/dev/null ||
      fail "libvirtd exited: $(tail -5 "$d/libvirtd.out" "$d/libvirtd.log" 2>/dev/null)"
    sleep 0.1
  done
  fail "libvirtd (pid $LV_PID) did not answer on $LV_URI in 60 s"
}

# _lv_is_qemu PID: PID is a live QEMU process (not a reused pid).
_lv_is_qemu() { tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -q qemu-system; }

# _lv_kill PID: SIGTERM, up to 10 s, then SIGKILL; waits for it to go away.
_lv_kill() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    # An exited child stays a zombie until reaped: reap it if it is ours.
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && { wait "$pid" 2>/dev/null || true; break; }
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] &&
    kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
}

# lv_leftovers: pids of live processes in libvirtd's mount namespace (libvirtd,
# QEMU, virtlogd, ...); empty once lv_stop is done.
lv_leftovers() {
  local p
  [ -n "$LV_MNTNS" ] || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$LV_MNTNS" ] && echo "${p#/proc/}"
  done
  return 0
}

# lv_stop: destroys every domain, stops libvirtd (by pid), kills any QEMU it
# started (by the pid files in LV_DIR/run/qemu), then any other process left
# in its mount namespace. Safe to call twice.
lv_stop() {
  local f pid qpids=() dom
  [ -n "$LV_DIR" ] || return 0
  for f in "$LV_DIR"/run/qemu/*.pid; do
    [ -f "$f" ] && pid=$(cat "$f") && _lv_is_qemu "$pid" && qpids+=("$pid")
  done
  if [ -n "$LV_PID" ] && kill -0 "$LV_PID" 2>/dev/null; then
    for dom in $(timeout 10 virsh -q -c "$LV_URI" list --name 2>/dev/null); do
      timeout 20 virsh -q -c "$LV_URI" destroy "$dom" >/dev/null 2>&1 || true
    done
  fi
  [ -n "$LV_PID" ] && _lv_kill "$LV_PID"
  for pid in "${qpids[@]}"; do
    _lv_is_qemu "$pid" && _lv_kill "$pid"
  done
  # Anything else libvirtd started (it may spawn helpers such as virtlogd).
  for pid in $(lv_leftovers); do
    _lv_kill "$pid"
  done
  LV_PID= LV_MNTNS=  # lv_start may run again on the same DIR (its state is kept)
}

# _lv_disk_xml NAME FILE: a qcow2 virtio disk with target NAME and alias ua-NAME.
_lv_disk_xml() {
  cat <<EOF
<disk type='file' device='disk'>
  <driver name='qemu' type='qcow2' discard='unmap'/>
  <source file='$2'/>
  <target dev='$1' bus='virtio'/>
  <alias name='ua-$1'/>
</disk>
EOF
}

# lv_define_guest NAME DIR DISK:SIZE...: defines and starts a TCG guest NAME
# whose images live in DIR: a read-only raw boot disk sda on virtio-scsi (its
# boot sector is cli; hlt; jmp back, so the CPU idles; libvirt leaves
# read-only disks out of checkpoints and backups by default) and a qcow2
# virtio disk per DISK:SIZE (e.g. vda:64M), file DIR/DISK.qcow2, alias
# ua-DISK; SIZE "existing" takes the qcow2 image already at DIR/DISK.qcow2
# (e.g. made with qemu-img convert) as it is. Returns once QEMU runs (about
# 0.5 s; the BIOS boots in ~1 s more).
lv_define_guest() {
  local name=$1 dir=$2 spec disk size disks=''
  shift 2
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  { printf '\xfa\xf4\xeb\xfd'; head -c 506 /dev/zero; printf '\x55\xaa'; } >"$dir/boot.img"
  # SeaBIOS cannot read a disk under one cylinder (1008 sectors): 1 MiB, sparse.
  truncate -s 1M "$dir/boot.img"
  for spec in "$@"; do
    disk=${spec%%:*} size=${spec#*:}
    if [ "$size" = existing ]; then
      [ -f "$dir/$disk.qcow2" ] || fail "lv_define_guest: no image $dir/$disk.qcow2"
    else
      qemu-img create -q -f qcow2 "$dir/$disk.qcow2" "$size" || fail "qemu-img create $dir/$disk.qcow2 $size"
    fi
    disks+=$(_lv_disk_xml "$disk" "$dir/$disk.qcow2")$'\n'
  done
  cat >"$dir/$name.xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='scsi' index='0' model='virtio-scsi'/>
    <controller type='usb' model='none'/>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$dir/boot.img'/>
      <target dev='sda' bus='scsi'/>
      <readonly/>
      <boot order='1'/>
    </disk>
$disks
    <memballoon model='none'/>
  </devices>
</domain>
EOF
  lv_virsh define "$dir/$name.xml" >/dev/null || fail "virsh define $name failed"
  lv_virsh start "$name" >/dev/null || fail "virsh start $name failed: $(tail -5 "$LV_DIR/log/qemu/$name.log" 2>/dev/null)"
}

# _lv_hmp DOMAIN CMD: runs an HMP command; its output on stdout.
_lv_hmp() { lv_virsh qemu-monitor-command "$1" --hmp "$2"; }

# _lv_qemu_io DOMAIN DISK CMD OK-REGEX: qemu-io CMD on DISK's device. HMP
# qemu-io prints its result on QEMU's stdout (the domain log), not as the
# monitor reply, and virsh exits 0 even when it fails: so the log's new lines
# must match OK-REGEX and show no error, and the reply must be empty.
_lv_qemu_io() {
  local log=$LV_DIR/log/qemu/$1.log n reply out
  n=$(stat -c %s "$log") || fail "no QEMU log for domain $1"
  if ! reply=$(_lv_hmp "$1" "qemu-io -d /machine/peripheral/ua-$2/virtio-backend \"$3\"" 2>&1) ||
    [ -n "$reply" ]; then
    fail "qemu-io '$3' on $1/$2: ${reply:-virsh failed}"
  fi
  out=$(tail -c +$((n + 1)) "$log")
  if grep -Eqi 'fail|error|invalid|not found|cannot|unknown' <<<"$out" || ! grep -Eq "$4" <<<"$out"; then
    fail "qemu-io '$3' on $1/$2: ${out:-(no output)}"
  fi
}

# lv_write DOMAIN DISK PATTERN OFFSET LEN: writes LEN bytes of PATTERN at
# OFFSET into DISK through the guest's device (dirty bitmaps see it).
lv_write() { _lv_qemu_io "$1" "$2" "write -P $3 $4 $5" '^wrote '; }

# lv_write_files DOMAIN DISK LIST: for each line "OFFSET LEN FILE" of LIST,
# writes the first LEN bytes of FILE (repeated if shorter) at OFFSET into
# DISK through the guest's device, like lv_write (qemu-io write -s), but up
# to 200 writes a virsh (its commands joined by ';'): ~2 ms a write instead
# of ~40. Fails unless every write is reported done and none failed.
lv_write_files() {
  local dom=$1 disk=$2 list=$3 log=$LV_DIR/log/qemu/$1.log n cmds=() i out got off len file
  n=$(stat -c %s "$log") || fail "no QEMU log for domain $dom"
  while read -r off len file; do
    [ -n "$off" ] || continue
    [ -r "$file" ] || fail "lv_write_files: cannot read $file"
    cmds+=("qemu-monitor-command $dom --hmp 'qemu-io -d /machine/peripheral/ua-$disk/virtio-backend \"write -s $file $off $len\"'")
  done <"$list"
  for ((i = 0; i < ${#cmds[@]}; i += 200)); do
    out=$(IFS=';' && lv_virsh "${cmds[*]:i:200}" 2>&1) || fail "lv_write_files on $dom/$disk: virsh failed: $out"
    [ -z "$(tr -d '[:space:]' <<<"$out")" ] || fail "lv_write_files on $dom/$disk: $out"
  done
  out=$(tail -c +$((n + 1)) "$log")
  got=$(grep -c '^wrote ' <<<"$out" || true)
  if grep -Eqi 'fail|error|invalid|not found|cannot|unknown' <<<"$out" || [ "$got" -ne "${#cmds[@]}" ]; then
    fail "lv_write_files on $dom/$disk: $got of ${#cmds[@]} writes done: $(grep -Ei -m3 'fail|error|invalid|not found|cannot|unknown' <<<"$out")"
  fi
}

# lv_vdisks DOMAIN: "TARGET FILE" of every vd* disk, one a line.
lv_vdisks() { lv_virsh domblklist "$1" | awk '$1 ~ /^vd/ {print $1, $2}'; }

# lv_truth DOMAIN OUTDIR: OUTDIR/DISK.raw for every vd* disk as QEMU sees it:
# flushed, then copied while the guest is paused.
lv_truth() {
  local dom=$1 out=$2 disks l rc=0
  mkdir -p "$out"
  mapfile -t disks < <(lv_vdisks "$dom")
  [ "${#disks[@]}" -gt 0 ] || fail "lv_truth: domain $dom has no vd* disk"
  for l in "${disks[@]}"; do
    _lv_qemu_io "$dom" "${l%% *}" flush ''
  done
  lv_virsh suspend "$dom" >/dev/null || fail "virsh suspend $dom failed"
  for l in "${disks[@]}"; do
    qemu-img convert -U -f qcow2 -O raw "${l#* }" "$out/${l%% *}.raw" || { rc=1; break; }
  done
  lv_virsh resume "$dom" >/dev/null || fail "virsh resume $dom failed"
  [ "$rc" -eq 0 ] || fail "qemu-img convert of $dom/$l failed"
}

# lv_hotplug DOMAIN DISK FILE [SIZE]: attaches FILE (a qcow2, created with
# SIZE, default 32M, if missing) live as virtio disk DISK, alias ua-DISK.
lv_hotplug() {
  local dom=$1 disk=$2 file=$3 size=${4:-32M}
  [ -e "$file" ] || qemu-img create -q -f qcow2 "$file" "$size" || fail "qemu-img create $file"
  file=$(cd "$(dirname "$file")" && pwd)/$(basename "$file")
  _lv_disk_xml "$disk" "$file" >"$file.xml"
  lv_virsh attach-device "$dom" "$file.xml" --live >/dev/null || fail "attach-device $disk to $dom failed"
}

# lv_resize DOMAIN DISK SIZE: grows DISK live to SIZE (bytes, or with a
# suffix K/M/G: powers of 1024).
lv_resize() {
  local b
  b=$(numfmt --from=iec "$3") || fail "lv_resize: bad size $3"
  lv_virsh blockresize "$1" "$2" "${b}B" >/dev/null || fail "blockresize $1 $2 $3 failed"
}
