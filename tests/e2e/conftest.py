from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_helpers import GRAPHS, SMALL, graphflow_cli  # noqa: E402


@pytest.fixture(scope="session")
def demo_small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small demo run shared by the incremental tests and the run page's browser test (never written to:
    tests that re-run write into other folders)."""
    root = tmp_path_factory.mktemp("demo")
    cache, out = root / "cache", root / "out"
    res = graphflow_cli("run", str(GRAPHS / "demo_room.yaml"), "--out", str(out), "--cache", str(cache), "-q",
                        *SMALL, cwd=root)
    assert res.returncode == 0, res.stderr
    return {"root": root, "cache": cache, "out": out}
