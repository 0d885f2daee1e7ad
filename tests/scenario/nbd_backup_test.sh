#!/usr/bin/env bash
# Issue 15: backups read straight from NBD servers and QEMU images, the
# incrementals driven by QEMU dirty bitmaps (qemu:dirty-bitmap:NAME), with
# real servers: qemu-nbd -B, qemu-storage-daemon exporting two disks over
# one socket, and qcow2 paths (chainfs starts qemu-nbd itself). Every view
# is compared with the image as QEMU reads it (qemu-img convert -O raw).
# - the bitmap drives the read: blocks_read is what the bitmap marks, and a
#   write made while the bitmap was disabled is NOT in the incremental;
# - full backups skip base:allocation zero extents without reading them;
# - bitmap granularities 4K/64K/1M against block sizes 4K/64K/1M.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"

R=$T/repo
Q=$T/vm.qcow2

qio() {
  local img=$1
  shift
  ok qemu-io -f qcow2 "${@/#/-c}" "$img"
}

# serve IMG SOCK [qemu-nbd args]: qemu-nbd on IMG until killed; waits for SOCK.
serve() {
  local img=$1 sock=$2 pid
  shift 2
  rm -f "$sock"
  qemu-nbd -r -f qcow2 -t --socket="$sock" "$@" "$img" 2>>"$T/qemu-nbd.log" &
  pid=$!
  on_exit "kill $pid"
  SERVER_PID=$pid
  wait_socket "$pid" "$sock" "$T/qemu-nbd.log"
}
stop_server() { kill "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null || true; }

# same_as_qemu REPO GROUP CP DISK IMG: the view's export equals IMG as QEMU
# reads it now.
same_as_qemu() {
  ok qemu-img convert -f qcow2 -O raw "$5" "$T/want.raw"
  ok "$CHAINFS" export "$1" "$2" "$3" "$4" "$T/got.raw"
  cmp "$T/got.raw" "$T/want.raw" || fail "view $2/$3/$4 differs from qemu-img convert of $5"
  rm -f "$T/got.raw" "$T/want.raw"
}

# dirty_blocks IMG BITMAP BS: how many BS-blocks of IMG the bitmap marks dirty
# (nbdinfo over a qemu-nbd it starts itself).
dirty_blocks() {
  nbdinfo --json --map="qemu:dirty-bitmap:$2" -- [ qemu-nbd -r -f qcow2 -B "$2" "$1" ] |
    jq --argjson bs "$3" '[.[] | select(.type % 2 == 1)
       | ((.offset + .length + $bs - 1) / $bs | floor) - (.offset / $bs | floor)] | add // 0'
}

blocks_read() { jq -r '.disks[] | select(.name == "'"$1"'") | .blocks_read' "$T/last.out"; }

step "c1: full backup over nbd+unix from qemu-nbd; base:allocation holes are not read"
ok "$CHAINFS" init "$R"
ok qemu-img create -q -f qcow2 "$Q" 64M
qio "$Q" 'write -P 0x11 0 8M' 'write -P 0x12 20M 4M' 'write -P 0x13 63M 1M'
serve "$Q" "$T/s.sock"
URI="nbd+unix:///?socket=$T/s.sock"
ok "$CHAINFS" backup "$R" vm1 c1 --disk vda="$URI" --json
# 13 MiB of data in 64 KiB blocks: the 51 MiB never written are not read.
[ "$(blocks_read vda)" -eq 208 ] || fail "c1 read $(blocks_read vda) blocks; the allocated data is 208"
stop_server
same_as_qemu "$R" vm1 c1 vda "$Q"

step "c2: incremental from bitmap 'inc'; a write made while it was disabled is NOT read"
ok qemu-img bitmap --add "$Q" inc
ok qemu-img bitmap --add "$Q" since-c1
qio "$Q" 'write -P 0x21 1M 64k' 'write -P 0x22 5000000 1000' 'write -z 21M 128k' 'discard 22M 1M'
ok qemu-img bitmap --disable "$Q" inc
ok qemu-img bitmap --disable "$Q" since-c1
qio "$Q" 'write -P 0x99 40M 64k'   # untracked: the incremental must keep c1's bytes here
ok qemu-img bitmap --enable "$Q" inc
ok qemu-img bitmap --enable "$Q" since-c1
ok qemu-img convert -f qcow2 -O raw "$Q" "$T/now.raw"
want=$(dirty_blocks "$Q" inc 65536)
serve "$Q" "$T/s.sock" -B inc
ok "$CHAINFS" backup "$R" vm1 c2 --disk vda="$URI" --bitmap vda=inc --json
stop_server
[ "$(blocks_read vda)" -eq "$want" ] || fail "c2 read $(blocks_read vda) blocks, the bitmap marks $want"
[ "$want" -eq 20 ] || fail "the bitmap marks $want blocks; the tracked writes touch 20 (1 + 1 + 2 + 16)"
ok "$CHAINFS" export "$R" vm1 c2 vda "$T/c2.raw"
ok "$CHAINFS" export "$R" vm1 c1 vda "$T/c1.raw"
cmp -s <(tail -c +$((40 * 1048576 + 1)) "$T/c2.raw" | head -c 65536) \
  <(tail -c +$((40 * 1048576 + 1)) "$T/c1.raw" | head -c 65536) ||
  fail "c2 holds the write made while the bitmap was disabled: the bitmap did not drive the read"
cmp -s <(tail -c +$((1048576 + 1)) "$T/c2.raw" | head -c 65536) \
  <(tail -c +$((1048576 + 1)) "$T/now.raw" | head -c 65536) || fail "c2 lacks a tracked write at 1M"
# Everything but the untracked 64 KiB equals the image.
cmp -s <(head -c $((40 * 1048576)) "$T/c2.raw") <(head -c $((40 * 1048576)) "$T/now.raw") &&
  cmp -s <(tail -c +$((40 * 1048576 + 65537)) "$T/c2.raw") <(tail -c +$((40 * 1048576 + 65537)) "$T/now.raw") ||
  fail "c2 differs from the image outside the untracked write"
rm -f "$T/c1.raw" "$T/c2.raw" "$T/now.raw"
ok qemu-img bitmap --clear "$Q" inc
# Untracked again, the image gets c1's zeros back there: from here on every
# view must equal the image.
ok qemu-img bitmap --disable "$Q" inc
ok qemu-img bitmap --disable "$Q" since-c1
qio "$Q" 'write -z 40M 64k'
ok qemu-img bitmap --enable "$Q" inc
ok qemu-img bitmap --enable "$Q" since-c1

step "c3: a qcow2 path as source with --bitmap (chainfs starts qemu-nbd itself)"
qio "$Q" 'write -P 0x31 30M 256k' 'write -P 0x32 62M 2M'
want=$(dirty_blocks "$Q" inc 65536)
ok "$CHAINFS" backup "$R" vm1 c3 --disk vda="$Q" --bitmap vda=inc --json
[ "$(blocks_read vda)" -eq "$want" ] || fail "c3 read $(blocks_read vda) blocks, the bitmap marks $want"
same_as_qemu "$R" vm1 c3 vda "$Q"
ok qemu-img bitmap --clear "$Q" inc

step "c4: differential --since c1 from bitmap since-c1, over NBD"
qio "$Q" 'write -P 0x41 10M 64k'
want=$(dirty_blocks "$Q" since-c1 65536)
serve "$Q" "$T/s.sock" -B since-c1
ok "$CHAINFS" backup "$R" vm1 c4 --disk vda="$URI" --bitmap vda=since-c1 --since c1 --json
stop_server
[ "$(jq -r '.disks[0].kind + " " + .disks[0].base' "$T/last.out")" = "differential c1" ] ||
  fail "c4 is not a differential on c1"
[ "$(blocks_read vda)" -eq "$want" ] || fail "c4 read $(blocks_read vda) blocks, the bitmap marks $want"
same_as_qemu "$R" vm1 c4 vda "$Q"

step "c5: grown to 96 MiB, a qcow2 path without --bitmap (contents compared)"
ok qemu-img resize -q -f qcow2 "$Q" 96M
qio "$Q" 'write -P 0x51 80M 1M'
ok "$CHAINFS" backup "$R" vm1 c5 --disk vda="$Q" --json
[ "$(jq -r '.disks[0].virtual_size' "$T/last.out")" -eq $((96 << 20)) ] || fail "c5 is not 96 MiB"
same_as_qemu "$R" vm1 c5 vda "$Q"
ok qemu-img bitmap --clear "$Q" inc

step "c6: shrunk to 72 MiB, read over 4 connections (qemu-nbd --shared=4 allows multi-conn)"
qio "$Q" 'write -P 0x61 2M 128k' 'discard 0 64k'
ok qemu-img resize -q -f qcow2 --shrink "$Q" 72M
want=$(dirty_blocks "$Q" inc 65536)
serve "$Q" "$T/s.sock" -B inc --shared=4
CHAINFS_LOG=debug ok "$CHAINFS" backup "$R" vm1 c6 --disk vda="$URI" --bitmap vda=inc --json
stop_server
grep -q "4 connection(s)" "$T/last.err" || fail "c6 did not read over 4 connections: $(grep -i 'NBD source' "$T/last.err")"
[ "$(jq -r '.disks[0].virtual_size' "$T/last.out")" -eq $((72 << 20)) ] || fail "c6 is not 72 MiB"
[ "$(blocks_read vda)" -eq "$want" ] || fail "c6 read $(blocks_read vda) blocks, the bitmap marks $want"
same_as_qemu "$R" vm1 c6 vda "$Q"
ok qemu-img bitmap --clear "$Q" inc

step "c6b: a server at its client limit (qemu-nbd --shared=2, multi-conn offered): read over the 2 it took"
# The server leaves a third connection unanswered while two are open: a
# backup that waited for it hung for good. It is given up after 1-10 s.
qio "$Q" 'write -P 0x71 5M 64k'
want=$(dirty_blocks "$Q" inc 65536)
serve "$Q" "$T/s.sock" -B inc --shared=2
CHAINFS_LOG=debug ok timeout -k 5 60 "$CHAINFS" backup "$R" vm1 c6b --disk vda="$URI" --bitmap vda=inc --json
stop_server
grep -q "2 connection(s)" "$T/last.err" || fail "c6b did not read over 2 connections: $(grep -i 'NBD source' "$T/last.err")"
grep -q "did not answer the handshake within" "$T/last.err" || fail "c6b: the third connection was not given up: $(grep -i 'NBD source' "$T/last.err")"
[ "$(blocks_read vda)" -eq "$want" ] || fail "c6b read $(blocks_read vda) blocks, the bitmap marks $want"
same_as_qemu "$R" vm1 c6b vda "$Q"
ok qemu-img bitmap --clear "$Q" inc

step "two disks of one VM over one qemu-storage-daemon socket, full then incremental"
A=$T/a.qcow2 B=$T/b.qcow2
ok qemu-img create -q -f qcow2 "$A" 32M
ok qemu-img create -q -f qcow2 "$B" 16M
qio "$A" 'write -P 0xa1 0 4M'
qio "$B" 'write -P 0xb1 8M 4M'
ok qemu-img bitmap --add "$A" inc
ok qemu-img bitmap --add "$B" inc
qsd() {
  rm -f "$T/qsd.sock"
  qemu-storage-daemon \
    --blockdev driver=file,node-name=fa,filename="$A",read-only=on \
    --blockdev driver=qcow2,node-name=da,file=fa,read-only=on \
    --blockdev driver=file,node-name=fb,filename="$B",read-only=on \
    --blockdev driver=qcow2,node-name=db,file=fb,read-only=on \
    --nbd-server addr.type=unix,addr.path="$T/qsd.sock" \
    --export type=nbd,id=ea,node-name=da,name=vda,bitmaps.0=inc \
    --export type=nbd,id=eb,node-name=db,name=vdb,bitmaps.0=inc 2>>"$T/qsd.log" &
  SERVER_PID=$!
  on_exit "kill $SERVER_PID"
  wait_socket "$SERVER_PID" "$T/qsd.sock" "$T/qsd.log"
}
qsd
ok "$CHAINFS" backup "$R" vm2 c1 --disk vda="nbd+unix:///vda?socket=$T/qsd.sock" \
  --disk vdb="nbd+unix:///vdb?socket=$T/qsd.sock" --json
stop_server
qio "$A" 'write -P 0xa2 1M 128k'
qio "$B" 'write -P 0xb2 15M 4k' 'discard 8M 64k'
wa=$(dirty_blocks "$A" inc 65536) wb=$(dirty_blocks "$B" inc 65536)
qsd
ok "$CHAINFS" backup "$R" vm2 c2 --disk vda="nbd+unix:///vda?socket=$T/qsd.sock" \
  --disk vdb="nbd+unix:///vdb?socket=$T/qsd.sock" --bitmap vda=inc --bitmap vdb=inc --json
stop_server
[ "$(blocks_read vda)" -eq "$wa" ] && [ "$(blocks_read vdb)" -eq "$wb" ] ||
  fail "vm2/c2 read $(blocks_read vda)+$(blocks_read vdb) blocks, the bitmaps mark $wa+$wb"
same_as_qemu "$R" vm2 c2 vda "$A"
same_as_qemu "$R" vm2 c2 vdb "$B"

step "over TCP on loopback: nbd:// and nbds:// (TLS, x509 made with openssl), a bitmap each"
P=$T/pki
mkdir -p "$P"
ok openssl req -x509 -newkey rsa:2048 -nodes -keyout "$P/ca-key.pem" -out "$P/ca-cert.pem" \
  -days 2 -subj "/CN=chainfs test CA"
ok openssl req -newkey rsa:2048 -nodes -keyout "$P/server-key.pem" -out "$T/server.csr" -subj "/CN=localhost"
printf "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" >"$T/ext.cnf"
ok openssl x509 -req -in "$T/server.csr" -CA "$P/ca-cert.pem" -CAkey "$P/ca-key.pem" \
  -CAcreateserial -out "$P/server-cert.pem" -days 2 -extfile "$T/ext.cnf"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# serve waits for a socket file: TCP servers are waited for by connecting.
tcp_serve() {
  qemu-nbd -r -f qcow2 -t --bind=127.0.0.1 --port="$port" -B inc "$@" "$Q" 2>>"$T/qemu-nbd.log" &
  SERVER_PID=$!
  on_exit "kill $SERVER_PID"
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || fail "qemu-nbd on port $port exited: $(cat "$T/qemu-nbd.log")"
    sleep 0.1
  done
  fail "qemu-nbd did not listen on port $port"
}
qio "$Q" 'write -P 0x71 3M 64k'
tcp_serve
ok "$CHAINFS" backup "$R" vm1 c7 --disk vda="nbd://127.0.0.1:$port" --bitmap vda=inc --json
stop_server
[ "$(blocks_read vda)" -eq 1 ] || fail "c7 read $(blocks_read vda) blocks over TCP, the bitmap marks 1"
same_as_qemu "$R" vm1 c7 vda "$Q"
ok qemu-img bitmap --clear "$Q" inc
qio "$Q" 'write -P 0x81 5M 64k'
tcp_serve --object "tls-creds-x509,id=tls0,endpoint=server,dir=$P,verify-peer=off" --tls-creds tls0
expect_rc 1 "server requires TLS" "$CHAINFS" backup "$R" vm1 c8 --disk vda="nbd://127.0.0.1:$port" --bitmap vda=inc
ok "$CHAINFS" backup "$R" vm1 c8 --disk vda="nbds://localhost:$port/?tls-certificates=$P" --bitmap vda=inc --json
stop_server
[ "$(blocks_read vda)" -eq 1 ] || fail "c8 read $(blocks_read vda) blocks over TLS, the bitmap marks 1"
same_as_qemu "$R" vm1 c8 vda "$Q"
ok qemu-img bitmap --clear "$Q" inc

step "bitmap granularity 4K/64K/1M against block sizes 4K/64K/1M"
for bs in 4K 64K 1M; do
  RB=$T/repo-$bs
  ok "$CHAINFS" init "$RB" --block-size "$bs"
  bsb=$(numfmt --from=iec "$bs")
  for gran in 4K 64K 1M; do
    G=$T/g.qcow2
    ok qemu-img create -q -f qcow2 "$G" 8M
    qio "$G" 'write -P 0x01 0 3M'
    ok "$CHAINFS" backup "$RB" "g$gran" c1 --disk vda="$G"
    ok qemu-img bitmap --add --granularity "$gran" "$G" inc
    qio "$G" 'write -P 0x02 5000 3000' 'write -P 0x03 2100000 70000' 'write -z 6M 4k' 'write -P 0x04 8384512 4096'
    want=$(dirty_blocks "$G" inc "$bsb")
    ok "$CHAINFS" backup "$RB" "g$gran" c2 --disk vda="$G" --bitmap vda=inc --json
    [ "$(blocks_read vda)" -eq "$want" ] ||
      fail "block size $bs, granularity $gran: read $(blocks_read vda) blocks, the bitmap marks $want"
    same_as_qemu "$RB" "g$gran" c2 vda "$G"
    rm -f "$G"
  done
done

step "check --deep passes"
expect_rc 0 '^OK: ' "$CHAINFS" check "$R" --deep

echo "PASS: nbd_backup"
