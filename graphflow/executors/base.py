"""The executor interface shared by the local and Ray executors."""
from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import Future
from typing import Any

from ..progress import EventBus
from ..tasks import Task, TaskResult


class Executor(ABC):
    name: str = ""

    def bind(self, bus: EventBus) -> None:
        """Called by the scheduler before a run so in-process tasks can report progress."""
        self.bus = bus

    @abstractmethod
    def submit(self, task: Task, inputs: dict[str, Any]) -> Future[TaskResult]:
        """Start a task; `inputs` are plain values."""

    @abstractmethod
    def wait_any(self, futures: list[Future[TaskResult]]) -> list[Future[TaskResult]]:
        """Block until at least one future is done; return the done ones."""

    def close(self) -> None:
        pass
