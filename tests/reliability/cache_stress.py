"""One side of the `DiskCache.put` stress test: `python cache_stress.py CACHE_DIR WORKER N`.

Every worker stores the same N keys (same content for the same key, as in real use: a key
determines its value), in its own order, and reads every key back right after storing it and
reads a few random other keys; any value that comes back must be whole and exactly right.
Prints a JSON summary on stdout.
"""
from __future__ import annotations

import json
import random
import sys

import blake3
import torch

from graphflow.cache import DiskCache, Entry


def key_of(i: int) -> str:
    return blake3.blake3(f"stress-{i}".encode()).hexdigest()


def value_of(i: int) -> torch.Tensor:
    # sizes vary so that writes of different lengths interleave
    return torch.arange(1000 + 37 * (i % 50), dtype=torch.float32) * (i + 1)


def entry_of(i: int) -> Entry:
    value = value_of(i)
    return Entry(key_of(i), {"out": value}, {"out": f"digest-{i}"}, {}, 0.01, value.numel() * 4)


def check(disk: DiskCache, i: int) -> bool:
    """True if the entry is there (and then it must be right); False on a miss."""
    got = disk.get(key_of(i))
    if got is None:
        return False
    assert got.digests == {"out": f"digest-{i}"}, got.digests
    assert torch.equal(got.outputs["out"], value_of(i)), f"entry {i} came back wrong"
    return True


def main() -> None:
    root, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(worker)
    order = list(range(n))
    rng.shuffle(order)
    disk = DiskCache(root)
    hits = 0
    for i in order:
        assert disk.put(entry_of(i))
        fresh = DiskCache(root)  # no per-process memo of verified entries: read from the files
        assert check(fresh, i), f"entry {i} missing right after put"
        for j in rng.sample(range(n), 3):
            hits += check(fresh, j)
    print(json.dumps({"worker": worker, "stored": n, "random_hits": hits}))


if __name__ == "__main__":
    main()
