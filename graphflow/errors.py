"""Errors a user can act on.

`UserError` is the one exception the CLI turns into exit code 2 with a plain
message. Anything else escaping a node is a bug (exit 1). Nodes raise
`UserError` for bad files, bad params and unknown names; the scheduler adds the
node id and item when the node itself did not.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


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


ErrorKind = Literal["user", "bug", "interrupted"]


@dataclass(frozen=True)
class ErrorInfo:
    """A run-time error with its structure kept, for report.json, events and listeners.

    Like ComfyUI's `execution_error` (node id, node type, exception type and message), the
    parts stay apart so a tool can act on them (open the file, select the node, show the
    hint) instead of parsing a sentence. `text` is the one line the CLI prints, unchanged.
    """

    text: str
    message: str
    kind: ErrorKind = "user"
    node: str | None = None
    node_type: str | None = None
    item: str | None = None
    param: str | None = None
    file: str | None = None
    line: int | None = None
    hint: str | None = None
    exception: str | None = None  # the exception's type, for bugs
    traceback: str | None = field(default=None, compare=False)  # shown with --debug, never in report.json

    def __str__(self) -> str:
        return self.text

    @classmethod
    def from_user_error(cls, exc: UserError, node_type: str | None = None, traceback: str | None = None) -> ErrorInfo:
        return cls(text=str(exc), message=exc.message, kind="user", node=exc.node, node_type=node_type,
                   item=exc.item, param=exc.param, file=exc.file, line=exc.line, hint=exc.hint, traceback=traceback)

    def to_dict(self) -> dict[str, Any]:
        """The structured fields that are set (no `text`, no traceback)."""
        skip = {"text", "traceback"}
        return {k: v for k, v in asdict(self).items() if k not in skip and v is not None}


class RunFailed(UserError):
    """Some nodes failed; `report` says which and `errors` how (structured, one per failure).

    `user_error` is False when any failure was a bug (the CLI then exits 1); `details` are
    the tracebacks of the failures, printed with `--debug`.
    """

    def __init__(self, report: Any, errors: list[ErrorInfo]) -> None:
        messages = [str(e) for e in errors]
        super().__init__(messages[0] if len(messages) == 1 else
                         f"{len(messages)} node runs failed:\n" + "\n".join(f"  - {m}" for m in messages))
        self.report, self.errors = report, errors
        self.user_error = all(e.kind == "user" for e in errors)
        self.details = [e.traceback for e in errors if e.traceback]
