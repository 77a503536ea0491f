"""Cache tiers: storage and eviction, separate from the key strategy (`graphflow.keys`).

An `Entry` holds the outputs of one node run (or one mapped item) under its
key, with each output's content digest and the seconds it took (its
recompute cost). `MemoryCache` is bounded in bytes; `DiskCache` is
content-addressed, atomic and verified; `TieredCache` puts them together
and honours a node's policy.
"""
from __future__ import annotations

from .disk import DiskCache, default_cache_dir
from .entry import Entry, value_nbytes
from .memory import MemoryCache
from .tiered import TieredCache

__all__ = ["DiskCache", "Entry", "MemoryCache", "TieredCache", "default_cache_dir", "value_nbytes"]
