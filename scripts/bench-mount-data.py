#!/usr/bin/env python3
"""Data for scripts/bench-mount (not run on its own).

  bench-mount-data.py DIR SIZE            DIR/disk.raw: two thirds mixed data
  bench-mount-data.py --apply DIR SIZE I  increment I: rewrites 2% of the
      blocks of DIR/disk.raw at random (among those holding data) with
      pattern blocks, and writes
      DIR/map.I.json (nbdinfo --json --map format: what changed) and
      DIR/qemu-io.I.cmds (the same writes as qemu-io commands).

Block contents cycle through three kinds: random (incompressible), text
(compresses about 3x) and half zeros. Reproducible (seeded).
"""
import json
import os
import random
import sys

BS = 64 * 1024
WORDS = b"chainfs backup checkpoint delta layer view block extent qemu disk the of and".split()


def text_block(rng):
    out = bytearray()
    while len(out) < BS:
        out += rng.choice(WORDS) + b" "
    return bytes(out[:BS])


def make_block(kind, rng):
    if kind == 0:
        return rng.randbytes(BS)
    if kind == 1:
        return text_block(rng)
    return bytes(BS // 2) + rng.randbytes(BS // 2)


def patterns(d, rng):
    pd = os.path.join(d, "pat")
    os.makedirs(pd, exist_ok=True)
    paths = []
    for k in range(48):
        p = os.path.join(pd, f"{k}.bin")
        if not os.path.exists(p):
            with open(p, "wb") as f:
                f.write(make_block(k % 3, rng))
        paths.append(p)
    return paths


def generate(d, size):
    rng = random.Random(1)
    data_blocks = size // BS * 2 // 3
    text = b"".join(text_block(rng) for _ in range(64))
    with open(os.path.join(d, "disk.raw"), "wb") as f:
        for b in range(data_blocks):
            kind = b % 3
            if kind == 1:
                off = rng.randrange(0, len(text) - BS)
                f.write(text[off:off + BS])
            else:
                f.write(make_block(kind, rng))
        f.truncate(size)
    patterns(d, rng)


def apply(d, size, i):
    rng = random.Random(1000 + i)
    pats = patterns(d, rng)
    blocks = size // BS
    # Rewrites: 2% of the disk's blocks, chosen among the blocks holding data
    # (the first two thirds), so that every depth's newest view holds the same
    # amount of data and depth ratios measure the chain, not a fuller disk.
    # (Drawing from the never-written third too fills it: after 100
    # increments 87% of it is data and the view has 42% more blocks to decode.)
    data_blocks = blocks * 2 // 3
    chosen = sorted(rng.sample(range(data_blocks), max(1, blocks // 50)))
    cache = {}
    cmds, extents = [], []
    with open(os.path.join(d, "disk.raw"), "r+b") as f:
        for b in chosen:
            p = pats[rng.randrange(len(pats))]
            if p not in cache:
                cache[p] = open(p, "rb").read()
            f.seek(b * BS)
            f.write(cache[p])
            cmds.append(f"write -q -s {p} {b * BS} {BS}")
            extents.append(b)
    runs, start, prev = [], None, None
    for b in extents + [None]:
        if start is not None and (b is None or b != prev + 1):
            runs.append((start, prev + 1))
            start = None
        if b is not None and start is None:
            start = b
        prev = b
    m, pos = [], 0
    for s, e in runs:
        if s * BS > pos:
            m.append({"offset": pos, "length": s * BS - pos, "type": 0, "description": "clean"})
        m.append({"offset": s * BS, "length": (e - s) * BS, "type": 1, "description": "dirty"})
        pos = e * BS
    if pos < size:
        m.append({"offset": pos, "length": size - pos, "type": 0, "description": "clean"})
    with open(os.path.join(d, f"map.{i}.json"), "w") as f:
        json.dump(m, f)
    with open(os.path.join(d, f"qemu-io.{i}.cmds"), "w") as f:
        f.write("\n".join(cmds) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "--apply":
        apply(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        generate(sys.argv[1], int(sys.argv[2]))
