"""`Keyed`: an ordered, read-only collection of named items (per instance).

A keyed collection is the unit of fan-out: a node with `map_over` runs once
per item, and each item has its own content digest so that changing one item
re-runs only that item's branch downstream.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Keyed(Mapping[str, T], Generic[T]):
    """Items in insertion order, addressed by name. Immutable."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, T] | None = None) -> None:
        self._items: dict[str, T] = dict(items or {})
        for key in self._items:
            if not isinstance(key, str):
                raise TypeError(f"Keyed keys must be str, got {type(key).__name__}")

    def __getitem__(self, key: str) -> T:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Keyed({list(self._items)})"

    def __reduce__(self) -> tuple[Any, ...]:  # for Ray's object store
        return (Keyed, (self._items,))
