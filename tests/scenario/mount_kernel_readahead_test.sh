#!/usr/bin/env bash
# The mount raises the kernel's readahead for itself (read_ahead_kb of its
# bdi) at the first open of a disk: 1 MiB by default, kernel_readahead=SIZE
# to choose, kernel_readahead=0 leaves the kernel's 128 KiB. Reads return
# the same bytes either way.
set -euo pipefail
source "${SRC:-$(dirname "$0")/../..}/tests/scenario/lib.sh"
source "$SRC/tests/scenario/mount_lib.sh"

R=$T/repo
M=$T/mnt
ok "$CHAINFS" init "$R"
random_file 1 $((8 << 20)) "$T/vda.img"
ok "$CHAINFS" backup "$R" vm1 c1 --disk vda="$T/vda.img"

# ra_kb: read_ahead_kb of the bdi of the mount on $M.
ra_kb() { cat "/sys/class/bdi/$(findmnt -rn -o MAJ:MIN -M "$M")/read_ahead_kb"; }

# check OPTIONS WANT_KB: mount with OPTIONS, read the disk, expect WANT_KB.
check() {
  local opts=$1 want=$2
  step "mount ${opts:-with defaults}: read_ahead_kb $want after the first read"
  mount_fg "$R" "$M" ${opts:+-o "$opts"}
  cmp "$M/vm1/c1/vda.raw" "$T/vda.img" || fail "$opts: the view differs from the image"
  [ "$(ra_kb)" -eq "$want" ] || fail "${opts:-defaults}: read_ahead_kb is $(ra_kb), expected $want"
  unmount_wait "$M"
}
check "" 1024
check kernel_readahead=4M 4096
check kernel_readahead=0 128

step "a bad value is refused before mounting"
expect_rc 2 "kernel_readahead=fast" "$CHAINFS" mount "$R" "$M" -o kernel_readahead=fast
findmnt -rn -M "$M" >/dev/null && fail "a refused mount left a mount behind"
echo PASS
