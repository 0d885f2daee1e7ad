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
#                       file mix-ups run first, the rest is shuffled
#                       reproducibly, so a cut still samples every kind)
# CHAINFS_SWEEP_JOBS=N  mutations judged at once (default 3; each on its own
#                       hard-linked copy, the mutated files copied first)
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
# Mix-ups of whole files (swaps, copies, manifests naming other deltas or
# bases, sequence digits) first, as they are what a byte-level check cannot
# catch; then the rest, shuffled reproducibly, so a time cut samples every kind.
grep -E '^(swap|copy|seqdigit) |^jq .*(delta|base|sequence|parent)' "$LIST" >"$LIST.first" || true
grep -v -x -F -f "$LIST.first" "$LIST" | shuf --random-source=<(yes 13) >"$LIST.rest" || true
cat "$LIST.first" "$LIST.rest" >"$LIST"
if [ -n "${CHAINFS_SWEEP_ONLY:-}" ]; then
  grep -E -- "$CHAINFS_SWEEP_ONLY" "$LIST" >"$LIST.only" || true
  mv "$LIST.only" "$LIST"
fi
JOBS=${CHAINFS_SWEEP_JOBS:-$(($(nproc) > 1 ? 3 : 1))}
step "$(wc -l <"$LIST") mutations of $total ($n_always structural, $n_flips byte flips; CHAINFS_MUTATIONS=all for every one), $JOBS at a time"
repo_files "$R" >"$T/repo.before"

# --- applying and judging (each worker: its own copy $W and scratch $S) -------
flip() {
  perl -e 'open(F, "+<", $ARGV[0]) or die "$ARGV[0]: $!"; seek(F, $ARGV[1], 0);
           read(F, $b, 1) == 1 or die "short"; seek(F, $ARGV[1], 0);
           print F chr(ord($b) ^ $ARGV[2]); close(F) or die' "$1" "$2" "$3"
}

# own FILE: the copy's FILE is its own (the copy is hard links to $R).
own() { [ ! -e "$1" ] || { cp "$1" "$1.own" && mv "$1.own" "$1"; }; }

apply() {
  local kind=$1 f=$W/$2
  case "$kind" in
    remove | swap) ;;
    copy) own "$W/$3" ;;
    *) own "$f" ;;
  esac
  case "$kind" in
    flip) flip "$f" "$3" "$4" ;;
    truncate) truncate -s "$3" "$f" ;;
    zero) dd if=/dev/zero of="$f" bs=1 seek="$3" count="$4" conv=notrunc status=none ;;
    append) random_file "$3" "$3" "$S.garbage" && cat "$S.garbage" >>"$f" ;;
    append-footer) tail -c 64 "$f" >"$S.garbage" && cat "$S.garbage" >>"$f" ;;
    remove) rm -f "$f" ;;
    swap) mv "$f" "$S.swap" && mv "$W/$3" "$f" && mv "$S.swap" "$W/$3" ;;
    copy) cat "$f" >"$W/$3" ;;
    jq) shift 2; jq -c "$*" "$f" >"$S.edited" && cat "$S.edited" >"$f" ;;
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
  timeout -k 5 "$TIMEOUT" "$@" >"$S.out" 2>"$S.err" || rc=$?
  RC=$rc
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    worse hang "$label: timed out after ${TIMEOUT}s"
  elif [ $rc -ge 128 ]; then
    worse crash "$label: killed by signal $((rc - 128)) ($(tail -c 300 "$S.err" | tr '\n' ' '))"
  elif [ $rc -ne 0 ]; then
    worse error ""
    [ -s "$S.err" ] || [ -s "$S.out" ] || SILENT=$((SILENT + 1))
  fi
}

declare -A RANK=([clean]=0 [error]=1 [wrong]=2 [hang]=3 [crash]=4)
worse() {
  [ -z "$2" ] || NOTES+="${NOTES:+; }$2"
  [ "${RANK[$1]}" -gt "${RANK[$OUTCOME]}" ] && OUTCOME=$1
  return 0
}

judge() {
  OUTCOME=clean NOTES="" SILENT=0 CHECK_MISSED=0
  local check_ok=0 c d sha wrong_views=
  run_cmd "check --deep" "$CHAINFS" check "$W" --deep
  [ "$RC" -eq 0 ] && check_ok=1
  run_cmd "list --json" "$CHAINFS" list "$W" --json
  for c in "${CPS[@]}"; do
    for d in "${DISKS[@]}"; do
      run_cmd "export $c $d" "$CHAINFS" export "$W" $G "$c" "$d" -
      [ "$RC" -eq 0 ] || { [ $check_ok = 0 ] || CHECK_MISSED=$((CHECK_MISSED + 1)); continue; }
      sha=$(sha256sum <"$S.out" | cut -d' ' -f1)
      [ "$sha" = "${SHA[$c.$d]}" ] || wrong_views+=" $c/$d"
    done
  done
  [ -z "$wrong_views" ] || worse wrong "export exited 0 with other bytes than recorded for:$wrong_views$(
    [ $check_ok = 1 ] && echo '; check --deep passed')"
}

# worker ID: mutations ID, ID+JOBS, ... until the time budget; one result
# line each in $T/results.ID: OUTCOME <tab> SILENT <tab> CHECK_MISSED <tab> MUTATION <tab> NOTES
worker() {
  local id=$1 line
  W=$T/work.$id S=$T/scratch.$id
  awk -v j="$JOBS" -v i="$id" 'NR % j == i' "$LIST" | while read -r line; do
    [ $((SECONDS - start)) -lt "$BUDGET" ] || break
    rm -rf "$W"
    cp -al "$R" "$W"
    set -f  # a jq filter's [0] is no glob
    # shellcheck disable=SC2086
    apply $line
    set +f
    judge
    printf '%s\t%s\t%s\t%s\t%s\n' "$OUTCOME" "$SILENT" "$CHECK_MISSED" "$line" "$NOTES"
  done >"$T/results.$id"
}

start=$SECONDS
pids=()
for ((i = 0; i < JOBS; i++)); do
  worker "$i" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a sweep worker failed"; done
cat "$T"/results.* >"$T/results"
repo_files "$R" >"$T/repo.after"
same_state "the sweep's master copy (mutations work on hard-linked copies)" "$T/repo.before" "$T/repo.after"

done_n=$(wc -l <"$T/results")
[ "$done_n" -eq "$(wc -l <"$LIST")" ] ||
  echo "time budget of ${BUDGET}s reached: $done_n of $(wc -l <"$LIST") mutations run"
step "results of $done_n mutations in $((SECONDS - start))s"
kinds=$(cut -f4 "$T/results" | cut -d' ' -f1 | sort -u | tr '\n' ' ')
awk -F'\t' -v kinds="$kinds TOTAL" '
  { split($4, w, " "); n[w[1], $1]++; n["TOTAL", $1]++; silent += $2; missed += $3 }
  END {
    printf "  %-14s %6s %6s %6s %6s %6s\n", "kind", "clean", "error", "WRONG", "CRASH", "HANG"
    m = split(kinds, order, " ")
    for (i = 1; i <= m; i++) {
      k = order[i]
      printf "  %-14s %6d %6d %6d %6d %6d\n", k, n[k, "clean"], n[k, "error"], n[k, "wrong"], n[k, "crash"], n[k, "hang"]
    }
    printf "  (errors without any message: %d; exports that failed although check --deep passed: %d)\n", silent, missed
  }' "$T/results"
bad=$(awk -F'\t' '$1 == "wrong" || $1 == "crash" || $1 == "hang"' "$T/results" | wc -l)
if [ "$bad" -gt 0 ]; then
  echo "== mutations with WRONG bytes, crashes or hangs:"
  awk -F'\t' '$1 == "wrong" || $1 == "crash" || $1 == "hang" { printf "%s: %s\n      %s\n", toupper($1), $4, $5 }' \
    "$T/results"
fi
counts=$(awk -F'\t' '{ n[$1]++ } END { printf "%d wrong-bytes, %d crash and %d hang", n["wrong"], n["crash"], n["hang"] }' "$T/results")
[ "$bad" -eq 0 ] || fail "$counts outcomes"
echo "PASS: no wrong bytes, crashes or hangs in $done_n mutations"
