"""Memory tier in front of the disk tier, honouring each node's cache policy."""
from __future__ import annotations

from typing import Any

from ..node import CachePolicy
from .disk import DiskCache
from .entry import Entry
from .memory import MemoryCache


class TieredCache:
    def __init__(self, memory: MemoryCache | None = None, disk: DiskCache | None = None) -> None:
        self.memory = memory if memory is not None else MemoryCache()
        self.disk = disk

    def peek(self, key: str, policy: CachePolicy) -> dict[str, Any] | None:
        """`{"digests", "item_digests", "seconds"[, "notes"]}` of a stored entry, without loading its values."""
        if policy == "never":
            return None
        entry = self.memory.get(key)
        if entry is not None:
            return {"digests": entry.digests, "item_digests": entry.item_digests, "seconds": entry.seconds,
                    "notes": list(entry.notes)}
        if policy == "default" and self.disk is not None:
            return self.disk.peek(key)
        return None

    def get(self, key: str, policy: CachePolicy) -> Entry | None:
        if policy == "never":
            return None
        entry = self.memory.get(key)
        if entry is None and policy == "default" and self.disk is not None:
            entry = self.disk.get(key)
            if entry is not None:
                self.memory.put(entry)
        return entry

    def put(self, entry: Entry, policy: CachePolicy) -> None:
        if policy == "never":
            return
        self.memory.put(entry)
        if policy == "default" and self.disk is not None:
            self.disk.put(entry)
