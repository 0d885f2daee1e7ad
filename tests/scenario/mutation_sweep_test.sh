#!/usr/bin/env bash
# Mutation sweep (issue 13): a small two-disk, five-checkpoint repository is
# damaged in many ways, each on a fresh copy, and after each damage
#   chainfs check --deep, chainfs export of every view, chainfs list --json
# run (30 s timeout each). Every mutation gets the worst outcome of its
# commands:
#   clean    every command succeeded and every view read its recorded bytes
#   error    a command refused with a non-zero exit and a message
#   WRONG    an export exited 0 with bytes other than the view's recorded ones
#   CRASH    a command died of a signal
#   HANG     a command ran into the timeout
# The counts per class (and per kind of mutation) are printed; any WRONG,
# CRASH or HANG fails the test, each listed with its mutation.
#
# Mutations: byte flips (every header and footer byte of two delta files,
# every index byte of one, every Nth index byte and a sample of data bytes of
# the rest), truncations, zero-filled ranges, appended garbage, swapped and
# duplicated delta files, manifest edits (delta pointed at another
# checkpoint's, base changed or dropped, kind changed, sequence digits
# flipped, misspelled keys, sizes, garbage), manifest byte flips and
# repository config edits.
#
# CHAINFS_MUTATIONS=N   run N mutations (default 400: every structural one
#                       plus an even sample of the byte flips); "all" for all
# CHAINFS_SWEEP_SECONDS stop starting new mutations after this (default 170;
#                       the list is shuffled, reproducibly, so a cut still
#                       samples every kind)
# CHAINFS_SWEEP_ONLY=RE only the mutations whose line matches RE ("^swap")
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"

R=$T/repo
W=$T/work
G=vm1
TIMEOUT=30
WANT=${CHAINFS_MUTATIONS:-400}
BUDGET=${CHAINFS_SWEEP_SECONDS:-170}
CPS=(c1 c2 c3 c4 c5)
DISKS=(vda vdb)

# write_at FILE BLOCK SEED: one 4 KiB block of reproducible random bytes.
write_at() {
  random_file "$3" 4096 "$T/blk"
  dd if="$T/blk" of="$1" bs=4096 seek="$2" conv=notrunc status=none
}

step "setup: vm1 with vda (512 KiB) and vdb (256 KiB), c1 full, c2..c4 incremental, c5 differential since c2"
ok "$CHAINFS" init "$R" --block-size 4096
random_file 1 $((512 << 10)) "$T/vda"
head -c $((256 << 10)) /dev/zero | tr '\0' 'b' >"$T/vdb"
dd if=/dev/zero of="$T/vda" bs=4096 seek=100 count=20 conv=notrunc status=none
ok "$CHAINFS" backup "$R" $G c1 --disk vda="$T/vda" --disk vdb="$T/vdb"
write_at "$T/vda" 3 2; write_at "$T/vdb" 7 3
dd if=/dev/zero of="$T/vda" bs=4096 seek=10 count=4 conv=notrunc status=none
ok "$CHAINFS" backup "$R" $G c2 --disk vda="$T/vda" --disk vdb="$T/vdb"
write_at "$T/vda" 4 4; write_at "$T/vda" 90 5
ok "$CHAINFS" backup "$R" $G c3 --disk vda="$T/vda" --disk vdb="$T/vdb"
write_at "$T/vda" 5 6; write_at "$T/vdb" 8 7; truncate -s $((384 << 10)) "$T/vdb"
ok "$CHAINFS" backup "$R" $G c4 --disk vda="$T/vda" --disk vdb="$T/vdb"
write_at "$T/vda" 6 8; truncate -s $((640 << 10)) "$T/vda"
ok "$CHAINFS" backup "$R" $G c5 --disk vda="$T/vda" --disk vdb="$T/vdb" --since c2
ok "$CHAINFS" check "$R" --deep

declare -A SHA DELTA
for c in "${CPS[@]}"; do
  for d in "${DISKS[@]}"; do
    ok "$CHAINFS" export "$R" $G "$c" "$d" "$T/view.raw"
    SHA[$c.$d]=$(sha256sum <"$T/view.raw" | cut -d' ' -f1)
    DELTA[$c.$d]=$(json_get "$R/groups/$G/checkpoints/$c.json" ".disks[] | select(.name == \"$d\") | .delta")
  done
done
[ "${SHA[c1.vda]}" != "${SHA[c2.vda]}" ] && [ "${SHA[c2.vda]}" != "${SHA[c3.vda]}" ] ||
  fail "setup: consecutive checkpoints should differ"

# --- the mutations: one line each, "kind args..." -------------------------
delta_path() { echo "groups/$G/deltas/${DELTA[$1]}"; }
size_of() { stat -c %s "$R/$1"; }
index_offset_of() { od -An -t u8 -j $(($(size_of "$1") - 64)) -N 8 "$R/$1" | tr -d ' '; }

ALWAYS=$T/always.list   # structural mutations: always run
FLIPS=$T/flips.list     # byte flips: sampled
: >"$ALWAYS"
: >"$FLIPS"
for c in "${CPS[@]}"; do
  for d in "${DISKS[@]}"; do
    f=$(delta_path "$c.$d"); size=$(size_of "$f"); idx=$(index_offset_of "$f")
    full=0; [ "$c.$d" = c2.vda ] || [ "$c.$d" = c1.vdb ] && full=1
    # Header and footer: every byte of two files (two flip patterns), every 4th of the rest.
    step_hf=$([ $full = 1 ] && echo 1 || echo 4)
    for ((o = 0; o < 64; o += step_hf)); do
      echo "flip $f $o 255" >>"$FLIPS"
      echo "flip $f $((size - 64 + o)) 255" >>"$FLIPS"
      if [ $full = 1 ]; then
        echo "flip $f $o 1" >>"$FLIPS"
        echo "flip $f $((size - 64 + o)) 1" >>"$FLIPS"
      fi
    done
    # Index (entries and zero runs): every byte of c2.vda, every 7th of the rest.
    step_ix=$([ "$c.$d" = c2.vda ] && echo 1 || echo 7)
    for ((o = idx; o < size - 64; o += step_ix)); do echo "flip $f $o 1" >>"$FLIPS"; done
    # Stored blocks: a sample.
    for ((o = 64; o < idx; o += 997)); do echo "flip $f $o 1" >>"$FLIPS"; done
    for len in 0 1 63 64 65 "$idx" $((idx + 1)) $((size / 2)) $((size - 65)) $((size - 64)) $((size - 1)); do
      [ "$len" -lt "$size" ] && echo "truncate $f $len" >>"$ALWAYS"
    done
    echo "zero $f 0 64" >>"$ALWAYS"
    echo "zero $f $((size - 64)) 64" >>"$ALWAYS"
    echo "zero $f $idx $((size - 64 - idx))" >>"$ALWAYS"
    [ "$idx" -gt 64 ] && echo "zero $f 64 $(((idx - 64) < 4096 ? idx - 64 : 4096))" >>"$ALWAYS"
    echo "zero $f 0 $size" >>"$ALWAYS"
    echo "append $f 1" >>"$ALWAYS"
    echo "append $f 4096" >>"$ALWAYS"
    echo "append-footer $f" >>"$ALWAYS"
    echo "remove $f" >>"$ALWAYS"
  done
done
# Swapped and duplicated delta files (each valid, under another's name).
for pair in c1.vda:c2.vda c2.vda:c3.vda c3.vda:c4.vda c4.vda:c5.vda c2.vda:c5.vda c1.vdb:c2.vdb \
  c1.vda:c1.vdb c3.vda:c3.vdb; do
  a=$(delta_path "${pair%%:*}"); b=$(delta_path "${pair##*:}")
  echo "swap $a $b" >>"$ALWAYS"
  echo "copy $a $b" >>"$ALWAYS"
  echo "copy $b $a" >>"$ALWAYS"
done
# Manifest edits (jq filters on one checkpoint's manifest).
m() { echo "jq groups/$G/checkpoints/$1.json $2" >>"$ALWAYS"; }
for c in c2 c3 c4 c5; do
  m $c '.disks[0].delta = "'"${DELTA[c1.vda]}"'"'
  m $c '.disks[1].delta = "'"${DELTA[c1.vdb]}"'"'
  m $c 'del(.disks[0].base)'
  m $c '.disks[0].base = null'
  m $c '.disks[0].base = "c1"'
  m $c '.disks[1].base = "c1"'
  m $c '.disks[0].kind = "full" | del(.disks[0].base)'
  m $c '.sequence = (.sequence + 10)'
  m $c '.sequence = 0'
  m $c '.parent = "c1"'
  m $c 'del(.parent)'
done
for c in c1 c2 c3 c5; do
  m $c '.disks[0].delta = "'"${DELTA[c4.vda]}"'"'
  m $c '.disks[0].kind = "incremental" | .disks[0].base = "c4"'
  m $c '.disks[0].virtual_size = (.disks[0].virtual_size + 4096)'
  m $c '.disks[0].virtual_size = (.disks[0].virtual_size - 4096)'
  m $c '.disks[0].virtual_size = 0'
  m $c '.disks[0].virtual_size = 18446744073709551615'
  m $c '.disks[0].virtual_size = 1e30'
  m $c '.disks[0].virtual_size = -1'
  m $c '.disks[0].name = "vdc"'
  m $c '.disks[0].format = "qcow2"'
  m $c '.disks |= reverse'
  m $c '.disks[1] = .disks[0]'
  m $c '.disks = []'
  m $c '.name = "c9"'
  m $c '.group = "vm2"'
  m $c '.version = 2'
  m $c '.sequence = 1e30'
  m $c '.sequence = -1'
  m $c '.sequence = "3"'
  m $c '.created_unix_ns = 1e300'
  m $c 'with_entries(if .key == "disks" then .key = "disk" else . end)'
  m $c 'with_entries(if .key == "sequence" then .key = "sequnce" else . end)'
  m $c '.disks[0] |= with_entries(if .key == "base" then .key = "bsae" else . end)'
  m $c '.disks[0] |= with_entries(if .key == "delta" then .key = "detla" else . end)'
  m $c '.confg = {"name": "domain.xml", "content": "x"}'
  m $c '.config = "domain.xml"'
done
for c in c2 c3 c5; do
  echo "seqdigit groups/$G/checkpoints/$c.json" >>"$ALWAYS"
  echo "garbage groups/$G/checkpoints/$c.json" >>"$ALWAYS"
  echo "truncate groups/$G/checkpoints/$c.json 40" >>"$ALWAYS"
  echo "truncate groups/$G/checkpoints/$c.json 0" >>"$ALWAYS"
  echo "remove groups/$G/checkpoints/$c.json" >>"$ALWAYS"
  echo "copy groups/$G/checkpoints/c4.json groups/$G/checkpoints/$c.json" >>"$ALWAYS"
  echo "write groups/$G/checkpoints/$c.json []" >>"$ALWAYS"
  echo "write groups/$G/checkpoints/$c.json {}" >>"$ALWAYS"
done
echo "garbage groups/$G/checkpoints/c9.json" >>"$ALWAYS"
echo "copy groups/$G/checkpoints/c3.json groups/$G/checkpoints/c9.json" >>"$ALWAYS"
echo "jq chainfs.json .block_size=65536" >>"$ALWAYS"
echo "jq chainfs.json .block_size=4097" >>"$ALWAYS"
echo "jq chainfs.json .version=2" >>"$ALWAYS"
echo "garbage chainfs.json" >>"$ALWAYS"
echo "remove chainfs.json" >>"$ALWAYS"
# Manifest bytes: every 3rd byte of c3.json flipped (digits and names included).
msize=$(size_of "groups/$G/checkpoints/c3.json")
for ((o = 0; o < msize; o += 3)); do echo "flip groups/$G/checkpoints/c3.json $o 1" >>"$FLIPS"; done

LIST=$T/mutations.list
n_always=$(wc -l <"$ALWAYS")
n_flips=$(wc -l <"$FLIPS")
total=$((n_always + n_flips))
if [ "$WANT" = all ] || [ "$WANT" -ge "$total" ]; then
  cat "$ALWAYS" "$FLIPS" >"$LIST"
else
  # Every structural mutation, then an even sample of the flips (at least 1 in 40).
  k=$((WANT > n_always ? WANT - n_always : n_flips / 40))
  [ "$k" -ge 1 ] || k=1
  cat "$ALWAYS" >"$LIST"
  awk -v n="$n_flips" -v k="$k" 'BEGIN { srand(13) } { if (int((NR - 1) * k / n) != int(NR * k / n)) print }' \
    "$FLIPS" >>"$LIST"
fi
shuf --random-source=<(yes 13) "$LIST" >"$LIST.shuf" && mv "$LIST.shuf" "$LIST"
if [ -n "${CHAINFS_SWEEP_ONLY:-}" ]; then
  grep -E -- "$CHAINFS_SWEEP_ONLY" "$LIST" >"$LIST.only" || true
  mv "$LIST.only" "$LIST"
fi
step "$(wc -l <"$LIST") mutations of $total ($n_always structural, $n_flips byte flips; CHAINFS_MUTATIONS=all for every one)"

# --- applying and judging ------------------------------------------------
flip() {
  perl -e 'open(F, "+<", $ARGV[0]) or die "$ARGV[0]: $!"; seek(F, $ARGV[1], 0);
           read(F, $b, 1) == 1 or die "short"; seek(F, $ARGV[1], 0);
           print F chr(ord($b) ^ $ARGV[2]); close(F) or die' "$1" "$2" "$3"
}

apply() {
  local kind=$1 f=$W/$2
  case "$kind" in
    flip) flip "$f" "$3" "$4" ;;
    truncate) truncate -s "$3" "$f" ;;
    zero) dd if=/dev/zero of="$f" bs=1 seek="$3" count="$4" conv=notrunc status=none ;;
    append) random_file "$3" "$3" "$T/garbage" && cat "$T/garbage" >>"$f" ;;
    append-footer) tail -c 64 "$f" >"$T/garbage" && cat "$T/garbage" >>"$f" ;;
    remove) rm -f "$f" ;;
    swap) mv "$f" "$T/swap" && mv "$W/$3" "$f" && mv "$T/swap" "$W/$3" ;;
    copy) cp "$f" "$W/$3" ;;
    jq) shift 2; jq -c "$*" "$f" >"$T/edited" && cat "$T/edited" >"$f" ;;
    seqdigit) perl -0pi -e 's/("sequence": *)(\d)/$1 . (($2 + 5) % 10)/e' "$f" ;;
    garbage) random_file "$2" 300 "$f" ;;
    write) printf '%s' "$3" >"$f" ;;
    *) fail "unknown mutation kind $kind" ;;
  esac
}

# run_cmd LABEL CMD...: runs CMD under the timeout; sets RC, classifies a
# crash or hang into OUTCOME and notes it.
run_cmd() {
  local label=$1 rc=0
  shift
  timeout -k 5 "$TIMEOUT" "$@" >"$T/cmd.out" 2>"$T/cmd.err" || rc=$?
  RC=$rc
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    worse hang "$label: timed out after ${TIMEOUT}s"
  elif [ $rc -ge 128 ]; then
    worse crash "$label: killed by signal $((rc - 128)) ($(tail -c 300 "$T/cmd.err" | tr '\n' ' '))"
  elif [ $rc -ne 0 ]; then
    worse error ""
    [ -s "$T/cmd.err" ] || [ -s "$T/cmd.out" ] || SILENT=$((SILENT + 1))
  fi
}

declare -A RANK=([clean]=0 [error]=1 [wrong]=2 [hang]=3 [crash]=4)
worse() {
  [ -z "$2" ] || NOTES+="      $2"$'\n'
  [ "${RANK[$1]}" -gt "${RANK[$OUTCOME]}" ] && OUTCOME=$1
  return 0
}

judge() {
  OUTCOME=clean NOTES=""
  local check_ok=0 c d sha wrong_views=
  run_cmd "check --deep" "$CHAINFS" check "$W" --deep
  [ "$RC" -eq 0 ] && check_ok=1
  run_cmd "list --json" "$CHAINFS" list "$W" --json
  for c in "${CPS[@]}"; do
    for d in "${DISKS[@]}"; do
      run_cmd "export $c $d" "$CHAINFS" export "$W" $G "$c" "$d" -
      [ "$RC" -eq 0 ] || { [ $check_ok = 0 ] || CHECK_MISSED=$((CHECK_MISSED + 1)); continue; }
      sha=$(sha256sum <"$T/cmd.out" | cut -d' ' -f1)
      [ "$sha" = "${SHA[$c.$d]}" ] || wrong_views+=" $c/$d"
    done
  done
  [ -z "$wrong_views" ] || worse wrong "export exited 0 with other bytes than recorded for:$wrong_views$(
    [ $check_ok = 1 ] && echo '; check --deep passed')"
}

declare -A COUNT=([clean]=0 [error]=0 [wrong]=0 [hang]=0 [crash]=0)
declare -A BYKIND
SILENT=0 CHECK_MISSED=0 done_n=0 start=$SECONDS
BAD=$T/bad.txt
: >"$BAD"
while read -r line; do
  if [ $((SECONDS - start)) -ge "$BUDGET" ]; then
    echo "time budget of ${BUDGET}s reached: $done_n of $(wc -l <"$LIST") mutations run"
    break
  fi
  rm -rf "$W"
  cp -a "$R" "$W"
  set -f  # a jq filter's [0] is no glob
  # shellcheck disable=SC2086
  apply $line
  set +f
  judge
  COUNT[$OUTCOME]=$((COUNT[$OUTCOME] + 1))
  kind=${line%% *}
  BYKIND[$kind.$OUTCOME]=$((${BYKIND[$kind.$OUTCOME]:-0} + 1))
  if [ "${RANK[$OUTCOME]}" -ge 2 ]; then
    echo "$(echo "$OUTCOME" | tr a-z A-Z): $line" >>"$BAD"
    printf '%s' "$NOTES" >>"$BAD"
  fi
  done_n=$((done_n + 1))
done <"$LIST"

step "results of $done_n mutations in $((SECONDS - start))s"
printf '  %-14s %6s %6s %6s %6s %6s\n' kind clean error WRONG CRASH HANG
for kind in $(cut -d' ' -f1 "$LIST" | sort -u); do
  printf '  %-14s %6d %6d %6d %6d %6d\n' "$kind" "${BYKIND[$kind.clean]:-0}" \
    "${BYKIND[$kind.error]:-0}" "${BYKIND[$kind.wrong]:-0}" "${BYKIND[$kind.crash]:-0}" \
    "${BYKIND[$kind.hang]:-0}"
done
printf '  %-14s %6d %6d %6d %6d %6d\n' TOTAL "${COUNT[clean]}" "${COUNT[error]}" \
  "${COUNT[wrong]}" "${COUNT[crash]}" "${COUNT[hang]}"
echo "  (errors without any message: $SILENT; exports that failed although check --deep passed: $CHECK_MISSED)"
if [ -s "$BAD" ]; then
  echo "== mutations with WRONG bytes, crashes or hangs:"
  cat "$BAD"
fi
[ "${COUNT[wrong]}" -eq 0 ] && [ "${COUNT[crash]}" -eq 0 ] && [ "${COUNT[hang]}" -eq 0 ] ||
  fail "${COUNT[wrong]} wrong-bytes, ${COUNT[crash]} crash and ${COUNT[hang]} hang outcomes"
echo "PASS: no wrong bytes, crashes or hangs in $done_n mutations"
