"""Progress: a tqdm bar per running node and an event stream for listeners."""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm


@dataclass(frozen=True)
class Event:
    """Something that happened during a run.

    kind: `run_start`, `node_start`, `progress`, `node_end`, `run_end`.
    """

    kind: str
    node: str | None = None
    item: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[Event], None]


class EventBus:
    def __init__(self, listeners: list[Listener] | None = None) -> None:
        self.listeners: list[Listener] = list(listeners or [])

    def emit(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)


class Bar:
    """What `ctx.progress(...)` returns: tqdm-like `update`, `set_postfix`, `close`."""

    def __init__(self, bus: EventBus, node: str, item: str | None, total: int, desc: str, show: bool) -> None:
        self.bus, self.node, self.item, self.total = bus, node, item, total
        self.n = 0
        label = f"{node}[{item}]" if item else node
        self._tqdm = tqdm(total=total, desc=f"{label} {desc}".strip(), leave=False, file=sys.stderr,
                          disable=not show, dynamic_ncols=True)

    def update(self, n: int = 1, **info: Any) -> None:
        self.n += n
        self._tqdm.update(n)
        if info:
            self._tqdm.set_postfix(info, refresh=False)
        self.bus.emit(Event("progress", self.node, self.item, {"n": self.n, "total": self.total, **info}))

    def set_postfix(self, **info: Any) -> None:
        self._tqdm.set_postfix(info, refresh=False)

    def close(self) -> None:
        self._tqdm.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProgressReporter:
    """Handed to a node as `ctx.progress`; `ctx.progress(total=steps)` opens a bar."""

    def __init__(self, bus: EventBus, node: str, item: str | None, show: bool = True) -> None:
        self.bus, self.node, self.item, self.show = bus, node, item, show

    def __call__(self, total: int, desc: str = "") -> Bar:
        return Bar(self.bus, self.node, self.item, total, desc, self.show)
