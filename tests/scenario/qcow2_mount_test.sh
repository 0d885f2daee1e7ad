#!/usr/bin/env bash
# chainfs reads qcow2 backing chains as they are: list, mount, export and
# check on a directory of qcow2 (and raw) images, on a single image, and on
# hand-damaged copies. Each chain is a group named after its top image, its
# checkpoints the chain's images from the base up; every view
# (GROUP/CHECKPOINT/disk.raw) must equal `qemu-img convert -O raw` of that
# image, and GROUP/CHECKPOINT/image.json must agree with `qemu-img info`
# (format-specific's compat, compression-type and extended-l2 either directly
# in format-specific or, as qemu-img has them, in format-specific.data).
#
# The images (all made by qemu-img / qemu-io, in $T/src):
#   img/      the main directory, one group per chain:
#             c512-0..4, c64-0..4, c2m-0..4   depth-5 chains with cluster sizes
#                 512, 64K and 2M: pattern writes (aligned and not), zero
#                 clusters (write -z), discards, a zero write over a cluster
#                 allocated by the same image
#             zlib0/1, zstd0/1   a compressed base (qemu-img convert -c,
#                 compression_type zlib with 2M clusters, zstd with 4K) of
#                 compressible and random data, an incremental on top with a
#                 compressed write too
#             x64-0..2, x2m-0..2   extended L2 (64K and 2M clusters): 4 KiB
#                 writes at odd offsets, so unallocated subclusters come from
#                 a backing file holding other data; zeroed subclusters
#             rawbase.raw, rawtop   a qcow2 over a raw base (-F raw)
#             v2-0/1     compat=0.10 (qcow2 version 2)
#             d000..d099   a chain of 100 (4K and 64K clusters alternating)
#             g0..g3     grown along the chain (qemu-img resize, writes past
#                        the old end)
#             share, left, right   two chains sharing a base (right is
#                        smaller than its backing)
#             extop      backed by ../outside/ext-base.qcow2 (followed)
#             fs0, fs1   ext4: a converted base and a top holding only the
#                        blocks that differ; loop-mounted through chainfs
#   img as SOURCE given as single image files (c64-4, c512-2, extop)
#   bad/      refused: corrupt bit (c1, and c2 above it), an unknown
#             incompatible feature bit (u1), LUKS encryption (e1, e2 above
#             it), legacy AES encryption (ea), a backing loop (lt -> l0 <-> l1);
#             a good chain ok0/ok1 still served
#   cycle/    a <-> b only (no top image), and a good image
#   dmg/      damaged data, still opened: an L2 entry pointing past the end
#             of the file (l2top), a file cut inside its last data cluster
#             (trunc): those ranges read EIO (O_DIRECT), the rest right;
#             check --deep exits 1 naming the files
# The source is never written: every file's sha256, size and mtime compared.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

for t in qemu-img qemu-io python3 jq mkfs.ext4 openssl; do
  command -v "$t" >/dev/null || fail "$t not installed (scripts/setup-deps)"
done

S=$T/src        # every source: nothing below may change
I=$S/img        # the main directory of images
REF=$T/ref      # REF/NAME.raw: qemu-img convert -O raw of image NAME (names unique)
INFO=$T/info    # INFO/NAME.json: qemu-img info --output=json of image NAME
W=$T/work       # scratch
M=$T/mnt
K=1024
MB=$((1 << 20))
mkdir -p "$I" "$S/outside" "$S/bad" "$S/cycle" "$S/dmg" "$REF" "$INFO" "$W" "$T/lm0" "$T/lm1"
on_exit "umount '$T/lm0'; umount '$T/lm1'; umount '$W/rw'"
random_file rand 8388608 "$W/rand"   # 8 MiB of incompressible bytes

# ---- helpers ----------------------------------------------------------------

# mk PATH BACKING BACKING_FMT OPTS [SIZE]: qemu-img create -f qcow2 (BACKING
# and OPTS may be empty).
mk() {
  local a=(-q -f qcow2)
  [ -n "$4" ] && a+=(-o "$4")
  [ -n "$2" ] && a+=(-b "$2" -F "$3")
  ok qemu-img create "${a[@]}" "$1" ${5:+"$5"}
}
# qio IMAGE CMD...: qemu-io, one -c per CMD; fails if any command fails.
qio() {
  local img=$1 a=() c
  shift
  for c in "$@"; do a+=(-c "$c"); done
  ok qemu-io -f qcow2 "${a[@]}" "$img"
}
# name IMAGE: the checkpoint name (file name, last extension stripped).
name() { local b=${1##*/}; echo "${b%.*}"; }
# info IMAGE: INFO/NAME.json; truth IMAGE: that and REF/NAME.raw.
info() {
  ok qemu-img info --output=json "$1"
  cp "$T/last.out" "$INFO/$(name "$1").json"
}
truth() {
  info "$1"
  ok qemu-img convert -O raw "$1" "$REF/$(name "$1").raw"
}
# has_zero IMAGE: qemu-img map shows a range of IMAGE itself reading as zeroes
# without data (a zero cluster or zeroed subclusters).
has_zero() {
  qemu-img map --output=json "$1" | jq -e 'any(.[]; .depth == 0 and .zero and (.data | not))' >/dev/null
}
# differ A B: two reference views differ (each write changed something).
differ() { cmp -s "$REF/$1.raw" "$REF/$2.raw" && fail "views $1 and $2 are the same: a write did nothing"; true; }

# Expected groups of each source: $T/want.LABEL holds "GROUP CP1 CP2 ..."
# (checkpoints from the base up).
want() {
  local label=$1
  shift
  echo "$*" >>"$T/want.$label"
}

# chain DIR PREFIX CLUSTER SIZE: PREFIX-0 .. PREFIX-4, one cluster size, each
# written by level_writes; group PREFIX-4.
level_writes() {
  local img=$1 k=$2 cs=$3 size=$4 p
  p=$(printf '0x%02x' $((k * 16 + k)))
  if [ "$k" = 0 ]; then
    qio "$img" "write -P 0x10 0 $((size / 4))" "write -s $W/rand $((size / 2)) $((size / 8))" \
      "write -P 0x1f $((size - cs)) $cs"
    return
  fi
  local c=(
    "write -P $p $((k * size / 16 + 1000)) $((2 * cs + 77))"  # unaligned: partial clusters copied from below
    "write -z $((size / 8 + k * size / 32)) $((2 * cs))"      # zero clusters over data
    "discard $((size / 2 + k * size / 16)) $((3 * cs))"         # over the random data
    "write -P $p $((size / 4 - cs / 2 + k * 4096)) $((cs + 4096))"
  )
  case $k in
    2) c+=("write -P 0x77 $((size * 3 / 4)) $((2 * cs))" "write -z $((size * 3 / 4)) $cs") ;;  # allocated, then zeroed
    3) c+=("write -P $p $((size - cs / 2)) $((cs / 2))") ;;                                # the last cluster
    4) c+=("write -z -u $((size / 4)) $((4 * cs))") ;;
  esac
  qio "$img" "${c[@]}"
}
chain() {
  local dir=$1 pre=$2 cs=$3 size=$4 k names=()
  mk "$dir/$pre-0.qcow2" "" "" "cluster_size=$cs" "$size"
  level_writes "$dir/$pre-0.qcow2" 0 "$cs" "$size"
  for k in 1 2 3 4; do
    mk "$dir/$pre-$k.qcow2" "$pre-$((k - 1)).qcow2" qcow2 "cluster_size=$cs"
    level_writes "$dir/$pre-$k.qcow2" "$k" "$cs" "$size"
  done
  for k in 0 1 2 3 4; do
    truth "$dir/$pre-$k.qcow2"
    names+=("$pre-$k")
    [ "$k" = 0 ] || differ "$pre-$((k - 1))" "$pre-$k"
    [ "$(jq '."cluster-size"' "$INFO/$pre-$k.json")" = "$cs" ] || fail "$pre-$k: cluster size is not $cs"
  done
  for k in 1 2 3 4; do has_zero "$dir/$pre-$k.qcow2" || fail "$pre-$k has no zero cluster"; done
  want img "$pre-4" "${names[@]}"
}

# tree_state DIR: every path below DIR with type, size and mtime, and every
# file's sha256.
tree_state() {
  (cd "$1" && find . -printf '%y %p %s %T@\n' | LC_ALL=C sort &&
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}

# info_equal JSON NAME LABEL: a view's image.json agrees with qemu-img info of
# image NAME (filename ends with the file name; format, virtual-size,
# cluster-size, backing-filename(-format) equal; format-specific compat,
# compression-type, extended-l2 equal for qcow2, directly in format-specific
# or, as qemu-img info has them, in format-specific.data; a compat 0.10
# image, which has no compression type field, may leave it out).
info_equal() {
  local base
  base=$(jq -r .filename "$INFO/$2.json")
  base=${base##*/}
  jq -e . "$1" >/dev/null 2>&1 || fail "$3: image.json is not JSON: $(head -c 500 "$1")"
  if ! jq -en --slurpfile c "$1" --slurpfile q "$INFO/$2.json" --arg base "$base" '
      def proj(fs): {format, "virtual-size", "cluster-size", "backing-filename", "backing-filename-format",
        fs: (if .format == "qcow2" then (fs | {compat, "extended-l2": (."extended-l2" // false),
               "compression-type": (."compression-type" // (if .compat == "0.10" then "zlib" else null end))})
             else null end)};
      ($c[0].filename | type == "string" and (. == $base or endswith("/" + $base))) and
      ($c[0] | proj(."format-specific" | (.data // .))) == ($q[0] | proj(."format-specific".data))' >/dev/null; then
    echo "    | image.json: $(jq -c . "$1")" >&2
    echo "    | qemu-img info: $(jq -c . "$INFO/$2.json")" >&2
    fail "$3: image.json does not agree with qemu-img info of $base"
  fi
}

# views_equal MNT LABEL [full|some]: every group of the source LABEL is a
# directory of its checkpoints and latest (-> the top); each checkpoint's
# disk.raw equals the reference and image.json agrees with qemu-img info.
# Groups of more than 10 checkpoints: only the base, the middle and the top
# are compared.
views_equal() {
  local m=$1 label=$2 g cps cp n top i sel
  while read -r g cps; do
    read -ra cp <<<"$cps"
    n=${#cp[@]}
    top=${cp[n - 1]}
    [ -d "$m/$g" ] || fail "$label: no group directory $g in the mount: $(ls "$m" | paste -sd' ')"
    [ "$(readlink "$m/$g/latest")" = "$top" ] ||
      fail "$label: $g/latest -> '$(readlink "$m/$g/latest")', want $top"
    [ "$(ls "$m/$g" | LC_ALL=C sort | paste -sd' ')" = "$(printf '%s\n' "${cp[@]}" latest | LC_ALL=C sort | paste -sd' ')" ] ||
      fail "$label: $g holds $(ls "$m/$g" | paste -sd' '), want ${cp[*]} latest"
    if [ "$n" -gt 10 ]; then sel=(0 $((n / 2)) $((n - 1))); else mapfile -t sel < <(seq 0 $((n - 1))); fi
    for i in "${sel[@]}"; do
      [ -f "$m/$g/${cp[i]}/disk.raw" ] || fail "$label: no $g/${cp[i]}/disk.raw: $(ls "$m/$g/${cp[i]}" 2>&1 | paste -sd' ')"
      cmp "$m/$g/${cp[i]}/disk.raw" "$REF/${cp[i]}.raw" ||
        fail "$label: mounted $g/${cp[i]}/disk.raw differs from qemu-img convert of ${cp[i]}"
      [ -f "$m/$g/${cp[i]}/image.json" ] || fail "$label: no $g/${cp[i]}/image.json"
      info_equal "$m/$g/${cp[i]}/image.json" "${cp[i]}" "$label: $g/${cp[i]}"
    done
  done <"$T/want.$label"
}

# list_equal SOURCE LABEL: list --json shows exactly LABEL's groups, each
# with its checkpoints in order, nothing refused, one disk "disk" of the
# image's virtual size.
list_equal() {
  local src=$1 label=$2 g cps want_groups got
  ok "$CHAINFS" list "$src" --json
  cp "$T/last.out" "$T/list.json"
  jq -e 'type == "array"' "$T/list.json" >/dev/null || fail "list --json $src: not a JSON array: $(head -c 500 "$T/list.json")"
  want_groups=$(cut -d' ' -f1 "$T/want.$label" | LC_ALL=C sort | paste -sd,)
  got=$(jq -r 'map(.group) | sort | join(",")' "$T/list.json")
  [ "$got" = "$want_groups" ] || fail "list $src: groups $got, want $want_groups"
  while read -r g cps; do
    got=$(jq -r --arg g "$g" '.[] | select(.group == $g) | .checkpoints | map(.name) | join(" ")' "$T/list.json")
    [ "$got" = "$cps" ] || fail "list $src: group $g has checkpoints '$got', want '$cps'"
    [ "$(jq -r --arg g "$g" '.[] | select(.group == $g) | .refused | length' "$T/list.json")" = 0 ] ||
      fail "list $src: $g has refused checkpoints: $(jq -c --arg g "$g" '.[] | select(.group == $g) | .refused' "$T/list.json")"
    for cp in $cps; do
      jq -e --arg g "$g" --arg c "$cp" --argjson size "$(jq '."virtual-size"' "$INFO/$cp.json")" \
        '.[] | select(.group == $g) | .checkpoints[] | select(.name == $c) |
         (.disks | length) == 1 and .disks[0].name == "disk" and .disks[0].virtual_size == $size' \
        "$T/list.json" >/dev/null ||
        fail "list $src: $g/$cp does not have one disk 'disk' of $(jq '."virtual-size"' "$INFO/$cp.json") bytes: $(jq -c --arg g "$g" --arg c "$cp" '.[] | select(.group == $g) | .checkpoints[] | select(.name == $c)' "$T/list.json")"
    done
  done <"$T/want.$label"
}

# export_equal SOURCE GROUP CP: export of CP's disk equals the reference.
export_equal() {
  rm -f "$W/export.raw"
  ok "$CHAINFS" export "$1" "$2" "$3" disk "$W/export.raw"
  cmp "$W/export.raw" "$REF/$3.raw" || fail "export $1 $2 $3 disk differs from qemu-img convert of $3"
  rm -f "$W/export.raw"
}

# scan VIEW TRUTH LO LEN: reads VIEW in 64K blocks with O_DIRECT; a block
# outside [LO, LO+LEN) must read TRUTH's bytes, a block inside must fail
# with EIO. Prints the number of EIO blocks.
cat >"$W/scan.py" <<'PY'
import errno, mmap, os, sys
BS = 65536
view, truth, lo, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
exp = open(truth, "rb").read()
fd = os.open(view, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, BS)
bad = 0
for b in range(len(exp) // BS):
    inside = lo < (b + 1) * BS and b * BS < lo + n
    try:
        got = os.preadv(fd, [buf], b * BS)
    except OSError as e:
        if e.errno != errno.EIO:
            sys.exit(f"block {b} (offset {b * BS}): {e}")
        if not inside:
            sys.exit(f"block {b} (offset {b * BS}): EIO outside the damaged range [{lo}, {lo + n})")
        bad += 1
        continue
    if inside:
        sys.exit(f"block {b} (offset {b * BS}) in the damaged range [{lo}, {lo + n}) read without error")
    if got != BS or buf[:] != exp[b * BS:(b + 1) * BS]:
        sys.exit(f"block {b} (offset {b * BS}): wrong bytes")
print(bad)
PY
scan() { python3 "$W/scan.py" "$@"; }

# dd_eio VIEW OFFSET LEN: an O_DIRECT dd of the range fails with EIO.
dd_eio() {
  local err
  err=$(dd if="$1" of=/dev/null bs=64K iflag=direct,skip_bytes,count_bytes skip="$2" count="$3" 2>&1) &&
    fail "dd iflag=direct of [$2, +$3) of $1 succeeded"
  grep -qi "input/output error" <<<"$err" || fail "dd of [$2, +$3) of $1: '$err', expected EIO"
}

# q2.py: reads and damages qcow2 metadata (docs: qemu docs/interop/qcow2.txt).
cat >"$W/q2.py" <<'PY'
# q2.py CMD IMAGE [ARGS]
#   clusters IMAGE          "GUEST HOST" for every allocated, uncompressed data
#                           cluster (standard, not extended, L2 entries)
#   metaend IMAGE           end of the last metadata cluster (header, L1 table,
#                           L2 tables, refcount table and blocks)
#   setl2 IMAGE GUEST HOST  GUEST's L2 entry now points at HOST (flags kept)
#   incompat IMAGE BIT      sets incompatible feature bit BIT (header bytes
#                           72..79, big endian)
import struct, sys
cmd, path = sys.argv[1], sys.argv[2]
f = open(path, "r+b" if cmd in ("setl2", "incompat") else "rb")
h = f.read(104)
magic, version, _, _, cbits, size, crypt, l1n, l1off, rtoff, rtcl = struct.unpack(">IIQIIQIIQQI", h[:60])
assert magic == 0x514649FB, f"{path}: not qcow2"
cs = 1 << cbits
incompat = struct.unpack(">Q", h[72:80])[0] if version >= 3 else 0
OFF = 0x00FFFFFFFFFFFE00
def l1():
    f.seek(l1off)
    return struct.unpack(f">{l1n}Q", f.read(8 * l1n))
def clusters():
    assert not incompat & 16, "extended L2 entries not handled"
    for i, e1 in enumerate(l1()):
        if not e1 & OFF:
            continue
        f.seek(e1 & OFF)
        for j, e2 in enumerate(struct.unpack(f">{cs // 8}Q", f.read(cs))):
            if e2 & (1 << 62) or e2 & 1 or not e2 & OFF:  # compressed, zero, unallocated
                continue
            yield (i * (cs // 8) + j) * cs, e2 & OFF, (e1 & OFF) + 8 * j
if cmd == "clusters":
    for g, hst, _ in clusters():
        print(g, hst)
elif cmd == "metaend":
    ends = [cs, l1off + 8 * l1n, rtoff + cs * rtcl]
    ends += [(e & OFF) + cs for e in l1() if e & OFF]
    f.seek(rtoff)
    ends += [e + cs for e in struct.unpack(f">{cs * rtcl // 8}Q", f.read(cs * rtcl)) if e]
    print(max(ends))
elif cmd == "setl2":
    guest, host = int(sys.argv[3]), int(sys.argv[4])
    for g, _, at in clusters():
        if g == guest:
            f.seek(at)
            e = struct.unpack(">Q", f.read(8))[0]
            f.seek(at)
            f.write(struct.pack(">Q", (e & ~OFF) | host))
            break
    else:
        sys.exit(f"{path}: guest offset {guest} is not an allocated data cluster")
elif cmd == "incompat":
    assert version >= 3, f"{path}: version {version} has no feature bits"
    f.seek(72)
    f.write(struct.pack(">Q", incompat | (1 << int(sys.argv[3]))))
else:
    sys.exit(f"unknown command {cmd}")
PY
q2() { python3 "$W/q2.py" "$@"; }

# ---- the images ---------------------------------------------------------------

step "case 1: chains of depth 5 with cluster sizes 512, 64K, 2M (writes, write -z, discard)"
chain "$I" c512 512 $((16 * MB))
chain "$I" c64 65536 $((16 * MB))
chain "$I" c2m $((2 * MB)) $((64 * MB))

step "case 2: compressed bases (zlib with 2M clusters, zstd with 4K) with an incremental on top"
truncate -s 32M "$W/z.raw"
dd if="$W/rand" of="$W/z.raw" bs=1M count=3 seek=5 conv=notrunc status=none
seq 1 300000 | dd of="$W/z.raw" bs=1M seek=12 conv=notrunc status=none
head -c $((3 * MB)) < <(yes 'chainfs reads compressed clusters') | dd of="$W/z.raw" bs=1M seek=20 conv=notrunc status=none
for z in zlib zstd; do
  if [ $z = zlib ]; then cs=$((2 * MB)); else cs=4096; fi
  ok qemu-img convert -c -O qcow2 -o "compression_type=$z,cluster_size=$cs" "$W/z.raw" "$I/${z}0.qcow2"
  mk "$I/${z}1.qcow2" "${z}0.qcow2" qcow2 "compression_type=$z,cluster_size=$cs"
  qio "$I/${z}1.qcow2" "write -c -P 0x71 $((14 * MB)) $cs" "write -P 0x72 $((5 * MB + 1000)) $((100 * K))" \
    "write -P 0x73 $((12 * MB + 3000)) 5000" "write -z $((20 * MB)) $((2 * cs))" "discard $((22 * MB)) $cs"
  truth "$I/${z}0.qcow2"
  truth "$I/${z}1.qcow2"
  differ "${z}0" "${z}1"
  [ "$(jq -r '."format-specific".data."compression-type"' "$INFO/${z}1.json")" = $z ] || fail "${z}1 is not $z"
  for n in 0 1; do  # qemu-img map gives no offset for compressed clusters
    qemu-img map --output=json "$I/$z$n.qcow2" | jq -e 'any(.[]; .depth == 0 and .data and (has("offset") | not))' >/dev/null ||
      fail "$z$n has no compressed cluster"
  done
  want img "${z}1" "${z}0" "${z}1"
done

step "case 3: extended L2 (64K and 2M clusters): 4 KiB writes at odd offsets over a backing file with other data"
mk "$I/x64-0.qcow2" "" "" "cluster_size=65536" 16M
qio "$I/x64-0.qcow2" "write -s $W/rand 0 $((4 * MB))" "write -P 0x81 $((4 * MB)) $((4 * MB))"
mk "$I/x64-1.qcow2" x64-0.qcow2 qcow2 "cluster_size=65536,extended_l2=on"
qio "$I/x64-1.qcow2" "write -P 0x82 $((5 * 64 * K + 5 * K)) 4096" "write -P 0x83 $((4 * MB + 7 * 64 * K + 30 * K + 512)) 4096" \
  "write -z $((9 * 64 * K + 8 * K)) $((8 * K))" "write -P 0x84 $((6 * MB - K)) 4096" \
  "discard $((11 * 64 * K + 4 * K)) $((4 * K))" "write -P 0x85 $((10 * MB + 3 * K)) 4096"
mk "$I/x64-2.qcow2" x64-1.qcow2 qcow2 "cluster_size=65536,extended_l2=on"
qio "$I/x64-2.qcow2" "write -P 0x86 $((5 * 64 * K + 7 * K)) 4096" "write -P 0x87 $((2 * MB + 33 * K)) 2048" \
  "write -z -u $((4 * MB + 7 * 64 * K + 32 * K)) $((2 * K))" "write -P 0x88 $((10 * MB + 60 * K)) $((8 * K))"
mk "$I/x2m-0.qcow2" "" "" "cluster_size=$((2 * MB))" 64M
qio "$I/x2m-0.qcow2" "write -s $W/rand 0 $((8 * MB))" "write -P 0x91 $((8 * MB)) $((8 * MB))"
mk "$I/x2m-1.qcow2" x2m-0.qcow2 qcow2 "cluster_size=$((2 * MB)),extended_l2=on"
qio "$I/x2m-1.qcow2" "write -P 0x92 $((2 * MB + 100 * K + 512)) 4096" "write -P 0x93 $((9 * MB + 3 * K)) 4096" \
  "write -z $((4 * MB + 128 * K)) $((128 * K))" "write -P 0x94 $((4 * MB - 2 * K)) 4096" \
  "write -P 0x95 $((40 * MB + 5 * K)) 4096" "discard $((10 * MB)) $((64 * K))"
mk "$I/x2m-2.qcow2" x2m-1.qcow2 qcow2 "cluster_size=$((2 * MB)),extended_l2=on"
qio "$I/x2m-2.qcow2" "write -P 0x96 $((2 * MB + 130 * K)) 4096" "write -P 0x97 $((40 * MB + 70 * K)) 4096" \
  "write -z $((9 * MB)) $((64 * K))" "write -P 0x98 $((63 * MB + 1000)) 4096"
for x in x64 x2m; do
  for n in 0 1 2; do truth "$I/$x-$n.qcow2"; done
  differ "$x-0" "$x-1"
  differ "$x-1" "$x-2"
  for n in 1 2; do
    [ "$(jq '."format-specific".data."extended-l2"' "$INFO/$x-$n.json")" = true ] || fail "$x-$n has no extended L2"
    has_zero "$I/$x-$n.qcow2" || fail "$x-$n has no zeroed subclusters"
  done
  want img "$x-2" "$x-0" "$x-1" "$x-2"
done
# A 4K write inside a 2M cluster allocated one subcluster, not the cluster:
# the rest of that cluster still reads from the backing file.
qemu-img map --output=json "$I/x2m-1.qcow2" | jq -e --argjson o $((2 * MB)) \
  'any(.[]; .start <= $o and $o < .start + .length and .depth == 1)' >/dev/null || fail "x2m-1: the start of cluster 1 is not read from the backing file"

step "case 4: a qcow2 over a raw base"
truncate -s 16M "$I/rawbase.raw"
dd if="$W/rand" of="$I/rawbase.raw" bs=1M count=2 seek=1 conv=notrunc status=none
head -c $((2 * MB)) < <(yes rawbase) | dd of="$I/rawbase.raw" bs=1M seek=8 conv=notrunc status=none
mk "$I/rawtop.qcow2" rawbase.raw raw ""
qio "$I/rawtop.qcow2" "write -P 0xa1 $((MB + 1000)) $((100 * K))" "write -z $((8 * MB)) $((64 * K))" \
  "discard $((2 * MB)) $((128 * K))" "write -P 0xa2 $((16 * MB - 4 * K)) 4096"
truth "$I/rawbase.raw"
truth "$I/rawtop.qcow2"
differ rawbase rawtop
[ "$(jq -r '."backing-filename-format"' "$INFO/rawtop.json")" = raw ] || fail "rawtop: backing format is not raw"
want img rawtop rawbase rawtop

step "case 5: compat=0.10 (qcow2 version 2)"
mk "$I/v2-0.qcow2" "" "" "compat=0.10" 16M
qio "$I/v2-0.qcow2" "write -P 0xb1 0 $((4 * MB))" "write -s $W/rand $((8 * MB)) $((MB))"
mk "$I/v2-1.qcow2" v2-0.qcow2 qcow2 "compat=0.10"
qio "$I/v2-1.qcow2" "write -P 0xb2 $((MB + 777)) $((200 * K))" "write -z $((2 * MB)) $((128 * K))" \
  "discard $((8 * MB)) $((128 * K))" "write -P 0xb3 $((12 * MB)) $((64 * K))"
truth "$I/v2-0.qcow2"
truth "$I/v2-1.qcow2"
differ v2-0 v2-1
[ "$(jq -r '."format-specific".data.compat' "$INFO/v2-1.json")" = 0.10 ] || fail "v2-1 is not compat 0.10"
want img v2-1 v2-0 v2-1

step "case 6: a chain of 100 (d000 .. d099, 16 MiB)"
t0=$SECONDS
names=()
for k in $(seq 0 99); do
  n=$(printf 'd%03d' "$k")
  if [ $((k % 2)) = 0 ]; then cs=4096; else cs=65536; fi
  if [ "$k" = 0 ]; then
    mk "$I/$n.qcow2" "" "" "cluster_size=$cs" 16M
    qio "$I/$n.qcow2" "write -P 0xc0 0 $((16 * MB))"
  else
    # (-u and the size: qemu-img would open the whole chain below)
    ok qemu-img create -q -f qcow2 -u -b "$(printf 'd%03d' $((k - 1))).qcow2" -F qcow2 -o "cluster_size=$cs" "$I/$n.qcow2" 16M
    c=("write -P $((k % 250 + 1)) $((k * 160 * K + k)) $((8 * K))")
    [ $((k % 10)) = 3 ] && c+=("write -z $((k * 160 * K + 64 * K)) $((64 * K))")
    [ $((k % 7)) = 5 ] && c+=("discard $(((99 - k) * 160 * K)) $((64 * K))")
    qio "$I/$n.qcow2" "${c[@]}"
  fi
  names+=("$n")
done
for n in "${names[@]}"; do info "$I/$n.qcow2"; done
for n in d000 d050 d099; do truth "$I/$n.qcow2"; done
differ d050 d099
[ "$(qemu-img info --backing-chain --output=json "$I/d099.qcow2" | jq length)" = 100 ] || fail "d099's chain is not 100 deep"
want img d099 "${names[@]}"
echo "   (made in $((SECONDS - t0)) s)"

step "case 7: an image grown along the chain; a top smaller than its backing file"
mk "$I/g0.qcow2" "" "" "" 16M
qio "$I/g0.qcow2" "write -P 0xd0 0 $((16 * MB))"
mk "$I/g1.qcow2" g0.qcow2 qcow2 ""
qio "$I/g1.qcow2" "write -P 0xd1 $((15 * MB)) $((MB))"
mk "$I/g2.qcow2" g1.qcow2 qcow2 ""
ok qemu-img resize -q "$I/g2.qcow2" +8M
qio "$I/g2.qcow2" "write -P 0xd2 $((15 * MB + 512 * K)) $((MB))" "write -P 0xd3 $((22 * MB)) $((MB))"
mk "$I/g3.qcow2" g2.qcow2 qcow2 ""
qio "$I/g3.qcow2" "write -P 0xd4 $((24 * MB - 100 * K)) $((100 * K))" "discard $((16 * MB + 512 * K)) $((64 * K))" \
  "write -z $((22 * MB)) $((64 * K))"
for n in 0 1 2 3; do truth "$I/g$n.qcow2"; done
[ "$(jq '."virtual-size"' "$INFO/g1.json")" = $((16 * MB)) ] && [ "$(jq '."virtual-size"' "$INFO/g3.json")" = $((24 * MB)) ] ||
  fail "g1/g3 sizes: $(jq '."virtual-size"' "$INFO/g1.json") $(jq '."virtual-size"' "$INFO/g3.json")"
differ g2 g3
want img g3 g0 g1 g2 g3

step "case 8: two chains sharing a base (left; right, 8 MiB over a 16 MiB base)"
mk "$I/share.qcow2" "" "" "" 16M
qio "$I/share.qcow2" "write -P 0xe0 0 $((16 * MB))"
mk "$I/left.qcow2" share.qcow2 qcow2 ""
qio "$I/left.qcow2" "write -P 0xe1 $((10 * MB)) $((MB))"
mk "$I/right.qcow2" share.qcow2 qcow2 "" 8M
qio "$I/right.qcow2" "write -P 0xe2 $((MB)) $((MB))" "write -P 0xe3 $((8 * MB - 4 * K)) 4096"
for n in share left right; do truth "$I/$n.qcow2"; done
[ "$(stat -c %s "$REF/right.raw")" = $((8 * MB)) ] || fail "right is not 8 MiB"
want img left share left
want img right share right

step "a backing file outside the directory: img/extop.qcow2 -> ../outside/ext-base.qcow2"
mk "$S/outside/ext-base.qcow2" "" "" "" 16M
qio "$S/outside/ext-base.qcow2" "write -P 0xf0 0 $((8 * MB))"
mk "$I/extop.qcow2" ../outside/ext-base.qcow2 qcow2 ""
qio "$I/extop.qcow2" "write -P 0xf1 $((4 * MB + 3)) 5000"
truth "$S/outside/ext-base.qcow2"
truth "$I/extop.qcow2"
[ "$(jq -r '."backing-filename"' "$INFO/extop.json")" = ../outside/ext-base.qcow2 ] || fail "extop's backing file is not relative"
want img extop ext-base extop

step "case 10: ext4 (a converted base; a top holding only the blocks that differ)"
mkdir -p "$W/tree/etc" "$W/tree/data" "$W/rw"
seq 1 50000 >"$W/tree/etc/numbers"
random_file fs-a 3000000 "$W/tree/data/blob"
echo "version 1" >"$W/tree/hello.txt"
truncate -s 64M "$W/fs0.raw"
mkfs.ext4 -q -F -d "$W/tree" "$W/fs0.raw"
cp --sparse=always "$W/fs0.raw" "$W/fs1.raw"
mount -o loop "$W/fs1.raw" "$W/rw"
echo "version 2" >"$W/rw/hello.txt"
random_file fs-b 1500000 "$W/rw/data/new"
rm "$W/rw/etc/numbers"
(cd "$W/rw" && sha256sum hello.txt data/blob data/new) >"$W/fs1.sums"
umount "$W/rw"
(cd "$W/tree" && sha256sum hello.txt data/blob etc/numbers) >"$W/fs0.sums"
ok qemu-img convert -O qcow2 "$W/fs0.raw" "$I/fs0.qcow2"
mk "$I/fs1.qcow2" fs0.qcow2 qcow2 ""
# The 64K blocks where fs1.raw differs from fs0.raw, as runs "OFFSET LENGTH".
python3 - "$W/fs0.raw" "$W/fs1.raw" >"$W/fs.runs" <<'PY'
import sys
a, b, BS = open(sys.argv[1], "rb"), open(sys.argv[2], "rb"), 65536
runs, off = [], 0
while True:
    x, y = a.read(BS), b.read(BS)
    if not x:
        break
    if x != y:
        if runs and runs[-1][0] + runs[-1][1] == off:
            runs[-1][1] += BS
        else:
            runs.append([off, BS])
    off += BS
for o, n in runs:
    print(o, n)
PY
c=()
i=0
while read -r o n; do
  dd if="$W/fs1.raw" of="$W/run.$i" bs=64K iflag=skip_bytes,count_bytes skip="$o" count="$n" status=none
  c+=("write -s $W/run.$i $o $n")
  i=$((i + 1))
done <"$W/fs.runs"
[ "$i" -gt 0 ] || fail "fs1.raw does not differ from fs0.raw"
qio "$I/fs1.qcow2" "${c[@]}"
rm -f "$W"/run.*
truth "$I/fs0.qcow2"
truth "$I/fs1.qcow2"
cmp "$REF/fs1.raw" "$W/fs1.raw" || fail "fs1.qcow2 does not read as fs1.raw"
[ "$(qemu-img map --output=json "$I/fs1.qcow2" | jq '[.[] | select(.depth == 0 and .data) | .length] | add')" -lt $((16 * MB)) ] ||
  fail "fs1.qcow2 holds more than the changed blocks"
rm -f "$W/fs0.raw" "$W/fs1.raw"
want img fs1 fs0 fs1

step "refused images in $S/bad: corrupt bit, unknown incompatible bit, LUKS and AES encryption, a backing loop"
B=$S/bad
mk "$B/ok0.qcow2" "" "" "" 16M
qio "$B/ok0.qcow2" "write -P 0x01 0 $((MB))"
mk "$B/ok1.qcow2" ok0.qcow2 qcow2 ""
qio "$B/ok1.qcow2" "write -P 0x02 $((MB / 2)) $((MB))"
for p in c u e; do
  mk "$B/${p}0.qcow2" "" "" "" 16M
  qio "$B/${p}0.qcow2" "write -P 0x03 0 $((2 * MB))"
done
mk "$B/c1.qcow2" c0.qcow2 qcow2 ""
qio "$B/c1.qcow2" "write -P 0x04 $((MB)) $((MB))"
mk "$B/c2.qcow2" c1.qcow2 qcow2 ""
qio "$B/c2.qcow2" "write -P 0x05 $((3 * MB)) $((MB))"
mk "$B/u1.qcow2" u0.qcow2 qcow2 ""
qio "$B/u1.qcow2" "write -P 0x06 $((MB)) $((MB))"
# (qemu-img times a first PBKDF2 round by CPU time and gives up when it
# measures 0 ms: sha512 makes that round long enough; and a retry)
for try in 1 2 3; do
  rm -f "$B/e1.qcow2"
  qemu-img create -q -f qcow2 -b e0.qcow2 -F qcow2 --object secret,id=s0,data=chainfs \
    -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10,encrypt.hash-alg=sha512 \
    "$B/e1.qcow2" >"$W/luks.log" 2>&1 && break
  [ "$try" = 3 ] && fail "qemu-img could not create a LUKS image: $(cat "$W/luks.log")"
done
ok qemu-io --object secret,id=s0,data=chainfs --image-opts \
  -c "write -P 0x07 $((MB)) $((MB))" "driver=qcow2,file.filename=$B/e1.qcow2,encrypt.key-secret=s0"
ok qemu-img create -q -f qcow2 -u -b e1.qcow2 -F qcow2 "$B/e2.qcow2" 16M
ok qemu-img create -q -f qcow2 --object secret,id=s0,data=chainfs -o encrypt.format=aes,encrypt.key-secret=s0 "$B/ea.qcow2" 16M
mk "$B/l0.qcow2" "" "" "" 16M
mk "$B/l1.qcow2" l0.qcow2 qcow2 ""
ok qemu-img rebase -u -b l1.qcow2 -F qcow2 "$B/l0.qcow2"
ok qemu-img create -q -f qcow2 -u -b l0.qcow2 -F qcow2 "$B/lt.qcow2" 16M
for n in ok0 ok1 c0 u0 e0; do truth "$B/$n.qcow2"; done
q2 incompat "$B/c1.qcow2" 1   # corrupt: bit 1, 0x02 in byte 79
q2 incompat "$B/u1.qcow2" 20  # no such feature
grep -q 'corrupt: true' <(qemu-img info "$B/c1.qcow2") || fail "c1 not marked corrupt"
expect_rc 1 'Unknown incompatible feature' qemu-img info "$B/u1.qcow2"
for n in e1 ea; do
  [ "$(qemu-img info --output=json "$B/$n.qcow2" | jq .encrypted)" = true ] || fail "$n not encrypted"
done
[ "$(od -An -tu4 --endian=big -j32 -N4 "$B/e1.qcow2" | tr -d ' ')" = 2 ] || fail "e1 is not LUKS (crypt_method 2)"
[ "$(od -An -tu4 --endian=big -j32 -N4 "$B/ea.qcow2" | tr -d ' ')" = 1 ] || fail "ea is not AES (crypt_method 1)"
expect_rc 1 'infinite loop' qemu-img info --backing-chain "$B/lt.qcow2"

step "$S/cycle: a <-> b (no top image) and a good image"
mk "$S/cycle/a.qcow2" "" "" "" 16M
mk "$S/cycle/b.qcow2" a.qcow2 qcow2 ""
ok qemu-img rebase -u -b b.qcow2 -F qcow2 "$S/cycle/a.qcow2"
mk "$S/cycle/good.qcow2" "" "" "" 4M
qio "$S/cycle/good.qcow2" "write -P 0x09 0 $((MB))"
truth "$S/cycle/good.qcow2"
expect_rc 1 'infinite loop' qemu-img info --backing-chain "$S/cycle/a.qcow2"

step "damaged data in $S/dmg: an L2 entry past the end of the file; a file cut in its last data cluster"
D=$S/dmg
mk "$D/l2base.qcow2" "" "" "" 16M
qio "$D/l2base.qcow2" "write -P 0x31 0 $((4 * MB))"
mk "$D/l2top.qcow2" l2base.qcow2 qcow2 ""
qio "$D/l2top.qcow2" "write -P 0x41 $((MB)) $((512 * K))" "write -P 0x42 $((3 * MB)) $((64 * K))"
mk "$D/trunc.qcow2" "" "" "" 16M
qio "$D/trunc.qcow2" "write -P 0x51 0 $((MB))" "write -s $W/rand $((4 * MB)) $((MB))" "write -P 0x52 $((8 * MB)) $((64 * K))"
mk "$D/fine.qcow2" "" "" "" 16M
qio "$D/fine.qcow2" "write -P 0x61 0 $((MB))"
for n in l2base l2top trunc fine; do truth "$D/$n.qcow2"; done
L2BAD=$((MB + 128 * K))   # a cluster of l2top's own data
grep -q "^$L2BAD " <(q2 clusters "$D/l2top.qcow2") || fail "l2top: no data cluster at $L2BAD: $(q2 clusters "$D/l2top.qcow2")"
q2 setl2 "$D/l2top.qcow2" "$L2BAD" $((1 << 40))
[ "$(q2 clusters "$D/l2top.qcow2" | awk -v g="$L2BAD" '$1 == g {print $2}')" = $((1 << 40)) ] || fail "l2top: the L2 entry was not rewritten"
# trunc: its last host cluster is the data cluster of guest offset 8M, after
# every metadata cluster; cut the file in the middle of it.
read -r tg th < <(q2 clusters "$D/trunc.qcow2" | sort -k2,2n | tail -1)
[ "$tg" = $((8 * MB)) ] || fail "trunc: the last data cluster is guest offset $tg, not 8M"
[ "$(stat -c %s "$D/trunc.qcow2")" = $((th + 64 * K)) ] || fail "trunc: the file does not end with the data cluster at $th"
[ "$(q2 metaend "$D/trunc.qcow2")" -le "$th" ] || fail "trunc: metadata after the last data cluster"
truncate -s $((th + 32 * K)) "$D/trunc.qcow2"
TRBAD=$tg

tree_state "$S" >"$T/state.before"

# ---- chainfs --------------------------------------------------------------------

step "list --json $I: $(wc -l <"$T/want.img") groups, checkpoints from the base up, one disk each"
list_equal "$I" img
ok "$CHAINFS" list "$I"   # the text form too
grep -q 'c2m-4' "$T/last.out" || fail "list $I (text) does not show group c2m-4"

step "mount $I: every view equals qemu-img convert; image.json; latest"
mount_fg "$I" "$M" -o log="$T/daemon.log"
[ "$(ls "$M" | LC_ALL=C sort | paste -sd,)" = "$(cut -d' ' -f1 "$T/want.img" | LC_ALL=C sort | paste -sd,)" ] ||
  fail "mount of $I shows $(ls "$M" | paste -sd,)"
views_equal "$M" img
# qcow2-specific image.json values, spelled out.
jq -e '.format == "qcow2" and ."cluster-size" == 2097152 and (."format-specific" | .data // .)."compression-type" == "zlib"' \
  "$M/zlib1/zlib0/image.json" >/dev/null || fail "zlib1/zlib0/image.json: $(cat "$M/zlib1/zlib0/image.json")"
jq -e '(."format-specific" | .data // .)."compression-type" == "zstd" and ."backing-filename" == "zstd0.qcow2" and ."backing-filename-format" == "qcow2"' \
  "$M/zstd1/zstd1/image.json" >/dev/null || fail "zstd1/zstd1/image.json: $(cat "$M/zstd1/zstd1/image.json")"
jq -e '(."format-specific" | .data // .) | ."extended-l2" == true and .compat == "1.1"' \
  "$M/x2m-2/x2m-1/image.json" >/dev/null || fail "x2m-2/x2m-1/image.json: $(cat "$M/x2m-2/x2m-1/image.json")"
jq -e '(."format-specific" | .data // .).compat == "0.10"' "$M/v2-1/v2-1/image.json" >/dev/null ||
  fail "v2-1/v2-1/image.json: $(cat "$M/v2-1/v2-1/image.json")"
jq -e '.format == "raw" and ."virtual-size" == 16777216' "$M/rawtop/rawbase/image.json" >/dev/null ||
  fail "rawtop/rawbase/image.json: $(cat "$M/rawtop/rawbase/image.json")"
jq -e '."backing-filename" == "rawbase.raw" and ."backing-filename-format" == "raw"' "$M/rawtop/rawtop/image.json" >/dev/null ||
  fail "rawtop/rawtop/image.json: $(cat "$M/rawtop/rawtop/image.json")"
jq -e '."backing-filename" == "../outside/ext-base.qcow2"' "$M/extop/extop/image.json" >/dev/null ||
  fail "extop/extop/image.json: $(cat "$M/extop/extop/image.json")"
# A view of the 100-deep chain read at random places (each read walks the chain).
python3 - "$M/d099/d060/disk.raw" "$M/d099/d099/disk.raw" "$REF/d099.raw" <<'PY' || fail "random reads of d099"
import os, random, sys
r = random.Random(7)
exp = open(sys.argv[3], "rb").read()
fd = os.open(sys.argv[2], os.O_RDONLY)
for _ in range(300):
    off, n = r.randrange(len(exp)), r.randrange(1, 70000)
    got = os.pread(fd, n, off)
    if got != exp[off:off + n]:
        sys.exit(f"d099: pread({n}, {off}) differs")
assert os.path.getsize(sys.argv[1]) == len(exp)
PY

step "ext4 through the mount: loop-mount fs1/fs1 and fs1/fs0 read-only, files as written"
mount -o ro,loop "$M/fs1/fs1/disk.raw" "$T/lm1" || fail "mount -o ro,loop $M/fs1/fs1/disk.raw failed"
mount -o ro,loop "$M/fs1/fs0/disk.raw" "$T/lm0" || fail "mount -o ro,loop $M/fs1/fs0/disk.raw failed"
(cd "$T/lm1" && sha256sum -c --quiet "$W/fs1.sums") || fail "files in fs1 (loop-mounted through chainfs) differ"
(cd "$T/lm0" && sha256sum -c --quiet "$W/fs0.sums") || fail "files in fs0 (loop-mounted through chainfs) differ"
[ ! -e "$T/lm1/etc/numbers" ] || fail "fs1 still has etc/numbers"
[ "$(cat "$T/lm0/hello.txt")" = "version 1" ] && [ "$(cat "$T/lm1/hello.txt")" = "version 2" ] || fail "hello.txt"
umount "$T/lm0"
umount "$T/lm1"
kill -0 "$MOUNT_PID" || fail "the daemon died"
unmount_wait "$M"

step "export (every group's base and top, and a middle checkpoint of d099)"
while read -r g cps; do
  read -ra cp <<<"$cps"
  export_equal "$I" "$g" "${cp[0]}"
  export_equal "$I" "$g" "${cp[${#cp[@]} - 1]}"
done <"$T/want.img"
export_equal "$I" d099 d050
expect_rc 1 . "$CHAINFS" export "$I" c64-4 nosuch disk "$W/export.raw"
expect_rc 1 . "$CHAINFS" export "$I" c64-4 c64-2 vda "$W/export.raw"

step "check, check --deep of $I"
ok "$CHAINFS" check "$I"
ok "$CHAINFS" check "$I" --deep

step "case 9: SOURCE is one image file (c64-4, c512-2 in the middle of its chain, extop)"
want one-c64 c64-4 c64-0 c64-1 c64-2 c64-3 c64-4
want one-c512 c512-2 c512-0 c512-1 c512-2
want one-extop extop ext-base extop
for one in c64-4:one-c64 c512-2:one-c512 extop:one-extop; do
  f=$I/${one%%:*}.qcow2
  label=${one#*:}
  list_equal "$f" "$label"
  mount_fg "$f" "$M" -o log="$T/daemon.log"
  [ "$(ls "$M" | paste -sd,)" = "${one%%:*}" ] || fail "mount of $f shows $(ls "$M" | paste -sd,)"
  views_equal "$M" "$label"
  unmount_wait "$M"
  read -r g cps <"$T/want.$label"
  export_equal "$f" "$g" "${cps%% *}"
  export_equal "$f" "$g" "$g"
  ok "$CHAINFS" check "$f" --deep
done

step "case 11: $B: list exits 1 naming each refused file and why; the rest served"
expect_rc 1 'c1\.qcow2' "$CHAINFS" list "$B" --json
cp "$T/last.out" "$W/bad.out"
"$CHAINFS" list "$B" --json 2>/dev/null >"$W/bad.json" || true
jq -e 'type == "array"' "$W/bad.json" >/dev/null || fail "list --json $B printed no JSON array: $(cat "$W/bad.out")"
for re in 'c1\.qcow2' corrupt 'u1\.qcow2' 'e1\.qcow2' encrypt 'ea\.qcow2' 'loop|cycle'; do
  grep -Eqi -- "$re" "$W/bad.out" || fail "list $B does not say /$re/: $(cat "$W/bad.out")"
done
# an image stands where a native checkpoint has its manifest: it is the image
# that is refused (a qcow2 source has no manifests to blame)
grep -q 'checkpoint c2/c1 not shown: its image is refused' "$W/bad.out" ||
  fail "list $B does not say c2/c1's image is refused: $(cat "$W/bad.out")"
if grep -qi manifest "$W/bad.out"; then fail "list $B blames a manifest: $(cat "$W/bad.out")"; fi
[ "$(jq -r 'map(.group) | sort | join(",")' "$W/bad.json")" = "c2,e2,ea,lt,ok1,u1" ] ||
  fail "list $B: groups $(jq -c 'map(.group)' "$W/bad.json"), want c2,e2,ea,lt,ok1,u1"
# group "served" "refused" (checkpoint names from the base up)
for exp in "ok1|ok0,ok1|" "c2|c0|c1,c2" "u1|u0|u1" "e2|e0|e1,e2" "ea||ea"; do
  IFS='|' read -r g s r <<<"$exp"
  got=$(jq -r --arg g "$g" '.[] | select(.group == $g) | "\(.checkpoints | map(.name) | join(",")) \(.refused | map(.name) | join(","))"' "$W/bad.json")
  [ "$got" = "$s $r" ] || fail "list $B: group $g: served/refused '$got', want '$s $r'"
done
[ "$(jq -r '.[] | select(.group == "lt") | .checkpoints | length' "$W/bad.json")" = 0 ] ||
  fail "list $B: lt (a backing loop) has served checkpoints: $(jq -c '.[] | select(.group == "lt")' "$W/bad.json")"
jq -e '.[] | select(.group == "lt") | .refused | map(.name) | index("lt")' "$W/bad.json" >/dev/null ||
  fail "list $B: lt is not refused: $(jq -c '.[] | select(.group == "lt")' "$W/bad.json")"
# each refusal names the file and the feature
for exp in 'c2 c1 c1\.qcow2 corrupt' 'u1 u1 u1\.qcow2 incompatible|unsupported|unknown|feature' \
  'e2 e1 e1\.qcow2 encrypt' 'ea ea ea\.qcow2 encrypt'; do
  read -r g c fre wre <<<"$exp"
  r=$(jq -r --arg g "$g" --arg c "$c" '.[] | select(.group == $g) | .refused[] | select(.name == $c) | "\(.file) \(.reason)"' "$W/bad.json")
  grep -Eq -- "$fre" <<<"$r" && grep -Eqi -- "$wre" <<<"$r" ||
    fail "list $B: the refusal of $g/$c ('$r') does not name /$fre/ and /$wre/"
done
# the loop: some image of it (l0 or l1, whichever closes it) refused as a loop
jq -e '.[] | select(.group == "lt") | any(.refused[]; (.file + " " + .reason) |
    test("l[01]\\.qcow2") and test("loop|cycle"; "i"))' "$W/bad.json" >/dev/null ||
  fail "list $B: no refusal in lt names l0/l1 and a loop: $(jq -c '.[] | select(.group == "lt")' "$W/bad.json")"
expect_rc 1 'c1\.qcow2' "$CHAINFS" check "$B"
export_equal "$B" ok1 ok1
export_equal "$B" c2 c0
export_equal "$B" e2 e0
export_equal "$B" u1 u0
for gc in c2:c2 c2:c1 u1:u1 e2:e1 ea:ea lt:lt; do
  rm -f "$W/export.raw"
  expect_rc 1 . "$CHAINFS" export "$B" "${gc%%:*}" "${gc#*:}" disk "$W/export.raw"
  if grep -qi manifest "$T/last.out"; then fail "export $B $gc blames a manifest: $(cat "$T/last.out")"; fi
done
# c2 is refused for its backing chain, which passes through c1's image
expect_rc 1 'c2/c2: its image is refused: .*c2\.qcow2: .*c1\.qcow2' "$CHAINFS" export "$B" c2 c2 disk "$W/export.raw"
expect_rc 1 'c2/c1: its image is refused' "$CHAINFS" export "$B" c2 c1 disk "$W/export.raw"
mount_fg "$B" "$M" -o log="$T/daemon.log"
for v in ok1/ok0 ok1/ok1 c2/c0 u1/u0 e2/e0; do
  cmp "$M/$v/disk.raw" "$REF/${v#*/}.raw" || fail "$B mounted: $v differs"
done
for v in c2/c1 c2/c2 u1/u1 e2/e1 e2/e2 ea/ea lt/lt lt/l0 lt/l1; do
  if [ -e "$M/$v/disk.raw" ] && cat "$M/$v/disk.raw" >/dev/null 2>&1; then fail "$B mounted: refused $v reads"; fi
done
[ "$(readlink "$M/ok1/latest")" = ok1 ] || fail "$B mounted: ok1/latest -> $(readlink "$M/ok1/latest")"
kill -0 "$MOUNT_PID" || fail "the daemon died"
unmount_wait "$M"

step "$S/cycle: a <-> b refused (list exits 1, in bounded time), good.qcow2 served"
expect_rc 1 '(a|b)\.qcow2' timeout 30 "$CHAINFS" list "$S/cycle" --json
grep -Eqi 'loop|cycle' "$T/last.out" || fail "list $S/cycle does not say loop: $(cat "$T/last.out")"
timeout 30 "$CHAINFS" list "$S/cycle" --json 2>/dev/null >"$W/cycle.json" || true
[ "$(jq -r '.[] | select(.group == "good") | .checkpoints | map(.name) | join(",")' "$W/cycle.json")" = good ] ||
  fail "list $S/cycle does not serve good: $(cat "$W/cycle.json")"
export_equal "$S/cycle" good good
mount_fg "$S/cycle" "$M" -o log="$T/daemon.log"
cmp "$M/good/good/disk.raw" "$REF/good.raw" || fail "$S/cycle mounted: good differs"
unmount_wait "$M"

step "case 11: $D: damaged data still opens; the damaged ranges read EIO, the rest right; check --deep exits 1"
want dmg fine fine
want dmg l2top l2base l2top
want dmg trunc trunc
list_equal "$D" dmg
mount_fg "$D" "$M" -o log="$T/daemon.log"
cmp "$M/fine/fine/disk.raw" "$REF/fine.raw" || fail "fine differs"
cmp "$M/l2top/l2base/disk.raw" "$REF/l2base.raw" || fail "l2top/l2base (undamaged) differs"
dd_eio "$M/l2top/l2top/disk.raw" "$L2BAD" $((64 * K))
n=$(scan "$M/l2top/l2top/disk.raw" "$REF/l2top.raw" "$L2BAD" $((64 * K))) || fail "l2top/l2top: $n"
[ "$n" = 1 ] || fail "l2top/l2top: $n EIO blocks, want 1"
dd_eio "$M/trunc/trunc/disk.raw" "$TRBAD" $((64 * K))
n=$(scan "$M/trunc/trunc/disk.raw" "$REF/trunc.raw" "$TRBAD" $((64 * K))) || fail "trunc/trunc: $n"
[ "$n" = 1 ] || fail "trunc/trunc: $n EIO blocks, want 1"
kill -0 "$MOUNT_PID" || fail "the daemon died"
unmount_wait "$M"
expect_rc 1 'l2top\.qcow2' "$CHAINFS" check "$D" --deep
grep -q 'trunc\.qcow2' "$T/last.out" || fail "check --deep $D does not name trunc.qcow2: $(cat "$T/last.out")"
expect_rc 1 'l2top\.qcow2' "$CHAINFS" check "$D" l2top --deep
expect_rc 1 'trunc\.qcow2' "$CHAINFS" check "$D" trunc --deep
ok "$CHAINFS" check "$D" fine --deep
export_equal "$D" l2top l2base
export_equal "$D" fine fine
expect_rc 1 . "$CHAINFS" export "$D" l2top l2top disk "$W/export.raw"
rm -f "$W/export.raw"
expect_rc 1 . "$CHAINFS" export "$D" trunc trunc disk "$W/export.raw"
rm -f "$W/export.raw"

step "the sources were never written"
tree_state "$S" >"$T/state.after"
diff -u "$T/state.before" "$T/state.after" >&2 || fail "chainfs changed $S"
echo PASS
