"""`RunReport`: what happened to every node run and mapped item."""
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


@dataclass
class RunReport:
    entries: list[ReportEntry] = field(default_factory=list)
    total_seconds: float = 0.0
    executor: str = "local"

    def add(self, entry: ReportEntry) -> None:
        self.entries.append(entry)

    def statuses(self) -> dict[tuple[str, str | None], Status]:
        return {(e.node, e.item): e.status for e in self.entries}

    def by_status(self, status: Status) -> list[ReportEntry]:
        return [e for e in self.entries if e.status == status]

    @property
    def failed(self) -> list[ReportEntry]:
        return self.by_status("failed")

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": [asdict(e) for e in self.entries], "total_seconds": round(self.total_seconds, 4),
                "executor": self.executor}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for e in self.entries:
            counts[e.status] = counts.get(e.status, 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        return f"{parts} in {self.total_seconds:.2f} s"
