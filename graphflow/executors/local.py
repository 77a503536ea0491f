"""Runs every task in this process, one at a time, in the scheduler's order."""
from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from ..progress import EventBus
from ..tasks import Task, TaskResult, execute_task
from .base import Executor


class LocalExecutor(Executor):
    name = "local"

    def __init__(self) -> None:
        self.bus = EventBus()

    def submit(self, task: Task, inputs: dict[str, Any]) -> Future[TaskResult]:
        future: Future[TaskResult] = Future()
        result = execute_task(task, inputs, self.bus)
        if result.interrupted:
            raise KeyboardInterrupt
        future.set_result(result)
        return future

    def wait_any(self, futures: list[Future[TaskResult]]) -> list[Future[TaskResult]]:
        return [f for f in futures if f.done()]
