"""Helpers for testing nodes without a scheduler: a real Context."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch

from .node import Context
from .progress import EventBus, ProgressReporter


def make_context(node_id: str = "test", item: str | None = None, seed: int = 0, device: str = "cpu",
                 scratch: Path | None = None) -> Context:
    """A Context like the scheduler's, for calling `Node.run` directly in tests."""
    return Context(
        node_id=node_id,
        item=item,
        device=torch.device(device),
        seed=seed,
        progress=ProgressReporter(EventBus(), node_id, item, show=False),
        log=logging.getLogger(f"graphflow.node.{node_id}"),
        scratch=scratch or Path(tempfile.mkdtemp(prefix="graphflow-test-")),
    )
