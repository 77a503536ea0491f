"""The real `graphflow` CLI in a subprocess, as a user runs it: what the root `cli` fixture returns."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
TOY_PLUGIN = "helpers.toy_plugin"

CliRunner = Callable[..., subprocess.CompletedProcess]


def cli_env(cache: Path | None = None, plugins: str = TOY_PLUGIN, extra_path: list[Path] = (),  # type: ignore[assignment]
            env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI subprocess: `tests/` (and `extra_path`) importable, the toy nodes
    registered, the cache in `cache` when given (tests stay isolated even when CI sets GRAPHFLOW_CACHE)."""
    full = dict(os.environ)
    full["PYTHONPATH"] = os.pathsep.join([*map(str, extra_path), str(TESTS), full.get("PYTHONPATH", "")])
    full["GRAPHFLOW_PLUGINS"] = plugins
    if cache is not None:
        full["GRAPHFLOW_CACHE"] = str(cache)
    full.update(env or {})
    return full


def make_cli(cwd: Path, *, plugins: str = TOY_PLUGIN, timeout: float = 120,
             extra_path: list[Path] = ()) -> CliRunner:  # type: ignore[assignment]
    """`run(*args, env=None, timeout=None)` runs `python -m graphflow.cli ARGS` in `cwd` with the
    cache in `cwd/cache` (unless `env` or the caller's environment names one); output captured as
    text, stderr a pipe (not a terminal), as in a log."""
    default_timeout = timeout

    def run(*args: str, env: dict[str, str] | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "graphflow.cli", *args], capture_output=True, text=True,
                              env=cli_env(cwd / "cache", plugins, extra_path, env),
                              timeout=timeout or default_timeout, cwd=cwd)

    return run
