"""Shared helpers of the end-to-end tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GRAPHS = ROOT / "graphs"

# Small settings so an end-to-end run of the whole pipeline takes seconds, not minutes.
SMALL = [
    "--set", "views.params.count=2", "--set", "views.params.resolution=48", "--set", "views.params.texels_per_metre=0",
    "--set", "semantic.params.steps=3", "--set", "project.params.texels_per_metre=8",
    "--set", "project.params.min_size=16", "--set", "project.params.max_size=32",
    "--set", "pixel.params.steps=2", "--set", "superres.params.steps=2",
    "--set", "brdf.params.steps=2", "--set", "brdf.params.ao_rays=4",
    "--set", "preview.params.resolution=64",
]


def graphflow_cli(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("GRAPHFLOW_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "graphflow.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env)


def report_of(out: Path) -> list[dict]:
    return json.loads((out / "report.json").read_text())["nodes"]


def ran(out: Path) -> set[str]:
    return {n["node"] + (f"[{n['item']}]" if n["item"] else "") for n in report_of(out) if n["status"] == "ran"}


