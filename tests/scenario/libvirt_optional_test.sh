#!/usr/bin/env bash
# libvirt is loaded only by the commands that talk to it (backup --domain):
# the binary does not link it (its 56 shared libraries were ~8 ms of every
# command's start), everything else works on a machine without it, and a
# --domain backup there fails with a clear message naming the library and
# the package, leaving the repository as it was. Where libvirt is
# installed, --domain loads it and talks to libvirtd (its test driver here).
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"

step "the binary does not link libvirt"
readelf -d "$CHAINFS" | grep -q 'NEEDED.*libvirt' && fail "chainfs links libvirt: $(readelf -d "$CHAINFS" | grep libvirt)"
LIB=$(ldconfig -p | awk '$1 == "libvirt.so.0" && /x86-64/ {print $NF; exit}')
[ -n "$LIB" ] && [ -e "$LIB" ] || fail "libvirt.so.0 is not installed here (libvirt0): ldconfig -p names none"

# hidden CMD...: CMD in a mount namespace of its own where libvirt.so.0 is
# an empty file: a machine without libvirt, as the loader sees it.
: >"$T/empty"
hidden() {
  unshare -m --propagation private bash -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' \
    _ "$T/empty" "$LIB" "$@"
}

R=$T/repo
step "without libvirt: init, backup of an image, list, export, check"
ok hidden "$CHAINFS" init "$R"
random_file 1 $((4 << 20)) "$T/vda.img"
ok hidden "$CHAINFS" backup "$R" vm1 c1 --disk vda="$T/vda.img"
ok hidden "$CHAINFS" list "$R" --json
grep -q '"c1"' "$T/last.out" || fail "list does not show c1: $(cat "$T/last.out")"
ok hidden "$CHAINFS" export "$R" vm1 c1 vda "$T/out.raw"
cmp "$T/out.raw" "$T/vda.img" || fail "export without libvirt differs from the image"
ok hidden "$CHAINFS" check "$R" --deep

step "without libvirt: backup --domain fails naming the library, the repository unchanged"
before=$(cd "$R" && find . -type f | sort | xargs sha256sum)
expect_rc 1 'libvirt cannot be loaded \(libvirt\.so\.0: .*\); on Debian it is in the package libvirt0' \
  hidden "$CHAINFS" backup "$R" vm1 c2 --domain test --connect test:///default
after=$(cd "$R" && find . -type f | sort | xargs sha256sum)
[ "$before" = "$after" ] || fail "a refused --domain backup changed the repository"

step "with libvirt: --domain loads it and asks libvirt (its test driver)"
expect_rc 1 "libvirt test:///default has no domain 'nosuch'" \
  "$CHAINFS" backup "$R" vm1 c2 --domain nosuch --connect test:///default
echo PASS
