#!/usr/bin/env bash
# chainfs reads virtnbdbackup output directories as they are (no import
# needed): list, mount, export and check on a directory written by
# virtnbdbackup (-l full / -l inc, with and without -z lz4), and on a
# directory whose subdirectories are such directories; import into a chainfs
# repository; hand-damaged copies refused or read as EIO, never wrong bytes.
#
# A private libvirtd (libvirt_lib.sh) runs two TCG guests, vnbplain
# (virtnbdbackup without compression, into $T/vnb/plain) and vnblz4 (-z, into
# $T/vnb/lz4): two guests because each virtnbdbackup directory is one
# domain's checkpoint chain, and the parent $T/vnb then holds two groups. Each
# has two qcow2 disks, vda 64M and vdb 32M. Per guest: a full and four
# incrementals (virtnbdbackup.0 .. virtnbdbackup.4); between backups both
# disks are written (patterns, random data, zeroes; earlier blocks
# overwritten), except that the second incremental writes only vda (vdb's
# stream of virtnbdbackup.2 holds no data) and the fourth only vdb. Ground
# truth for a checkpoint: the guest's disks flushed and copied while paused
# (lv_truth) right after its backup, before the next write. virtnbdrestore
# (the tool's own restore) is checked against the same truth, and chainfs's
# views are compared with virtnbdrestore's output too.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/libvirt_lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

for t in virtnbdbackup virtnbdrestore qemu-img python3 jq; do
  command -v "$t" >/dev/null || fail "$t not installed (scripts/setup-deps)"
done

V=$T/vnb            # the two virtnbdbackup output directories, plain/ and lz4/
TRUTH=$T/truth      # TRUTH/KIND/virtnbdbackup.K/{vda,vdb}.raw
RESTORED=$T/restore # virtnbdrestore's images, as raw: RESTORED/KIND/virtnbdbackup.K/DISK.raw
LAST=4              # virtnbdbackup.0 (full) .. virtnbdbackup.LAST
KINDS="plain lz4"
declare -A DOM=([plain]=vnbplain [lz4]=vnblz4)
declare -A ZOPT=([plain]="" [lz4]="-z")
MB=$((1 << 20))
mkdir -p "$T/scratch" "$T/tmp"
export TMPDIR=$T/tmp

# ---- helpers ------------------------------------------------------------

# frames FILE: the frames of a virtnbdbackup stream, one a line:
# "KIND START LENGTH HEADER_OFFSET PAYLOAD_OFFSET PAYLOAD_LENGTH" (decimal;
# the payload of a compressed data frame is its lz4 frames, sizes from the
# stream's compression trailer). The format: libvirtnbdbackup/sparsestream.
cat >"$T/frames.py" <<'PY'
import json, os, sys
FRAME = 40  # b"%s %016x %016x\r\n"
def hdr(b):
    return b[:4].decode(), int(b[5:21], 16), int(b[22:38], 16)
path = sys.argv[1]
size = os.path.getsize(path)
with open(path, "rb") as f:
    kind, _, mlen = hdr(f.read(FRAME))
    assert kind == "meta", f"{path}: no meta frame"
    meta = json.loads(f.read(mlen))
    trailer = None
    if meta.get("compressed") not in (False, None) and meta.get("streamVersion") == 2:
        f.seek(size - FRAME)
        k, _, tlen = hdr(f.read(FRAME))
        assert k == "comp", f"{path}: no compression trailer"
        f.seek(size - FRAME - 2 - tlen)
        trailer = json.loads(f.read(tlen))
    f.seek(FRAME + mlen + 2)
    n = 0
    while True:
        at = f.tell()
        kind, start, length = hdr(f.read(FRAME))
        if kind == "data":
            plen = length
            if trailer is not None:
                t = trailer[n]
                plen = t if isinstance(t, int) else sum(list(t.values())[0])
            print("data", start, length, at, at + FRAME, plen)
            f.seek(at + FRAME + plen + 2)
            n += 1
        elif kind == "zero":
            print("zero", start, length, at, at + FRAME, 0)
        elif kind == "stop":
            print("stop", start, length, at, at + FRAME, 0)
            break
        else:
            sys.exit(f"{path}: unknown frame {kind!r} at {at}")
PY
frames() { python3 "$T/frames.py" "$1"; }

# data_size FILE: dataSize of a stream's meta header.
data_size() {
  local len
  len=$((16#$(head -c 40 "$1" | cut -c23-38)))
  tail -c +41 "$1" | head -c "$len" | jq -r .dataSize
}

# put DOM DISK SEED OFFSET LEN: LEN random bytes (from SEED) at OFFSET.
put() {
  random_file "$3" "$5" "$T/rand.$3"
  echo "$4 $5 $T/rand.$3" >"$T/rand.list"
  lv_write_files "$1" "$2" "$T/rand.list"
}
# zero DOM DISK OFFSET LEN: write zeroes (qemu-io write -z: a zero write, no data).
zero() { _lv_qemu_io "$1" "$2" "write -z $3 $4" '^wrote '; }

# backup KIND LEVEL K: virtnbdbackup into $V/KIND, then the ground truth of
# virtnbdbackup.K.
backup() {
  local kind=$1 level=$2 k=$3 dom=${DOM[$1]}
  # shellcheck disable=SC2086  # ZOPT is empty or -z
  ok virtnbdbackup -U "$LV_URI" -d "$dom" -l "$level" -o "$V/$kind" --noprogress \
    -S "$T/scratch" -f "$T/scratch/$dom.sock" ${ZOPT[$kind]}
  lv_truth "$dom" "$TRUTH/$kind/virtnbdbackup.$k"
}

# writes KIND ROUND: what the guest of KIND gets written before backup ROUND
# (the same on both guests, so the two chains hold the same bytes).
writes() {
  local d=${DOM[$1]}
  case $2 in
    0) # before the full
      lv_write "$d" vda 0x11 0 4M
      put "$d" vda 101 8M 1M
      lv_write "$d" vda 0x12 20M 1M
      lv_write "$d" vda 0x13 $((64 * MB - 64 * 1024)) 64k  # the last block
      lv_write "$d" vdb 0x21 0 2M
      put "$d" vdb 102 16M 512k
      lv_write "$d" vdb 0x22 31M 1M ;;
    1) # both disks; earlier blocks overwritten
      lv_write "$d" vda 0x31 1M 64k
      put "$d" vda 111 30M 256k
      lv_write "$d" vdb 0x41 $((16 * MB + 64 * 1024)) 128k
      lv_write "$d" vdb 0x42 8M 64k ;;
    2) # vda only: vdb's stream of this incremental holds no data
      lv_write "$d" vda 0x51 $((8 * MB + 128 * 1024)) 64k
      lv_write "$d" vda 0x52 40M 2M ;;
    3) # both; a block of round 1 overwritten again, zeroes over data
      lv_write "$d" vda 0x61 1M 64k
      lv_write "$d" vda 0x62 50M 64k
      zero "$d" vda 20M 512k
      lv_write "$d" vdb 0x71 0 64k
      put "$d" vdb 131 24M 1M ;;
    4) # vdb only: vda's stream of this incremental holds no data
      lv_write "$d" vdb 0x81 $((24 * MB + 256 * 1024)) 64k
      zero "$d" vdb 31M 256k ;;
  esac
}

# tree_state DIR: every path below DIR and every file's sha256 (mtimes too:
# virtnbdrestore orders a directory's files by mtime).
tree_state() {
  (cd "$1" && find . -printf '%y %p %s %T@\n' | LC_ALL=C sort &&
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}

# restore KIND OUTNAME [virtnbdrestore ARGS...]: virtnbdrestore of $V/KIND into
# $T/vr/KIND.OUTNAME (images named after the guest's, vda.qcow2; with
# --sequence after the disk, vdb), once its qemu-nbd has let go of them.
restore() {
  local kind=$1 name=$2 out=$T/vr/$1.$2
  shift 2
  ok virtnbdrestore -U "$LV_URI" -i "$V/$kind" -o "$out" --noprogress \
    -f "$T/scratch/restore.$kind.$name.sock" --logfile "$T/virtnbdrestore.log" "$@"
  # Its qemu-nbd --fork exits after it, holding the image's lock until then.
  for _ in $(seq 600); do
    pgrep -f "qemu-nbd.*restore\.$kind\.$name\.sock" >/dev/null || return 0
    sleep 0.05
  done
  fail "virtnbdrestore's qemu-nbd for $out still running after 30 s"
}
# to_raw IMAGE RAW: qemu-img convert of a restored image.
to_raw() {
  mkdir -p "$(dirname "$2")"
  ok qemu-img convert -O raw "$1" "$2"
}

cps() { seq 0 "$LAST" | sed 's/^/virtnbdbackup./' | paste -sd,; }

# ---- backups --------------------------------------------------------------

step "libvirtd; guests vnbplain and vnblz4, each vda 64M + vdb 32M (qcow2)"
lv_start "$T/lv"
for kind in $KINDS; do
  lv_define_guest "${DOM[$kind]}" "$T/guest-$kind" vda:64M vdb:32M
done

for kind in $KINDS; do
  step "$kind: virtnbdbackup ${ZOPT[$kind]:-(no -z)} full + $LAST incrementals into $V/$kind"
  writes "$kind" 0
  backup "$kind" full 0
  for k in $(seq 1 $LAST); do
    writes "$kind" "$k"
    backup "$kind" inc "$k"
  done
done

step "the directories hold what the test is about"
for kind in $KINDS; do
  D=$V/$kind
  for disk in vda vdb; do
    [ -f "$D/$disk.full.data" ] || fail "no $D/$disk.full.data: $(ls "$D")"
    for k in $(seq 1 $LAST); do
      [ -f "$D/$disk.inc.virtnbdbackup.$k.data" ] || fail "no $disk.inc.virtnbdbackup.$k.data in $D: $(ls "$D")"
    done
  done
  [ "$(data_size "$D/vdb.inc.virtnbdbackup.2.data")" = 0 ] || fail "$kind: vdb's stream of virtnbdbackup.2 holds data"
  [ "$(data_size "$D/vda.inc.virtnbdbackup.4.data")" = 0 ] || fail "$kind: vda's stream of virtnbdbackup.4 holds data"
  [ "$(data_size "$D/vda.inc.virtnbdbackup.3.data")" -gt 0 ] || fail "$kind: vda's stream of virtnbdbackup.3 is empty"
  # A full stream has zero frames (unallocated ranges); an incremental only
  # data frames (the dirty ranges; zeroes written are data frames of zeroes).
  grep -q '^zero ' <(frames "$D/vda.full.data") || fail "$kind: no zero frame in vda.full.data"
  grep -q '^data ' <(frames "$D/vda.inc.virtnbdbackup.3.data") || fail "$kind: no data frame in vda.inc.virtnbdbackup.3.data"
  meta_c=$(head -c 2000 "$D/vda.full.data" | tr -d '\r' | sed -n 's/.*"compressed": \([a-z0-9]*\).*/\1/p')
  if [ "$kind" = lz4 ]; then [ "$meta_c" != false ] || fail "lz4: vda.full.data not compressed"
  else [ "$meta_c" = false ] || fail "plain: vda.full.data compressed ($meta_c)"; fi
done
# Consecutive checkpoints differ where written (the truth is taken at the right time).
cmp -s "$TRUTH/plain/virtnbdbackup.1/vda.raw" "$TRUTH/plain/virtnbdbackup.2/vda.raw" && fail "truth: vda unchanged by round 2"
cmp -s "$TRUTH/plain/virtnbdbackup.1/vdb.raw" "$TRUTH/plain/virtnbdbackup.2/vdb.raw" || fail "truth: vdb changed in round 2"
for k in $(seq 0 $LAST); do
  for disk in vda vdb; do
    cmp "$TRUTH/plain/virtnbdbackup.$k/$disk.raw" "$TRUTH/lz4/virtnbdbackup.$k/$disk.raw" ||
      fail "truth: the two guests differ at virtnbdbackup.$k/$disk"
  done
done
lv_virsh destroy vnbplain >/dev/null
lv_virsh destroy vnblz4 >/dev/null
for kind in $KINDS; do tree_state "$V/$kind" >"$T/state.$kind"; done

step "virtnbdrestore gives the ground truth (newest, --until, --sequence)"
# In 1.9.15, --until virtnbdbackup.K stops only after applying a file whose
# checkpoint is K *and that holds data*: a disk whose stream of K is empty
# (vdb at virtnbdbackup.2) gets every later incremental applied too (it
# restores vdb as of virtnbdbackup.4). So --until is compared only where it
# is right (virtnbdbackup.1: both disks hold data; vda at virtnbdbackup.2),
# and vdb at virtnbdbackup.2 is restored with --sequence (the files given one
# by one), which has no such check.
for kind in $KINDS; do
  R=$RESTORED/$kind
  restore "$kind" latest
  restore "$kind" until1 --until virtnbdbackup.1
  restore "$kind" until2 --until virtnbdbackup.2 -d vda
  restore "$kind" seq2 --sequence vdb.full.data,vdb.inc.virtnbdbackup.1.data,vdb.inc.virtnbdbackup.2.data
  for disk in vda vdb; do
    to_raw "$T/vr/$kind.latest/$disk.qcow2" "$R/virtnbdbackup.$LAST/$disk.raw"
    to_raw "$T/vr/$kind.until1/$disk.qcow2" "$R/virtnbdbackup.1/$disk.raw"
  done
  to_raw "$T/vr/$kind.until2/vda.qcow2" "$R/virtnbdbackup.2/vda.raw"
  to_raw "$T/vr/$kind.seq2/vdb" "$R/virtnbdbackup.2/vdb.raw"
  rm -rf "$T/vr"
  for f in "$R"/*/*.raw; do
    rel=${f#"$R"/}
    cmp "$f" "$TRUTH/$kind/$rel" || fail "virtnbdrestore of $kind $rel differs from the ground truth"
  done
  tree_state "$V/$kind" | diff -u "$T/state.$kind" - >&2 || fail "virtnbdrestore changed $V/$kind"
done

# ---- chainfs on the directories as they are ------------------------------

# views_equal SOURCE MNT DOM KIND: every view in the mount equals the truth.
views_equal() {
  local src=$1 m=$2 dom=$3 kind=$4 k disk
  for k in $(seq 0 $LAST); do
    for disk in vda vdb; do
      cmp "$m/$dom/virtnbdbackup.$k/$disk.raw" "$TRUTH/$kind/virtnbdbackup.$k/$disk.raw" ||
        fail "$src: mounted $dom/virtnbdbackup.$k/$disk.raw differs from the ground truth"
    done
    [ -s "$m/$dom/virtnbdbackup.$k/domain.xml" ] || fail "$src: no domain.xml in $dom/virtnbdbackup.$k"
    grep -q "<name>$dom</name>" "$m/$dom/virtnbdbackup.$k/domain.xml" ||
      fail "$src: $dom/virtnbdbackup.$k/domain.xml does not name the domain"
  done
  [ "$(readlink "$m/$dom/latest")" = "virtnbdbackup.$LAST" ] ||
    fail "$src: $dom/latest -> '$(readlink "$m/$dom/latest")', want virtnbdbackup.$LAST"
  # The views virtnbdrestore restored, compared with chainfs's directly.
  for f in "$RESTORED/$kind"/*/*.raw; do
    cmp "$f" "$m/$dom/${f#"$RESTORED/$kind"/}" ||
      fail "$src: $dom/${f#"$RESTORED/$kind"/} differs from virtnbdrestore's"
  done
}

# on_source SOURCE KIND...: list, mount, export, check on SOURCE, which holds
# the groups (domains) of KIND...
on_source() {
  local src=$1 kind dom m=$T/mnt want
  shift
  ok "$CHAINFS" list "$src" --json
  cp "$T/last.out" "$T/list.json"
  want=$(for kind in "$@"; do echo "${DOM[$kind]}"; done | LC_ALL=C sort | paste -sd,)
  [ "$(jq -r 'map(.group) | sort | join(",")' "$T/list.json")" = "$want" ] ||
    fail "list $src: groups $(jq -c 'map(.group)' "$T/list.json"), want $want"
  for kind in "$@"; do
    dom=${DOM[$kind]}
    [ "$(jq -r --arg g "$dom" '.[] | select(.group == $g) | .checkpoints | map(.name) | join(",")' "$T/list.json")" = "$(cps)" ] ||
      fail "list $src: $dom's checkpoints are not $(cps): $(cat "$T/list.json")"
    [ "$(jq -r --arg g "$dom" '.[] | select(.group == $g) | .refused | length' "$T/list.json")" = 0 ] ||
      fail "list $src: $dom has refused checkpoints: $(cat "$T/list.json")"
    jq -e --arg g "$dom" '.[] | select(.group == $g) | .checkpoints | all(
        (.disks | map(.name) | sort) == ["vda", "vdb"] and
        (.disks[] | select(.name == "vda") | .virtual_size) == 67108864 and
        (.disks[] | select(.name == "vdb") | .virtual_size) == 33554432)' "$T/list.json" >/dev/null ||
      fail "list $src: $dom's checkpoints do not all have vda (64M) and vdb (32M): $(cat "$T/list.json")"
  done

  mount_fg "$src" "$m" -o log="$T/daemon.log"
  [ "$(ls "$m" | paste -sd,)" = "$want" ] || fail "mount of $src shows $(ls "$m" | paste -sd,), want $want"
  for kind in "$@"; do
    views_equal "$src" "$m" "${DOM[$kind]}" "$kind"
  done
  unmount_wait "$m"

  for kind in "$@"; do
    dom=${DOM[$kind]}
    for k in 0 2 $LAST; do
      for disk in vda vdb; do
        rm -f "$T/export.raw"
        ok "$CHAINFS" export "$src" "$dom" "virtnbdbackup.$k" "$disk" "$T/export.raw"
        cmp "$T/export.raw" "$TRUTH/$kind/virtnbdbackup.$k/$disk.raw" ||
          fail "export $src $dom virtnbdbackup.$k $disk differs from the ground truth"
      done
    done
    rm -f "$T/export.raw"
  done
  ok "$CHAINFS" check "$src"
  ok "$CHAINFS" check "$src" --deep
  for kind in "$@"; do
    tree_state "$V/$kind" | diff -u "$T/state.$kind" - >&2 || fail "chainfs changed $V/$kind (source $src)"
  done
}

for kind in $KINDS; do
  step "$kind: list, mount (every view, domain.xml, latest, vs virtnbdrestore), export, check, check --deep"
  on_source "$V/$kind" "$kind"
done
step "the parent directory $V (two virtnbdbackup directories: two groups)"
on_source "$V" plain lz4
[ "$(ls "$V" | paste -sd,)" = lz4,plain ] || fail "something new in $V: $(ls "$V")"

# ---- import ----------------------------------------------------------------

step "import $V/lz4 into a chainfs repository; every view equals the truth"
R=$T/repo
ok "$CHAINFS" init "$R"
ok "$CHAINFS" import "$V/lz4" "$R" --json
cp "$T/last.out" "$T/import.json"
jq -e . "$T/import.json" >/dev/null || fail "import --json printed no JSON: $(cat "$T/import.json")"
ok "$CHAINFS" list "$R" --json
[ "$(jq -r '.[] | select(.group == "vnblz4") | .checkpoints | map(.name) | join(",")' "$T/last.out")" = "$(cps)" ] ||
  fail "imported repository: $(cat "$T/last.out")"
for k in $(seq 0 $LAST); do
  for disk in vda vdb; do
    rm -f "$T/export.raw"
    ok "$CHAINFS" export "$R" vnblz4 "virtnbdbackup.$k" "$disk" "$T/export.raw"
    cmp "$T/export.raw" "$TRUTH/lz4/virtnbdbackup.$k/$disk.raw" ||
      fail "imported vnblz4/virtnbdbackup.$k/$disk differs from the ground truth"
  done
done
rm -f "$T/export.raw"
ok "$CHAINFS" check "$R" --deep

step "the same import again is a no-op success"
repo_files "$R" >"$T/repo.before"
ok "$CHAINFS" import "$V/lz4" "$R" --json
repo_files "$R" >"$T/repo.after"
same_state "a second import of $V/lz4" "$T/repo.before" "$T/repo.after"
if "$CHAINFS" import --help 2>&1 | grep -q -- '--group'; then
  step "import --group: $V/plain as group plaincopy"
  ok "$CHAINFS" import "$V/plain" "$R" --group plaincopy --json
  ok "$CHAINFS" export "$R" plaincopy "virtnbdbackup.$LAST" vdb "$T/export.raw"
  cmp "$T/export.raw" "$TRUTH/plain/virtnbdbackup.$LAST/vdb.raw" || fail "import --group: plaincopy's newest vdb differs"
  rm -f "$T/export.raw"
fi
ok "$CHAINFS" check "$R" --deep
for kind in $KINDS; do
  tree_state "$V/$kind" | diff -u "$T/state.$kind" - >&2 || fail "import changed $V/$kind"
done

# ---- damaged copies ----------------------------------------------------------

# refused_list DIR: "SERVED REFUSED" checkpoint names of DIR's only group from
# list --json (which exits 1 when any checkpoint is refused).
refused_list() {
  "$CHAINFS" list "$1" --json 2>/dev/null >"$T/list.json" || true
  jq -r '.[0] | "\(.checkpoints | map(.name) | join(",")) \(.refused | map(.name) | join(","))"' "$T/list.json"
}
# export_equals DIR DOM K DISK KIND
export_equals() {
  rm -f "$T/export.raw"
  ok "$CHAINFS" export "$1" "$2" "virtnbdbackup.$3" "$4" "$T/export.raw"
  cmp "$T/export.raw" "$TRUTH/$5/virtnbdbackup.$3/$4.raw" || fail "export $1 $2 virtnbdbackup.$3 $4 differs from the ground truth"
  rm -f "$T/export.raw"
}

step "damage (a): vda.inc.virtnbdbackup.2.data deleted: 0 and 1 served, 2..$LAST refused naming it"
D=$T/bad-missing
cp -a "$V/plain" "$D"
rm "$D/vda.inc.virtnbdbackup.2.data"
MISSING='vda\.inc\.virtnbdbackup\.2\.data'
expect_rc 1 "$MISSING" "$CHAINFS" list "$D" --json
grep -q 'checkpoint vnbplain/virtnbdbackup.2 not shown: its backup is refused' "$T/last.out" ||
  fail "list $D does not say virtnbdbackup.2's backup is refused: $(cat "$T/last.out")"
if grep -qi manifest "$T/last.out"; then fail "list $D blames a manifest: $(cat "$T/last.out")"; fi
[ "$(refused_list "$D")" = "virtnbdbackup.0,virtnbdbackup.1 virtnbdbackup.2,virtnbdbackup.3,virtnbdbackup.4" ] ||
  fail "list --json of $D: $(cat "$T/list.json")"
jq -e '.[0].refused[] | select(.name == "virtnbdbackup.2") | "\(.file) \(.reason)" | test("vda.inc.virtnbdbackup.2.data")' \
  "$T/list.json" >/dev/null || fail "list --json: the refusal of virtnbdbackup.2 does not name the missing file: $(cat "$T/list.json")"
expect_rc 1 "$MISSING" "$CHAINFS" check "$D"
for k in 2 3 4; do  # the checkpoint itself, not (only) the file name
  grep -Eq "virtnbdbackup\.$k([^.0-9]|$)" "$T/last.out" ||
    fail "check of $D does not name refused virtnbdbackup.$k: $(cat "$T/last.out")"
done
export_equals "$D" vnbplain 1 vda plain
export_equals "$D" vnbplain 1 vdb plain
# (naming the file, or the refused checkpoint its chain passes through)
expect_rc 1 "virtnbdbackup\.2" "$CHAINFS" export "$D" vnbplain virtnbdbackup.3 vda "$T/export.raw"
[ ! -e "$T/export.raw" ] || fail "a refused export left an output file"
M=$T/mnt
mount_fg "$D" "$M" -o log="$T/daemon.log"
for k in 0 1; do
  for disk in vda vdb; do
    cmp "$M/vnbplain/virtnbdbackup.$k/$disk.raw" "$TRUTH/plain/virtnbdbackup.$k/$disk.raw" ||
      fail "$D mounted: virtnbdbackup.$k/$disk.raw differs"
  done
done
for k in 2 3 4; do
  f=$M/vnbplain/virtnbdbackup.$k/vda.raw
  if [ -e "$f" ] && cat "$f" >/dev/null 2>&1; then fail "$D mounted: refused $f reads"; fi
done
unmount_wait "$M"

step "damage (b): the newest incremental with data, vdb.inc.virtnbdbackup.$LAST.data, cut inside a data frame"
D=$T/bad-trunc
cp -a "$V/plain" "$D"
F=$D/vdb.inc.virtnbdbackup.$LAST.data
read -r _ _ _ hoff poff plen < <(frames "$F" | awk '$1 == "data"' | tail -1)
[ -n "${plen:-}" ] && [ "$plen" -ge 4096 ] || fail "no data frame of 4K or more in $F: $(frames "$F")"
cut_at=$((poff + plen / 2))
truncate -s "$cut_at" "$F"
touch -r "$V/plain/${F##*/}" "$F"  # the mtime kept (virtnbdrestore orders files by it)
# An offset that says where: the frame's header, its payload, or the cut.
OFFS="($hoff|$poff|$cut_at|$(printf '0x0*%x|0x0*%x|0x0*%x' "$hoff" "$poff" "$cut_at"))"
expect_rc 1 "vdb\.inc\.virtnbdbackup\.$LAST\.data" "$CHAINFS" list "$D" --json
grep -Eqi "$OFFS" "$T/last.out" || fail "list of $D names no offset (one of $OFFS): $(cat "$T/last.out")"
[ "$(refused_list "$D")" = "$(seq 0 $((LAST - 1)) | sed 's/^/virtnbdbackup./' | paste -sd,) virtnbdbackup.$LAST" ] ||
  fail "list --json of $D: $(cat "$T/list.json")"
expect_rc 1 "vdb\.inc\.virtnbdbackup\.$LAST\.data" "$CHAINFS" check "$D"
grep -Eqi "$OFFS" "$T/last.out" || fail "check of $D names no offset (one of $OFFS): $(cat "$T/last.out")"
grep -Eq "virtnbdbackup\.$LAST([^.0-9]|$)" "$T/last.out" || fail "check of $D does not name virtnbdbackup.$LAST"
export_equals "$D" vnbplain $((LAST - 1)) vdb plain
expect_rc 1 "vdb\.inc\.virtnbdbackup\.$LAST\.data" "$CHAINFS" export "$D" vnbplain "virtnbdbackup.$LAST" vdb "$T/export.raw"

step "damage (c): a byte flipped inside a data frame of lz4 vda.full.data: check --deep fails, reads give EIO"
D=$T/bad-flip
cp -a "$V/lz4" "$D"
F=$D/vda.full.data
# The data frame with the largest payload (the random megabyte at 8M).
read -r _ fstart flen _ poff plen < <(frames "$F" | awk '$1 == "data"' | sort -k6,6n | tail -1)
[ "$plen" -gt 1000 ] || fail "no data frame over 1000 bytes in $F: $(frames "$F")"
perl -e 'open(F, "+<", $ARGV[0]) or die; seek(F, $ARGV[1], 0); read(F, $b, 1);
         seek(F, $ARGV[1], 0); print F chr(ord($b) ^ 0x55); close(F) or die' "$F" $((poff + 100))
touch -r "$V/lz4/${F##*/}" "$F"
cmp -s "$F" "$V/lz4/${F##*/}" && fail "the byte was not flipped"
expect_rc 1 "vda\.full\.data" "$CHAINFS" check "$D" --deep
# Block by block (64K, O_DIRECT): a block reads its true bytes or fails with
# EIO; EIO only inside the damaged frame's range [fstart, fstart + flen).
scan() {
  python3 - "$1" "$2" "$fstart" "$flen" <<'PY'
import errno, mmap, os, sys
BS = 65536
view, truth, lo, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
exp = open(truth, "rb").read()
fd = os.open(view, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, BS)
bad = []
for b in range(len(exp) // BS):
    try:
        got = os.preadv(fd, [buf], b * BS)
        if got != BS or buf[:] != exp[b * BS:(b + 1) * BS]:
            print(f"block {b} (offset {b * BS}): wrong bytes"); sys.exit(1)
    except OSError as e:
        if e.errno != errno.EIO:
            print(f"block {b}: {e}"); sys.exit(1)
        if not (lo <= b * BS < lo + n):
            print(f"block {b} (offset {b * BS}): EIO outside the damaged frame [{lo}, {lo + n})"); sys.exit(1)
        bad.append(b)
print(len(bad))
PY
}
mount_fg "$D" "$M" -o log="$T/daemon.log"
n=$(scan "$M/vnblz4/virtnbdbackup.0/vda.raw" "$TRUTH/lz4/virtnbdbackup.0/vda.raw") ||
  fail "reads of the damaged virtnbdbackup.0/vda: $n"
[ "$n" -ge 1 ] || fail "no read of the damaged range [$fstart, $((fstart + flen))) of virtnbdbackup.0/vda failed"
err=$(dd if="$M/vnblz4/virtnbdbackup.0/vda.raw" of=/dev/null bs=64K iflag=skip_bytes,count_bytes \
  skip="$fstart" count="$flen" 2>&1) && fail "dd of the damaged range of virtnbdbackup.0/vda succeeded"
grep -qi "input/output error" <<<"$err" || fail "dd of the damaged range: '$err', expected EIO"
n=$(scan "$M/vnblz4/virtnbdbackup.$LAST/vda.raw" "$TRUTH/lz4/virtnbdbackup.$LAST/vda.raw") ||
  fail "reads of virtnbdbackup.$LAST/vda (on the damaged full): $n"
cmp "$M/vnblz4/virtnbdbackup.0/vdb.raw" "$TRUTH/lz4/virtnbdbackup.0/vdb.raw" || fail "undamaged vdb does not read"
kill -0 "$MOUNT_PID" || fail "the daemon died"
unmount_wait "$M"
for kind in $KINDS; do
  tree_state "$V/$kind" | diff -u "$T/state.$kind" - >&2 || fail "$V/$kind changed"
done
echo PASS
