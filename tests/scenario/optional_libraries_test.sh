#!/usr/bin/env bash
# libvirt and libnbd are loaded only by the commands that use them (backup
# --domain; a backup from an NBD source): the binary links neither (their
# trees were ~9 ms of every command's start), everything else works on a
# machine without them, and a command that needs one there fails with a
# clear message naming the library and the package, leaving the repository
# as it was. Where they are installed, those commands load them.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"

step "the binary links neither libvirt nor libnbd"
if readelf -d "$CHAINFS" | grep -E 'NEEDED.*(libvirt|libnbd)'; then
  fail "chainfs links a library it should load when needed"
fi
lib_path() { ldconfig -p | awk -v n="$1" '$1 == n && /x86-64/ && !p {print $NF; p = 1}'; }
VIRT=$(lib_path libvirt.so.0)
NBD=$(lib_path libnbd.so.0)
[ -e "$VIRT" ] || fail "libvirt.so.0 is not installed here (libvirt0)"
[ -e "$NBD" ] || fail "libnbd.so.0 is not installed here (libnbd0)"

# hidden CMD...: CMD in a mount namespace of its own where libvirt.so.0 and
# libnbd.so.0 are empty files: a machine without them, as the loader sees it.
: >"$T/empty"
hidden() {
  unshare -m --propagation private bash -c \
    'mount --bind "$1" "$2" && mount --bind "$1" "$3" && shift 3 && exec "$@"' \
    _ "$T/empty" "$VIRT" "$NBD" "$@"
}

R=$T/repo
step "without them: init, backup of an image, list, export, check"
ok hidden "$CHAINFS" init "$R"
random_file 1 $((4 << 20)) "$T/vda.img"
ok hidden "$CHAINFS" backup "$R" vm1 c1 --disk vda="$T/vda.img"
ok hidden "$CHAINFS" list "$R" --json
grep -q '"c1"' "$T/last.out" || fail "list does not show c1: $(cat "$T/last.out")"
ok hidden "$CHAINFS" export "$R" vm1 c1 vda "$T/out.raw"
cmp "$T/out.raw" "$T/vda.img" || fail "export without libvirt and libnbd differs from the image"
ok hidden "$CHAINFS" check "$R" --deep

step "without them: --domain and an NBD source fail naming the library, the repository unchanged"
before=$(cd "$R" && find . -type f | sort | xargs sha256sum)
expect_rc 1 'libvirt\.so\.0 cannot be loaded \(.*\); on Debian it is in the package libvirt0' \
  hidden "$CHAINFS" backup "$R" vm1 c2 --domain test --connect test:///default
expect_rc 1 'libnbd\.so\.0 cannot be loaded \(.*\); on Debian it is in the package libnbd0' \
  hidden "$CHAINFS" backup "$R" vm1 c2 --disk vda=nbd+unix:///?socket="$T/none.sock"
after=$(cd "$R" && find . -type f | sort | xargs sha256sum)
[ "$before" = "$after" ] || fail "a refused backup changed the repository"

step "with them: --domain loads libvirt and asks libvirtd (its test driver), an NBD source libnbd"
expect_rc 1 "libvirt test:///default has no domain 'nosuch'" \
  "$CHAINFS" backup "$R" vm1 c2 --domain nosuch --connect test:///default
random_file 2 $((4 << 20)) "$T/vdb.img"
qemu-nbd --fork --persistent --format=raw --read-only --socket="$T/nbd.sock" \
  --pid-file="$T/nbd.pid" "$T/vdb.img"
on_exit "kill \$(cat '$T/nbd.pid')"
ok "$CHAINFS" backup "$R" vm1 c2 --disk vda=nbd+unix:///?socket="$T/nbd.sock"
ok "$CHAINFS" export "$R" vm1 c2 vda "$T/out2.raw"
cmp "$T/out2.raw" "$T/vdb.img" || fail "a backup read over NBD differs from the served image"
echo PASS
