"""Executors run tasks; the scheduler decides which tasks and what they get.

An executor only needs `submit(task, inputs) -> Future[TaskResult]`,
`wait_any(futures) -> done futures`, `close()` and a `name`.
"""
from __future__ import annotations

from .base import Executor
from .local import LocalExecutor


def make_executor(name: str, **options: object) -> Executor:
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        from .ray import RayExecutor  # optional dependency

        return RayExecutor(**options)  # type: ignore[arg-type]
    from ..errors import UserError

    raise UserError(f"unknown executor '{name}'", param="--executor", hint="use local or ray")


__all__ = ["Executor", "LocalExecutor", "make_executor"]
