# shellcheck shell=bash
# Helpers shared by the scenario tests (sourced, not run; not a test itself).
#
#   source "$SRC/tests/scenario/lib.sh"     # after set -euo pipefail
#   on_exit "umount $T/mnt"                 # cleanups run last-in first-out
#   expect_rc 1 'already exists' $CHAINFS backup ...
#   fail "export of c3 differs from the saved image"
#
# Every test gets a fresh temp dir $T; on exit (success, failure or signal)
# the registered cleanups run (unmount, losetup -d, kill daemons), then $T is
# removed unless something is still mounted below it.

: "${CHAINFS:?set CHAINFS to the chainfs binary}"
: "${SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
export CHAINFS SRC

T=$(mktemp -d /tmp/chainfs-scenario.XXXXXX)
_CLEANUPS=()

on_exit() { _CLEANUPS+=("$*"); }

_run_cleanups() {
  local rc=$? i
  trap - EXIT INT TERM
  for ((i = ${#_CLEANUPS[@]} - 1; i >= 0; i--)); do
    eval "${_CLEANUPS[i]}" >/dev/null 2>&1 || true
  done
  # Whatever a failed test left mounted or attached below $T.
  findmnt -rn -o TARGET | grep "^$T/" | sort -r | xargs -r -n1 umount >/dev/null 2>&1 || true
  losetup -l -n -O NAME,BACK-FILE 2>/dev/null | awk -v t="$T/" 'index($2, t) == 1 {print $1}' |
    xargs -r -n1 losetup -d >/dev/null 2>&1 || true
  if findmnt -rn -o TARGET | grep -q "^$T/"; then
    echo "WARNING: something is still mounted under $T; not removing it" >&2
  else
    rm -rf "$T"
  fi
  exit "$rc"
}
trap _run_cleanups EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

step() { echo "== $*"; }

# wait_socket PID SOCK LOG: waits until the server PID has created the unix
# socket SOCK; fails, showing the end of its LOG, if it exits first.
wait_socket() {
  for _ in $(seq 300); do
    [ -S "$2" ] && return 0
    kill -0 "$1" 2>/dev/null || fail "server (pid $1) exited before creating $2: $(tail -5 "$3" 2>/dev/null)"
    sleep 0.1
  done
  fail "server (pid $1) did not create $2 in 30 s"
}

# expect_rc CODE REGEX CMD...: runs CMD, requires exit status CODE and output
# (stdout + stderr) matching the extended regex REGEX (case-insensitive).
# The combined output is left in $T/last.out.
expect_rc() {
  local want=$1 re=$2 rc=0
  shift 2
  "$@" >"$T/last.out" 2>&1 || rc=$?
  if [ "$rc" -ne "$want" ]; then
    sed 's/^/    | /' "$T/last.out" >&2
    fail "'$*' exited $rc, expected $want"
  fi
  if ! grep -Eqi -- "$re" "$T/last.out"; then
    sed 's/^/    | /' "$T/last.out" >&2
    fail "'$*' output does not match /$re/"
  fi
}

# ok CMD...: requires success; stdout is left in $T/last.out, stderr in
# $T/last.err, both shown only if CMD fails.
ok() {
  if ! "$@" >"$T/last.out" 2>"$T/last.err"; then
    sed 's/^/    | /' "$T/last.out" "$T/last.err" >&2
    fail "'$*' failed"
  fi
}

# delta_header_size DELTA: where a delta file's stored blocks begin (the
# header_size field at offset 12, docs/FORMAT.md: 64 in version 1, more with
# the identity record of version 2).
delta_header_size() {
  od -An -tu4 -j12 -N4 "$1" | tr -d ' '
}

# repo_files REPO: every file under REPO except the lock, with its sha256,
# plus every directory (so a new empty group shows up too).
repo_files() {
  (cd "$1" && find . -mindepth 1 -type d | LC_ALL=C sort | sed 's/^/dir /' &&
    find . -type f ! -path ./lock -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}

# repo_visible REPO: what a reader can see: chainfs.json, every manifest and
# every delta file a manifest names (byte for byte), and `list --json`.
repo_visible() {
  local repo=$1 g f
  (cd "$repo" && sha256sum chainfs.json)
  for g in "$repo"/groups/*/; do
    [ -d "$g/checkpoints" ] || continue
    (cd "$g" && find checkpoints -name '*.json' -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
    for f in $(jq -r '.disks[].delta' "$g"/checkpoints/*.json 2>/dev/null | LC_ALL=C sort -u); do
      (cd "$g" && sha256sum "deltas/$f")
    done
  done
  "$CHAINFS" list "$repo" --json
}

# unreferenced_deltas REPO GROUP: delta files no manifest names.
unreferenced_deltas() {
  local g=$1/groups/$2
  comm -23 <(ls "$g/deltas" | LC_ALL=C sort) \
    <(jq -r '.disks[].delta' "$g"/checkpoints/*.json 2>/dev/null | LC_ALL=C sort -u)
}

# same_state LABEL BEFORE AFTER: fails with a diff if the two files differ.
same_state() {
  if ! diff -u "$2" "$3" >"$T/state.diff"; then
    sed 's/^/    | /' "$T/state.diff" >&2
    fail "$1: repository changed"
  fi
}

# json_get FILE JQ-FILTER
json_get() { jq -er "$2" "$1"; }

# random_file SEED BYTES PATH: reproducible incompressible bytes.
random_file() {
  head -c "$2" /dev/zero | openssl enc -aes-128-ctr -pass "pass:$1" -nosalt -pbkdf2 2>/dev/null >"$3"
}
