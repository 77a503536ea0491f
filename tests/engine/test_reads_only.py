"""`Node.reads_only`: inputs handed to `run` without a private copy, and the check that they stay unchanged."""
from __future__ import annotations

from typing import Any

import pytest
import torch

from graphflow import Node
from graphflow.node import NoParams
from graphflow.tasks import Task, execute_task

SEEN: dict[str, Any] = {}


class Reader(Node):
    name = "test.reader"
    reads_only = ("shared",)

    def run(self, ctx: Any, shared: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        SEEN.update(shared=shared, own=own)
        return shared + own


class Writer(Reader):
    name = "test.writer"

    def run(self, ctx: Any, shared: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        shared.add_(1.0)  # breaks the promise
        return shared * 2


def _task(cls: type[Node]) -> Task:
    return Task(node_id="n", item="a", key="k", node_cls=cls, params=NoParams(), seed=0)


def test_a_read_only_input_is_not_copied_and_the_others_are() -> None:
    shared, own = torch.ones(4), torch.ones(4)
    result = execute_task(_task(Reader), {"shared": shared, "own": own})
    assert result.error is None
    assert SEEN["shared"] is shared  # the cache's own value: no copy per item
    assert SEEN["own"] is not own and torch.equal(SEEN["own"], own)


def test_modifying_a_read_only_input_is_reported_as_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHFLOW_CHECK_READ_ONLY", "1")
    result = execute_task(_task(Writer), {"shared": torch.ones(4), "own": torch.ones(4)})
    assert result.error is not None and result.error.kind == "bug"
    assert "modified its input 'shared' in place" in str(result.error)
