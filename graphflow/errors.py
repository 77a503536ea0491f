"""Errors a user can act on.

`UserError` is the one exception the CLI turns into exit code 2 with a plain
message. Anything else escaping a node is a bug (exit 1). Nodes raise
`UserError` for bad files, bad params and unknown names; the scheduler adds the
node id and item when the node itself did not.
"""
from __future__ import annotations

from dataclasses import dataclass, field


class UserError(Exception):
    """A problem the user can fix: names the culprit and says what to do."""

    def __init__(
        self,
        message: str,
        *,
        node: str | None = None,
        item: str | None = None,
        param: str | None = None,
        file: str | None = None,
        hint: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.item = item
        self.param = param
        self.file = file
        self.hint = hint
        self.line = line

    def __str__(self) -> str:
        where = []
        if self.node:
            where.append(f"node '{self.node}'" + (f" item '{self.item}'" if self.item else ""))
        if self.param:
            where.append(f"param '{self.param}'")
        if self.file:
            where.append(f"file '{self.file}'")
        if self.line:
            where.append(f"line {self.line}")
        text = (", ".join(where) + ": " if where else "") + self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


@dataclass
class Problem:
    """One build-time problem of a graph: where it is and what is wrong."""

    message: str
    node: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"node '{self.node}'" if self.node else "graph"
        if self.line:
            where += f" (line {self.line})"
        return f"{where}: {self.message}"


@dataclass
class GraphInvalid(UserError):
    """Every problem found while validating a graph, reported at once."""

    problems: list[Problem] = field(default_factory=list)

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(
            f"{len(problems)} problem(s) in the graph:\n" + "\n".join(f"  - {p}" for p in problems)
        )

    def __str__(self) -> str:  # the problems list already names each culprit
        return self.message
