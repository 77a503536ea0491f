"""`RunReport`: what happened to every node run and mapped item; `RunResult`: a run's outputs and report."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["ran", "cached", "failed", "skipped"]


@dataclass
class ReportEntry:
    node: str
    item: str | None
    status: Status
    seconds: float = 0.0
    bytes: int = 0
    key: str = ""
    peak_rss_mb: float = 0.0
    message: str | None = None
    error: dict[str, Any] | None = None  # a failure's structure (`ErrorInfo.to_dict()`): node, item, param, file, hint
    note: str | None = None  # what the node said about this run (`ctx.note`), e.g. a fallback it took
    cpu_seconds: float = 0.0  # CPU time of the process that ran it (all its threads); 0 for cached entries
    cpu_threads: float = 0.0  # that CPU time per CPU second of the item's own thread: 1.0 = single-threaded

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for optional in ("error", "note"):
            if out[optional] is None:
                del out[optional]  # only entries that have one carry it; every other keeps its old shape
        return out


@dataclass
class RunReport:
    entries: list[ReportEntry] = field(default_factory=list)
    total_seconds: float = 0.0
    executor: str = "local"
    warnings: list[str] = field(default_factory=list)  # log warnings emitted during the run, in order
    outputs: dict[str, Any] = field(default_factory=dict)  # file outputs: files, bytes, summary (set by the CLI)
    plan: list[str] = field(default_factory=list)  # what the run will make, said before it started (Node.estimate)

    def add(self, entry: ReportEntry) -> None:
        self.entries.append(entry)

    def replace(self, entry: ReportEntry) -> None:
        """Put `entry` in place of the one for the same (node, item), e.g. a cached item that had to
        run again because its cache entry was gone when its value was needed."""
        for i, old in enumerate(self.entries):
            if (old.node, old.item) == (entry.node, entry.item):
                self.entries[i] = entry
                return
        self.entries.append(entry)

    def statuses(self) -> dict[tuple[str, str | None], Status]:
        return {(e.node, e.item): e.status for e in self.entries}

    def by_status(self, status: Status) -> list[ReportEntry]:
        return [e for e in self.entries if e.status == status]

    @property
    def failed(self) -> list[ReportEntry]:
        return self.by_status("failed")

    def to_dict(self) -> dict[str, Any]:
        out = {"nodes": [e.to_dict() for e in self.entries], "total_seconds": round(self.total_seconds, 4),
               "executor": self.executor, "warnings": list(self.warnings)}
        if self.outputs:
            out["outputs"] = self.outputs
        if self.plan:
            out["plan"] = list(self.plan)
        return out

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def write_script(self, path: Path, graph: dict[str, Any] | None = None) -> None:
        """The report as a classic script, `window.GRAPHFLOW_RUN = {...};` (plus `graph`, the graph's
        nodes and edges, when given): what a page opened from file:// can read, since browsers refuse
        it `fetch()` of report.json but run a script beside it."""
        data = self.to_dict()
        if graph is not None:
            data["graph"] = graph
        text = json.dumps(data, indent=1).replace("</", "<\\/")  # never close the page's <script> early
        path.write_text(f"window.GRAPHFLOW_RUN = {text};\n")

    def summary(self) -> str:
        """One line: how many node runs and items, what ran, what came from the cache, warnings.

        A log reader sees at a glance whether a run did work or only read the cache."""
        counts: dict[str, int] = {}
        for e in self.entries:
            counts[e.status] = counts.get(e.status, 0) + 1
        nodes = len({e.node for e in self.entries})
        items = sorted({e.item for e in self.entries if e.item is not None})
        what = f"{nodes} node{'s' if nodes != 1 else ''}"
        if items:
            what += f", {len(items)} item{'s' if len(items) != 1 else ''}"
        done = ", ".join(f"{counts[s]} {s}" for s in ("ran", "cached", "failed", "skipped") if counts.get(s))
        warned = len(self.warnings)
        return (f"total: {what}; {done or 'nothing to do'}; {warned} warning{'s' if warned != 1 else ''}; "
                f"{self.total_seconds:.2f} s")


@dataclass
class RunResult:
    outputs: dict[str, Any]
    report: RunReport
