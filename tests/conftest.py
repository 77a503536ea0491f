"""Fixtures for every test folder: the CLI runner factory and the default runner."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.cli import CliRunner, make_cli

# Every run in the tests (and the CLI subprocesses they start) checks that nodes keep their
# `reads_only` promise: an input handed over without a copy comes back unchanged (graphflow/node.py).
os.environ.setdefault("GRAPHFLOW_CHECK_READ_ONLY", "1")


@pytest.fixture
def cli_factory(tmp_path: Path) -> Callable[..., CliRunner]:
    """`cli_factory(plugins=..., timeout=...)`: a runner of the real CLI in a subprocess, in `tmp_path`."""

    def factory(**options: object) -> CliRunner:
        return make_cli(tmp_path, **options)  # type: ignore[arg-type]

    return factory


@pytest.fixture
def cli(cli_factory: Callable[..., CliRunner]) -> CliRunner:
    """The real `graphflow` CLI in a subprocess with the toy nodes as a plugin."""
    return cli_factory()
