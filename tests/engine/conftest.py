from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


@pytest.fixture
def cli(tmp_path: Path):
    """Run the real `graphflow` CLI in a subprocess with the toy nodes as a plugin."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join([str(HERE), full_env.get("PYTHONPATH", "")])
        full_env["GRAPHFLOW_PLUGINS"] = "toy_plugin"
        full_env.setdefault("GRAPHFLOW_CACHE", str(tmp_path / "cache"))
        full_env.update(env or {})
        return subprocess.run([sys.executable, "-m", "graphflow.cli", *args], capture_output=True, text=True,
                              env=full_env, timeout=timeout, cwd=tmp_path)

    return run
