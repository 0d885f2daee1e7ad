#!/usr/bin/env bash
# labels: tsan
# Issue 14: views of deep chains open from their view maps (chain/repo/
# view_map.h) and open their layers lazily. Through the mount, while a
# prune rewrites the chain under open files:
# - a file on a surviving checkpoint whose layers were not opened yet (the
#   mount's background loader held paused) reads on from the new files:
#   every byte as chainfs_make_repo --expect says;
# - a file on a dropped checkpoint whose layers the loader opened keeps
#   reading its old bytes to the end;
# - maps: the generator left the newest's; the prune removes it (the new
#   chain is too short to want one).
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"
: "${CHAINFS_MAKE_REPO:?set CHAINFS_MAKE_REPO to the chainfs_make_repo binary}"

R=$T/repo
M=$T/mnt
SHAPE=(--depth 70 --disk-size 2M --block-size 4K --changed 8 --seed 7)
export CHAINFS_FAILPOINT_DIR=$T/fp
mkdir -p "$CHAINFS_FAILPOINT_DIR"

step "a group of 70 checkpoints, with maps of the newest view and of c000064 (sequence 64)"
ok "$CHAINFS_MAKE_REPO" "$R" --groups 1 "${SHAPE[@]}" >/dev/null
[ "$(ls "$R/groups/vm0001/maps")" = "$(printf "c000064.vda.map\nc000070.vda.map")" ] || fail "maps: $(ls "$R/groups/vm0001/maps" 2>&1)"
for c in 64 70; do
  ok "$CHAINFS_MAKE_REPO" --expect "${SHAPE[@]}" --checkpoint $c --out "$T/want$c"
done

step "mounted; the loader opens c000064's layers, then is held before c000070's"
# A file's layers are loaded once its first read has its reply. The second
# file read pauses the loader: the first one's layers are open.
# No readahead of ours or the kernel's: a read opens only the layers it needs.
CHAINFS_FAILPOINTS="mount.before-load-layers=2*pause" mount_fg "$R" "$M" -o readahead_threads=0,direct_io
exec 7<"$M/vm0001/c000064/vda.raw"
exec 8<"$M/vm0001/c000070/vda.raw"
sleep 0.5
[ ! -e "$CHAINFS_FAILPOINT_DIR/mount.before-load-layers.paused" ] ||
  fail "the loader started before any read"
dd bs=64K count=1 iflag=fullblock status=none <&7 >"$T/head64"
cmp -s "$T/head64" <(head -c 65536 "$T/want64") || fail "c000064's first 64 KiB read wrong"
dd bs=64K count=1 iflag=fullblock status=none <&8 >"$T/head70"
cmp -s "$T/head70" <(head -c 65536 "$T/want70") || fail "c000070's first 64 KiB read wrong"
eventually test -e "$CHAINFS_FAILPOINT_DIR/mount.before-load-layers.paused" ||
  fail "the loader did not reach the second file"
# It yields to readers: one thread of the daemon, at nice 19 (the others at 0).
nices=$(ps -L -o nice= -p "$MOUNT_PID" | sort | uniq -c | awk '{print $1 "x" $2}' | xargs)
[[ " $nices " == *" 1x19 "* ]] || fail "want one daemon thread at nice 19 (the layer loader), got: $nices"

step "prune --keep-last 5 while both are open"
ok "$CHAINFS" prune "$R" vm0001 --keep-last 5 >/dev/null
[ ! -e "$R/groups/vm0001/checkpoints/c000064.json" ] || fail "c000064 survived the prune"

step "the survivor reads on from its new files; the dropped one from its old ones"
tail -c +65537 "$T/want70" >"$T/rest70"
cmp - "$T/rest70" <&8 || { tail -5 "$T/mount.log" >&2; fail "c000070 read wrong or failed after the prune"; }
tail -c +65537 "$T/want64" >"$T/rest64"
cmp - "$T/rest64" <&7 || { tail -5 "$T/mount.log" >&2; fail "the open file on dropped c000064 no longer reads its old bytes"; }
grep -q "its chain changed while open" "$T/mount.log" ||
  fail "the survivor's read was not served by the fresh view (mount log: $(tail -3 "$T/mount.log"))"
exec 7<&- 8<&-
rm -f "$CHAINFS_FAILPOINT_DIR/mount.before-load-layers.paused"

step "after the prune: the 5-deep chain wants no map (the stale one is gone); all reads right"
[ ! -e "$R/groups/vm0001/maps/c000070.vda.map" ] || fail "the stale map of c000070 was left after the prune"
cmp -s "$M/vm0001/c000070/vda.raw" "$T/want70" || fail "c000070 reads wrong after the prune"
ok "$CHAINFS" check "$R" >/dev/null
unmount_wait "$M"
