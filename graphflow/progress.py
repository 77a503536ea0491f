"""Progress: a tqdm bar per running node on a terminal, one line per finished item in a log,
and an event stream for listeners.

Bars redraw with carriage returns, which is right on a terminal and wrong in a log file (a
two-minute run wrote 86 KB of them). So the CLI shows bars only when stderr is a terminal;
otherwise `ItemLines` prints one plain line per finished item and nothing else.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from tqdm import tqdm


@dataclass(frozen=True)
class Event:
    """Something that happened during a run.

    kind: `run_start`, `estimate`, `node_start`, `progress`, `node_end`, `run_end`. An `estimate` has
    `data["line"]`: what a node's run will make and cost, said before it starts (`Node.estimate`). A `node_end` has
    `data["status"]` (`ran`, `cached` or `failed`), `seconds`, `recompute` (a value gone from
    the cache was computed again) and, when failed, `message` (the one-line text) and `error`
    (`ErrorInfo.to_dict()`: message, kind, node, node_type, item, param, file, line, hint,
    exception). A failed run's `run_end` has `errors`, the list of those dicts.
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


class ItemLines:
    """A listener that writes one line per item that ran or failed: `node[item] ran in 1.23 s`.

    Cached items print nothing (the run's total counts them), so a re-run's log stays short."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def __call__(self, event: Event) -> None:
        if event.kind != "node_end" or event.data.get("status") not in ("ran", "failed"):
            return
        where = f"{event.node}[{event.item}]" if event.item is not None else str(event.node)
        status = event.data["status"]
        if status == "ran":
            again = " (again: its cache entry was gone)" if event.data.get("recompute") else ""
            line = f"{where} ran in {event.data.get('seconds', 0.0):.2f} s{again}"
        else:
            line = f"{where} failed"
        stream = self.stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()


class PlanLines:
    """A listener that writes each `estimate` line (what a node will make and cost) as `plan: node: line`."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def __call__(self, event: Event) -> None:
        if event.kind != "estimate":
            return
        stream = self.stream or sys.stderr
        stream.write(f"plan: {event.node}: {event.data.get('line', '')}\n")
        stream.flush()


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.into.append(f"{record.name}: {record.getMessage()}")
        except Exception:  # noqa: BLE001 - a bad log call must not break the run
            self.handleError(record)


@contextmanager
def collect_warnings(into: list[str]) -> Iterator[None]:
    """Append every log record of level WARNING or above emitted meanwhile (by nodes, the engine
    or libraries) to `into`, for the report and the run's total line."""
    handler = _Collect(into)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
