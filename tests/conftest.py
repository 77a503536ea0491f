"""Fixtures for every test folder: the CLI runner factory and the default runner."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.cli import CliRunner, make_cli


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
