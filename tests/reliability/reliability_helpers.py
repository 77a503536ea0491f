"""Shared helpers for the reliability tests: the real CLI in a subprocess, with the toy nodes as a plugin.

The toy nodes live in `tests/helpers/toys.py` and `rel_nodes.py` here (registered for
subprocesses through `GRAPHFLOW_PLUGINS=helpers.toy_plugin,rel_nodes`); the real catalogue (`nodes`) is always registered
through the entry point, so scene/reference cases use `io.load_scene`, `segment.parts` and `refs.bind`.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers.cli import cli_env as _cli_env

HERE = Path(__file__).resolve().parent
ASSETS = Path(__file__).resolve().parents[2].parent / "shared" / "assets"
BOX = ASSETS / "Box" / "Box.glb"
CHAIR = ASSETS / "SheenChair" / "SheenChair.gltf"



def cli_env(cache: Path | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = _cli_env(plugins="helpers.toy_plugin,rel_nodes", extra_path=[HERE],
                   env={"OMP_NUM_THREADS": "1"})  # polite on a shared 2-core machine; also keeps runs deterministic
    if cache is not None:
        env["GRAPHFLOW_CACHE"] = str(cache)
    env.update(extra or {})
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "graphflow.cli", *args]


def run_cli(*args: str, cwd: Path, cache: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 300, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(*args), capture_output=True, text=True, cwd=cwd,
                          env=cli_env(cache if cache is not None else cwd / "cache", env), timeout=timeout, **kwargs)


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared asset {path} is absent (expected ../shared/assets next to the repository)")
    return path
