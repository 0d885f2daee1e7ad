#!/usr/bin/env bash
# Issue 15: NBD sources that fail. Each fault: exit 1, a message naming the
# disk, the source and (mid-backup) the offset and the server's error; no
# checkpoint; nothing a reader can see changed; check --deep clean; the same
# command run again (with the server back) succeeds.
# - qemu-nbd killed mid-backup (SIGKILL while the backup is held at its
#   third batch);
# - a server that returns EIO (nbdkit's error filter over a file, turned on
#   mid-backup);
# - a server that stalls: SIGTERM stops the backup; --nbd-timeout ends it;
# - a malformed URI; a socket that does not exist; a bitmap that does not
#   exist, over NBD (the message lists the contexts offered) and in a qcow2
#   path (the message lists its bitmaps); --dirty given for an NBD source.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"

R=$T/repo
Q=$T/vm.qcow2
export CHAINFS_FAILPOINT_DIR=$T/fp
mkdir -p "$CHAINFS_FAILPOINT_DIR"

# serve SOCK CMD...: a server on SOCK until killed; waits for the socket.
serve() {
  local sock=$1
  shift
  rm -f "$sock"
  "$@" 2>>"$T/server.log" &
  SERVER_PID=$!
  on_exit "kill -9 $SERVER_PID"
  disown "$SERVER_PID"  # killed on purpose: no "Killed" notices
  wait_socket "$SERVER_PID" "$sock" "$T/server.log"
}

# unchanged NAME: after a refused backup of checkpoint NAME (its output in
# $T/last.out): no checkpoint NAME, the visible repository as in
# $T/before, check --deep clean; prints the refusal.
unchanged() {
  cp "$T/last.out" "$T/refusal"
  repo_visible "$R" >"$T/after"
  same_state "$1" "$T/before" "$T/after"
  [ ! -e "$R/groups/vm1/checkpoints/$1.json" ] || fail "$1: a checkpoint appeared"
  expect_rc 0 '^OK: ' "$CHAINFS" check "$R" --deep
  echo "   refused: $(grep -m1 error "$T/refusal" || true)"
}

# refused NAME REGEX CMD...: exit 1 matching REGEX, and unchanged NAME.
refused() {
  local name=$1 re=$2
  shift 2
  repo_visible "$R" >"$T/before"
  expect_rc 1 "$re" "$@"
  unchanged "$name"
}

# held_then ACTION CMD...: runs CMD in the background held at its third
# batch, runs ACTION, lets it go on; leaves its exit status in $RC and its
# output in $T/last.out.
held_then() {
  local action=$1 pid
  shift
  rm -f "$CHAINFS_FAILPOINT_DIR"/*.paused
  CHAINFS_FAILPOINTS="backup.read-batch=3*pause" "$@" >"$T/last.out" 2>&1 &
  pid=$!
  for _ in $(seq 300); do
    [ -e "$CHAINFS_FAILPOINT_DIR/backup.read-batch.paused" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$T/last.out" >&2; fail "the backup ended before its third batch"; }
    sleep 0.1
  done
  eval "$action"
  rm -f "$CHAINFS_FAILPOINT_DIR/backup.read-batch.paused"
  RC=0
  wait "$pid" || RC=$?
}

step "c1: a full backup of a qcow2 path; bitmap 'inc' from here on"
ok "$CHAINFS" init "$R"
ok qemu-img create -q -f qcow2 "$Q" 64M
ok qemu-io -f qcow2 -c 'write -P 0x11 0 48M' "$Q"
ok "$CHAINFS" backup "$R" vm1 c1 --disk vda="$Q"
ok qemu-img bitmap --add "$Q" inc
ok qemu-io -f qcow2 -c 'write -P 0x22 0 40M' "$Q"
URI="nbd+unix:///?socket=$T/s.sock"

step "qemu-nbd killed mid-backup"
serve "$T/s.sock" qemu-nbd -r -f qcow2 -t -B inc --socket="$T/s.sock" "$Q"
repo_visible "$R" >"$T/before"
held_then 'kill -9 $SERVER_PID' \
  "$CHAINFS" backup "$R" vm1 c2 --disk vda="$URI" --bitmap vda=inc
[ "$RC" -eq 1 ] || { cat "$T/last.out" >&2; fail "backup with qemu-nbd killed exited $RC, expected 1"; }
grep -Eq "disk vda.*offset [0-9]+" "$T/last.out" || { cat "$T/last.out" >&2; fail "the error does not name the disk and the offset"; }
unchanged c2
serve "$T/s.sock" qemu-nbd -r -f qcow2 -t -B inc --socket="$T/s.sock" "$Q"
ok "$CHAINFS" backup "$R" vm1 c2 --disk vda="$URI" --bitmap vda=inc
kill -9 "$SERVER_PID"

step "the server returns EIO from the middle of the backup on (nbdkit --filter=error)"
ok qemu-img convert -f qcow2 -O raw "$Q" "$T/disk.raw"
serve "$T/k.sock" nbdkit -f -U "$T/k.sock" --filter=error file "$T/disk.raw" \
  error=EIO error-pread-rate=100% error-pread-file="$T/inject"
K="nbd+unix:///?socket=$T/k.sock"
repo_visible "$R" >"$T/before"
held_then 'touch $T/inject' "$CHAINFS" backup "$R" vm1 c3 --disk vda="$K" --full
[ "$RC" -eq 1 ] || { cat "$T/last.out" >&2; fail "backup with EIO from the server exited $RC, expected 1"; }
grep -Eq "disk vda.*offset [0-9]+.*(Input/output error|EIO)" "$T/last.out" ||
  { cat "$T/last.out" >&2; fail "the error does not name the disk, the offset and the server's EIO"; }
unchanged c3
rm -f "$T/inject"
ok "$CHAINFS" backup "$R" vm1 c3 --disk vda="$K" --full
ok "$CHAINFS" export "$R" vm1 c3 vda "$T/c3.raw"
cmp "$T/c3.raw" "$T/disk.raw" || fail "c3 re-run differs from the image"
kill -9 "$SERVER_PID"

step "a stalled server (nbdkit --filter=delay): SIGTERM stops the backup within seconds"
# At the handshake, at block status, at a read: each waits 100 s on the
# server. The backup used to wait it out (a read: for good, or until a
# second signal); it ends on the first, exit 143, as killed, nothing kept.
stalled() {
  local delay=$1 pid t0
  serve "$T/d.sock" nbdkit -f -U "$T/d.sock" --filter=delay file "$T/disk.raw" "$delay=100"
  repo_visible "$R" >"$T/before"
  "$CHAINFS" backup "$R" vm1 c4 --disk vda="nbd+unix:///?socket=$T/d.sock" --full \
    >"$T/last.out" 2>&1 &
  pid=$!
  sleep 1.5  # connected, or connecting, and waiting on the server
  kill -0 "$pid" 2>/dev/null || { cat "$T/last.out" >&2; fail "$delay: the backup ended before the stall"; }
  t0=$SECONDS
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid"
    fail "$delay: the backup did not stop within 10 s of SIGTERM"
  fi
  RC=0
  wait "$pid" || RC=$?
  [ "$RC" -eq 143 ] || { cat "$T/last.out" >&2; fail "$delay: exited $RC after SIGTERM, expected 143"; }
  grep -q "stopped by signal 15" "$T/last.out" || { cat "$T/last.out" >&2; fail "$delay: the error does not say it was stopped"; }
  echo "   $delay: stopped after $((SECONDS - t0)) s: $(grep -m1 error "$T/last.out")"
  unchanged c4
  kill -9 "$SERVER_PID" 2>/dev/null || true  # see timed_out below
}
stalled delay-open
stalled delay-extents
stalled delay-read

step "a stalled server and --nbd-timeout 2: the backup fails on its own, naming the stall"
# The same stalls with nobody to send a signal (a nightly backup): the
# backup gives up after 2 s without an answer, exit 1, nothing kept. Without
# the timeout it waited the server's 100 s out (and for ever on a server
# that never answers), holding the repository lock.
timed_out() {
  local delay=$1 re=$2 t0
  serve "$T/d.sock" nbdkit -f -U "$T/d.sock" --filter=delay file "$T/disk.raw" "$delay=100"
  t0=$SECONDS
  refused c4 "$re" timeout -s KILL 60 \
    "$CHAINFS" backup "$R" vm1 c4 --disk vda="nbd+unix:///?socket=$T/d.sock" --full --nbd-timeout 2
  [ $((SECONDS - t0)) -lt 30 ] || fail "$delay: the backup took $((SECONDS - t0)) s to give up"
  echo "   $delay: gave up after $((SECONDS - t0)) s"
  # The connection given up is closed without a goodbye (the server would
  # never answer one), which Debian 12's nbdkit 1.32 sometimes dies of
  # (connections.c: "raw_send_socket: Assertion `sock >= 0' failed"): it
  # may be gone already.
  kill -9 "$SERVER_PID" 2>/dev/null || true
}
timed_out delay-open "source of disk vda: NBD source [^ ]+: no answer to the handshake from the server in 2 s \(--nbd-timeout\)"
timed_out delay-extents "source of disk vda: NBD source [^ ]+: block status of base:allocation at offset 0: no answer from the server in 2 s \(--nbd-timeout\); the connection is given up"
# The timeout is time without an answer, not the backup's time: a slow
# server (one request at a time, each answered after 0.5 s) backs up fine
# with --nbd-timeout 2 though the whole backup takes several times that.
serve "$T/d.sock" nbdkit -f --threads=1 -U "$T/d.sock" --filter=delay file "$T/disk.raw" \
  delay-read=500ms
t0=$(date +%s%N)
ok "$CHAINFS" backup "$R" vm1 slow --disk vda="nbd+unix:///?socket=$T/d.sock" --full --nbd-timeout 2
took_ms=$((($(date +%s%N) - t0) / 1000000))
echo "   a server answering a read every 0.5 s: backed up in $took_ms ms with --nbd-timeout 2"
[ "$took_ms" -gt 2000 ] || fail "the slow backup took only $took_ms ms: it does not show the timeout is per answer"
ok "$CHAINFS" export "$R" vm1 slow vda "$T/slow.raw"
cmp "$T/slow.raw" "$T/disk.raw" || fail "the slow backup differs from the image"
ok "$CHAINFS" consolidate "$R" vm1 --drop slow
kill -9 "$SERVER_PID"
timed_out delay-read "reading source [^ ]+ of disk vda: NBD source [^ ]+: read at offset [0-9]+: no answer from the server in 2 s \(--nbd-timeout\)"

step "bad URI, missing socket, missing bitmap, --dirty on an NBD source"
refused c4 "source of disk vda: .*nbd:/nope.*URI" \
  "$CHAINFS" backup "$R" vm1 c4 --disk vda="nbd:/nope"
refused c4 "cannot connect to NBD source nbd\+unix:///\?socket=$T/missing.sock: .*No such file" \
  "$CHAINFS" backup "$R" vm1 c4 --disk vda="nbd+unix:///?socket=$T/missing.sock"
serve "$T/s.sock" qemu-nbd -r -f qcow2 -t -B inc --socket="$T/s.sock" "$Q"
refused c4 "--bitmap nosuch: NBD source .* does not offer meta context qemu:dirty-bitmap:nosuch; it offers: .*qemu:dirty-bitmap:inc" \
  "$CHAINFS" backup "$R" vm1 c4 --disk vda="$URI" --bitmap vda=nosuch
refused c4 "--dirty is for raw sources" \
  "$CHAINFS" backup "$R" vm1 c4 --disk vda="$URI" --dirty vda="$T/before"
kill -9 "$SERVER_PID"
refused c4 "--bitmap nosuch: image $Q has no such bitmap; it has: inc" \
  "$CHAINFS" backup "$R" vm1 c4 --disk vda="$Q" --bitmap vda=nosuch
refused c4 "raw image, which has no dirty bitmaps" \
  "$CHAINFS" backup "$R" vm1 c4 --disk vda="$T/disk.raw" --bitmap vda=inc
refused c4 "--bitmap vda=... cannot be used with --full" \
  "$CHAINFS" backup "$R" vm1 c4 --disk vda="$Q" --bitmap vda=inc --full
step "a missing bitmap on a server that stalls the listing of what it offers: refused within seconds"
# The refusal lists the meta contexts offered, on a connection of its own.
# A server that answered the backup's connection but stalls that one (at
# its first option, or at the listing) used to keep the backup waiting for
# ever; now the listing is given up after 1-10 s and the refusal says so.
for stall in option list; do
  stage="the handshake"
  [ "$stall" = list ] && stage="the listing of meta contexts"
  serve "$T/st.sock" python3 "$SRC/tests/scenario/nbd_stall_server.py" "$T/st.sock" 1048576 "$stall"
  t0=$SECONDS
  refused c4 "--bitmap nosuch: NBD source .* does not offer meta context qemu:dirty-bitmap:nosuch; it offers: \(could not list them: NBD source .* did not answer $stage within [0-9]+ ms\)" \
    timeout -s KILL 60 "$CHAINFS" backup "$R" vm1 c4 --disk vda="nbd+unix:///?socket=$T/st.sock" --bitmap vda=nosuch
  echo "   stalled at the $stall: refused after $((SECONDS - t0)) s"
  kill -9 "$SERVER_PID"
done

step "a disk with no history refuses --bitmap (its first backup must be full)"
refused c4 "disk vdb has no earlier backup.*first backup must be full.*--bitmap vdb" \
  "$CHAINFS" backup "$R" vm1 c4 --disk vda="$Q" --disk vdb="$Q" --bitmap vdb=inc

step "re-run after all of them: works"
ok "$CHAINFS" backup "$R" vm1 c4 --disk vda="$Q" --bitmap vda=inc
ok qemu-img convert -f qcow2 -O raw "$Q" "$T/now.raw"
ok "$CHAINFS" export "$R" vm1 c4 vda "$T/c4.raw"
cmp "$T/c4.raw" "$T/now.raw" || fail "c4 differs from the image"
expect_rc 0 '^OK: 1 group\(s\), 4 checkpoint\(s\)' "$CHAINFS" check "$R" --deep

echo "PASS: nbd_faults"
