#!/usr/bin/env bash
# Bad input is refused with a message that names what is wrong, exit code 1
# for a refused request and 2 for a command-line usage error, and nothing in
# the repository is modified. Damage on disk (newer format versions, a
# truncated, corrupted or missing delta file) is reported by check and makes
# export fail without leaving an output file.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"

R=$T/repo
A=$T/vda.raw
B=$T/vdb.raw

# refused CODE REGEX CMD...: CMD fails as expected and REPO is untouched.
refused() {
  repo_files "$R" >"$T/before"
  expect_rc "$@"
  repo_files "$R" >"$T/after"
  same_state "after refused '${*:3}'" "$T/before" "$T/after"
}

# flip_byte FILE OFFSET: inverts one byte in place.
flip_byte() {
  perl -e 'open(F, "+<", $ARGV[0]) or die "$ARGV[0]: $!"; seek(F, $ARGV[1], 0);
           read(F, $b, 1) == 1 or die "short"; seek(F, $ARGV[1], 0);
           print F chr(ord($b) ^ 0xff); close(F) or die' "$1" "$2"
}

# damaged_copy NAME: a fresh copy of the repository to damage.
damaged_copy() {
  rm -rf "${T:?}/$1"
  cp -a "$R" "$T/$1"
  echo "$T/$1"
}

delta_of() { jq -r --arg d "$3" '.disks[] | select(.name == $d) | .delta' "$1/groups/vm1/checkpoints/$2.json"; }

step "setup: vm1 with full c1 and incremental c2 of a 2 MiB random disk"
ok "$CHAINFS" init "$R"
random_file 1 $((2 << 20)) "$A"
ok "$CHAINFS" backup "$R" vm1 c1 --disk vda="$A"
random_file 2 $((64 << 10)) "$T/blk"
dd if="$T/blk" of="$A" bs=64K seek=7 conv=notrunc status=none
ok "$CHAINFS" backup "$R" vm1 c2 --disk vda="$A"
cp "$A" "$T/vda.c2"

step "names that could escape the repository or hide"
for bad in ../x .hidden a/b 'x y' '' ..; do
  refused 1 "group name '" "$CHAINFS" backup "$R" "$bad" c9 --disk vda="$A"
  grep -Fq -- "'$bad'" "$T/last.out" || fail "message does not quote the group name '$bad': $(cat "$T/last.out")"
  refused 1 "checkpoint name '" "$CHAINFS" backup "$R" vm1 "$bad" --disk vda="$A"
  # An empty disk name does not parse as NAME=SOURCE: a usage error.
  refused "$([ -n "$bad" ] && echo 1 || echo 2)" "disk" "$CHAINFS" backup "$R" vm1 c9 --disk "$bad=$A"
done
for bad in ../x .hidden a/b; do
  refused 1 "checkpoint" "$CHAINFS" backup "$R" vm1 c9 --disk vda="$A" --since "$bad"
  refused 1 "group" "$CHAINFS" export "$R" "$bad" c1 vda "$T/out.raw"
  refused 1 "checkpoint" "$CHAINFS" export "$R" vm1 "$bad" vda "$T/out.raw"
  refused 1 "disk" "$CHAINFS" export "$R" vm1 c1 "$bad" "$T/out.raw"
  refused 1 "group" "$CHAINFS" list "$R" "$bad"
  refused 1 "group" "$CHAINFS" check "$R" "$bad"
done
[ ! -e "$T/out.raw" ] || fail "a refused export left $T/out.raw"
[ ! -e "$T/x" ] || fail "a name with ../ created $T/x outside the repository"

step "an existing checkpoint name, an unknown --since base, a missing source"
refused 1 "c1.*already exists" "$CHAINFS" backup "$R" vm1 c1 --disk vda="$A"
refused 1 "since.*nosuch|nosuch.*(not found|no such)" "$CHAINFS" backup "$R" vm1 c9 --disk vda="$A" --since nosuch
refused 1 "$T/missing.raw" "$CHAINFS" backup "$R" vm1 c9 --disk vda="$T/missing.raw"
refused 1 "$T/missing.raw" "$CHAINFS" backup "$R" newgroup c1 --disk vda="$T/missing.raw"

step "malformed dirty maps"
echo 'this is not json' >"$T/notjson.json"
refused 1 "notjson.json.*JSON" "$CHAINFS" backup "$R" vm1 c9 --disk vda="$A" --dirty vda="$T/notjson.json"
echo '[{"offset": 0, "length": 65536, "type": 1}, {"offset": 65536, "type": 1}]' >"$T/nolength.json"
refused 1 "nolength.json.*entry 1.*length" "$CHAINFS" backup "$R" vm1 c9 --disk vda="$A" --dirty vda="$T/nolength.json"
refused 1 "$T/absent.json" "$CHAINFS" backup "$R" vm1 c9 --disk vda="$A" --dirty vda="$T/absent.json"
refused 2 "vdz" "$CHAINFS" backup "$R" vm1 c9 --disk vda="$A" --dirty vdz="$T/nolength.json"

step "a disk added later: --dirty refused, without it stored full and said so"
random_file 3 $((1 << 20)) "$B"
echo '[{"offset": 0, "length": 1048576, "type": 1, "description": "dirty"}]' >"$T/vdb.json"
refused 1 "vdb.*first backup must be full" "$CHAINFS" backup "$R" vm1 c3 \
  --disk vda="$A" --disk vdb="$B" --dirty vdb="$T/vdb.json"
ok "$CHAINFS" backup "$R" vm1 c3 --disk vda="$A" --disk vdb="$B"
grep -Eq "vdb: full.*new disk" "$T/last.out" || fail "backup output does not say vdb was stored full as a new disk: $(cat "$T/last.out")"
random_file 4 $((1 << 20)) "$T/vdc.raw"
ok "$CHAINFS" backup "$R" vm1 c4 --disk vda="$A" --disk vdb="$B" --disk vdc="$T/vdc.raw" --json
[ "$(jq -r '.disks[] | select(.name == "vdc") | "\(.kind) \(.added_later)"' "$T/last.out")" = "full true" ] ||
  fail "--json does not report vdc as full and added_later: $(cat "$T/last.out")"
[ "$(jq -r '.disks[] | select(.name == "vdb") | .kind' "$T/last.out")" = incremental ] ||
  fail "vdb in c4 should be incremental: $(cat "$T/last.out")"
for cpd in c3:vdb c4:vdb c4:vdc c3:vda; do
  ok "$CHAINFS" export "$R" vm1 "${cpd%:*}" "${cpd#*:}" "$T/out.raw"
  case ${cpd#*:} in vda) want=$A ;; vdb) want=$B ;; vdc) want=$T/vdc.raw ;; esac
  cmp "$T/out.raw" "$want" || fail "export of $cpd differs from its source"
done
rm -f "$T/out.raw"
expect_rc 0 '^OK' "$CHAINFS" check "$R" --deep

step "command-line usage errors exit 2"
refused 2 "required|REPO" "$CHAINFS" backup "$R"
refused 2 "NAME=SOURCE" "$CHAINFS" backup "$R" vm1 c9 --disk vda
refused 2 "no-such-option|not expected|extra" "$CHAINFS" list "$R" --no-such-option
refused 2 "block-size" "$CHAINFS" init "$T/r2" --block-size 3000
refused 2 "" "$CHAINFS" frobnicate
[ ! -e "$T/r2" ] || fail "init with a bad block size created $T/r2"

step "every subcommand's --help exits 0"
expect_rc 0 "Usage" "$CHAINFS" --help
for sub in init backup list export check; do
  expect_rc 0 "Usage.*$sub" "$CHAINFS" "$sub" --help
done

step "a newer repository format version (chainfs.json version 99)"
D=$(damaged_copy newer-repo)
jq '.version = 99' "$D/chainfs.json" >"$T/cfg" && cp "$T/cfg" "$D/chainfs.json"
for cmd in "list $D" "check $D" "export $D vm1 c1 vda $T/out.raw" "backup $D vm1 c9 --disk vda=$A"; do
  repo_files "$D" >"$T/before"
  # shellcheck disable=SC2086
  expect_rc 1 "chainfs.json.*version 99.*newer" "$CHAINFS" $cmd
  repo_files "$D" >"$T/after"
  same_state "$cmd on a newer repository" "$T/before" "$T/after"
done
[ ! -e "$T/out.raw" ] || fail "export from a newer repository left an output file"

step "a newer checkpoint manifest version"
D=$(damaged_copy newer-manifest)
jq '.version = 7' "$D/groups/vm1/checkpoints/c2.json" >"$T/m" && cp "$T/m" "$D/groups/vm1/checkpoints/c2.json"
expect_rc 1 "c2.json.*version 7.*newer" "$CHAINFS" list "$D"
expect_rc 1 "c2.json.*version 7.*newer" "$CHAINFS" check "$D"

step "a newer delta format version (header version patched, nothing else)"
D=$(damaged_copy newer-delta)
f=$(delta_of "$D" c1 vda)
printf '\x03\x00\x00\x00' | dd of="$D/groups/vm1/deltas/$f" bs=1 seek=8 conv=notrunc status=none
expect_rc 1 "$f.*version 3.*newer" "$CHAINFS" check "$D"
expect_rc 1 "$f.*version 3.*newer" "$CHAINFS" export "$D" vm1 c2 vda "$T/out.raw"
[ ! -e "$T/out.raw" ] || fail "export through a newer delta left an output file"

step "a truncated delta file"
D=$(damaged_copy truncated)
f=$(delta_of "$D" c2 vda)
truncate -s -100 "$D/groups/vm1/deltas/$f"
expect_rc 1 "PROBLEM vm1/c2/vda.*$f" "$CHAINFS" check "$D"
expect_rc 1 "$f" "$CHAINFS" export "$D" vm1 c2 vda "$T/out.raw"
[ ! -e "$T/out.raw" ] || fail "export through a truncated delta left an output file"
expect_rc 0 '^OK' "$CHAINFS" check "$D" vm1 c1
ok "$CHAINFS" export "$D" vm1 c1 vda "$T/out.raw"
rm -f "$T/out.raw"

step "a flipped byte in a stored block"
D=$(damaged_copy flipped)
f=$(delta_of "$D" c1 vda)
# c1 is 32 random (incompressible, so stored raw) blocks of 64 KiB from
# offset 64: byte 100 of disk block 5 sits at 64 + 5 * 65536 + 100.
flip_byte "$D/groups/vm1/deltas/$f" $((64 + 5 * 65536 + 100))
expect_rc 0 '^OK' "$CHAINFS" check "$D"
expect_rc 1 "PROBLEM vm1/c1/vda offset 327680: .*$f" "$CHAINFS" check "$D" --deep
expect_rc 1 "" "$CHAINFS" check "$D" --deep --json
[ "$(jq -r '.problems[0] | "\(.checkpoint) \(.disk) \(.offset) \(.file | test("'"$f"'"))"' "$T/last.out")" = "c1 vda 327680 true" ] ||
  fail "check --deep --json does not name checkpoint, disk, offset and file: $(cat "$T/last.out")"
expect_rc 1 "offset 327680.*c1.*$f|$f.*offset 327680" "$CHAINFS" export "$D" vm1 c2 vda "$T/out.raw"
left=$(find "$T" -maxdepth 1 -name 'out.raw*')
[ -z "$left" ] || fail "failed export left $left"

step "a missing delta file breaks the chains that reach it"
D=$(damaged_copy missing)
f=$(delta_of "$D" c1 vda)
rm "$D/groups/vm1/deltas/$f"
expect_rc 1 "PROBLEM vm1/c1/vda.*$f" "$CHAINFS" check "$D"
grep -q "PROBLEM vm1/c2/vda.*$f" "$T/last.out" || fail "check does not report c2's chain broken by missing $f: $(cat "$T/last.out")"
expect_rc 1 "$f" "$CHAINFS" export "$D" vm1 c3 vda "$T/out.raw"
[ ! -e "$T/out.raw" ] || fail "export through a missing delta left an output file"
ok "$CHAINFS" export "$D" vm1 c4 vdc "$T/out.raw"
cmp "$T/out.raw" "$T/vdc.raw" || fail "vdc of c4 (chain not reaching $f) does not export"
rm -f "$T/out.raw"

step "a manifest naming a delta file outside the repository"
D=$(damaged_copy escape)
jq '.disks[0].delta = "../../../../etc/hostname"' "$D/groups/vm1/checkpoints/c2.json" >"$T/m"
cp "$T/m" "$D/groups/vm1/checkpoints/c2.json"
expect_rc 1 "c2.json.*disks\[0\].*delta file" "$CHAINFS" check "$D"
expect_rc 1 "c2.json.*disks\[0\].*delta file" "$CHAINFS" export "$D" vm1 c2 vda "$T/out.raw"
[ ! -e "$T/out.raw" ] || fail "export through an escaping delta name left an output file"

step "issue 13: a FIFO, a character device, a directory as --disk source: refused quickly, lock free"
mkfifo "$T/fifo"
for src in "$T/fifo" /dev/null "$T"; do
  repo_files "$R" >"$T/before"
  expect_rc 1 "$src is (a FIFO|a character device|a directory).*regular file.*block device" \
    timeout 20 "$CHAINFS" backup "$R" vm1 c9 --disk vda="$src"
  repo_files "$R" >"$T/after"
  same_state "backup from $src" "$T/before" "$T/after"
done
refused 1 "dirty map $T/fifo is a FIFO" timeout 20 "$CHAINFS" backup "$R" vm1 c9 --disk vda="$A" --dirty vda="$T/fifo"
refused 1 "VM config $T/fifo is a FIFO" timeout 20 "$CHAINFS" backup "$R" vm1 c9 --disk vda="$A" --config "$T/fifo"
flock -n "$R/lock" true || fail "the writer lock is held after a refused FIFO source"

step "issue 13: --threads out of 1..256, malformed --compression and --block-size exit 2"
for n in 0 257 100000 -1 x; do
  refused 2 "threads" timeout 20 "$CHAINFS" backup "$R" vm1 c9 --disk vda="$A" --threads "$n"
done
for c in zstd:3x zstd: zstd:x zstd3 'zstd: 3' lz4; do
  expect_rc 2 "compression $c" "$CHAINFS" init "$T/r3" --compression "$c"
  [ ! -e "$T/r3" ] || fail "init --compression $c created $T/r3"
done
for b in 17592186044417M 64KK ' 64K' 64K1 ''; do
  expect_rc 2 "block-size" "$CHAINFS" init "$T/r3" --block-size "$b"
  [ ! -e "$T/r3" ] || fail "init --block-size '$b' created $T/r3"
done

step "issue 13: manifest numbers out of range, unknown keys, flipped sequence are refused naming file and field"
D=$(damaged_copy numbers)
m=$D/groups/vm1/checkpoints/c2.json
sed -i 's/"virtual_size": [0-9]*/"virtual_size": 184467440737095516160/' "$m"
expect_rc 1 "c2.json.*virtual_size" "$CHAINFS" check "$D"
expect_rc 1 "c2.json.*virtual_size" "$CHAINFS" export "$D" vm1 c2 vda "$T/out.raw"
D=$(damaged_copy unknown-key)
m=$D/groups/vm1/checkpoints/c2.json
jq '.confg = {"name": "vm1.xml", "content": "<domain/>"}' "$m" >"$T/m" && cp "$T/m" "$m"
expect_rc 1 "c2.json.*unknown field 'confg'" "$CHAINFS" check "$D"
D=$(damaged_copy sequence)
m=$D/groups/vm1/checkpoints/c1.json
jq '.sequence = 7' "$m" >"$T/m" && cp "$T/m" "$m"
expect_rc 1 "c2.json.*field 'parent'.*sequence 7" "$CHAINFS" check "$D"
repo_files "$D" >"$T/before"
expect_rc 1 "c1.json|c2.json" "$CHAINFS" prune "$D" vm1 --keep-last 1
expect_rc 1 "c1.json|c2.json" "$CHAINFS" backup "$D" vm1 c9 --disk vda="$A"
repo_files "$D" >"$T/after"
same_state "writers on a group with a refused manifest" "$T/before" "$T/after"

step "issue 13: a garbage manifest refuses its checkpoint only; the rest is served"
D=$(damaged_copy garbage)
echo 'garbage' >"$D/groups/vm1/checkpoints/c2.json"
expect_rc 1 "PROBLEM vm1/c2.*c2.json" "$CHAINFS" check "$D"
expect_rc 1 "c2.*refused" "$CHAINFS" list "$D" --json
"$CHAINFS" list "$D" --json 2>/dev/null >"$T/list.json" || true
[ "$(jq -r '.[0] | "\(.checkpoints | map(.name) | join(",")) \(.refused | map(.name) | join(","))"' "$T/list.json")" = "c1,c3,c4 c2" ] ||
  fail "list --json does not serve c1,c3,c4 beside the refused c2: $(cat "$T/list.json")"
ok "$CHAINFS" export "$D" vm1 c1 vda "$T/out.raw"
ok "$CHAINFS" export "$D" vm1 c4 vdc "$T/out.raw"
cmp "$T/out.raw" "$T/vdc.raw" || fail "vdc of c4 (chain not needing c2) does not export"
expect_rc 1 "c2.json" "$CHAINFS" export "$D" vm1 c3 vda "$T/out.raw.2"
[ ! -e "$T/out.raw.2" ] || fail "export through a refused manifest left an output file"
rm -f "$T/out.raw"

step "issue 13: with a manifest moved away, prune deletes nothing of its checkpoint"
D=$(damaged_copy moved)
mv "$D/groups/vm1/checkpoints/c2.json" "$T/c2.json.away"
c2_deltas=$(jq -r '.disks[].delta' "$T/c2.json.away")
"$CHAINFS" prune "$D" vm1 --keep-last 1 >"$T/last.out" 2>&1 || true
for f in $c2_deltas; do
  [ -e "$D/groups/vm1/deltas/$f" ] || fail "prune deleted $f of c2 whose manifest was away"
done
expect_rc 1 "not referenced by any manifest; left in place" "$CHAINFS" check "$D" vm1
mv "$T/c2.json.away" "$D/groups/vm1/checkpoints/c2.json"
expect_rc 0 '^OK' "$CHAINFS" check "$D" --deep

step "a second writer is refused while another holds the lock"
refused 1 "locked by another writer" flock "$R/lock" "$CHAINFS" backup "$R" vm1 c9 --disk vda="$A"

step "the original repository is still intact"
expect_rc 0 '^OK' "$CHAINFS" check "$R" --deep
ok "$CHAINFS" export "$R" vm1 c2 vda "$T/out.raw"
cmp "$T/out.raw" "$T/vda.c2" || fail "export of c2 from the untouched repository differs"

echo "PASS: bad_input"
