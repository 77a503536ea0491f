"""In-memory tier bounded in bytes, evicting by recompute cost per byte (GreedyDual-Size).

Values stay where they are (a CUDA tensor stays on its GPU). Among entries,
the one evicted first is the one whose `cost / size + L` is lowest, where L
rises to the priority of each evicted entry: cheap, large, old entries go
first; expensive small ones stay. With equal costs and sizes this is LRU.
"""
from __future__ import annotations

from .entry import Entry


class MemoryCache:
    def __init__(self, max_bytes: int | None = 2 << 30) -> None:
        self.max_bytes = max_bytes
        self._entries: dict[str, Entry] = {}
        self._priority: dict[str, float] = {}
        self._inflation = 0.0
        self.bytes = 0

    def _score(self, entry: Entry) -> float:
        return self._inflation + (entry.seconds + 1e-6) / max(entry.nbytes, 1)

    def get(self, key: str) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._priority[key] = self._score(entry)  # a hit refreshes it
        return entry

    def put(self, entry: Entry) -> None:
        if self.max_bytes is not None and entry.nbytes > self.max_bytes:
            return  # would evict everything and still not fit
        self.discard(entry.key)
        self._entries[entry.key] = entry
        self._priority[entry.key] = self._score(entry)
        self.bytes += entry.nbytes
        self._evict(protect=entry.key)

    def discard(self, key: str) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.nbytes
            del self._priority[key]

    def _evict(self, protect: str) -> None:
        while self.max_bytes is not None and self.bytes > self.max_bytes and len(self._entries) > 1:
            victim = min((k for k in self._priority if k != protect), key=self._priority.__getitem__)
            self._inflation = self._priority[victim]
            self.discard(victim)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)
