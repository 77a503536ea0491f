"""Concurrency on one cache directory (issue 8): two CLI runs of the same graph at once both
succeed with identical output bytes, and two processes storing the same keys through
`DiskCache.put` never leave or read a half-written entry.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_helpers import cli_command, cli_env
from test_reliability_crash import assert_cache_consistent, write_graph

from graphflow.cache import DiskCache

HERE = Path(__file__).resolve().parent


def _two_runs(graph: Path, cache: Path, outs: list[Path]) -> list[subprocess.CompletedProcess]:
    procs = [subprocess.Popen(cli_command("run", str(graph), "-q", "--cache", str(cache), "--out", str(out)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=graph.parent,
                              env=cli_env(cache)) for out in outs]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return results


def test_two_runs_share_one_cache(tmp_path: Path) -> None:
    graph, _ = write_graph(tmp_path, 0.15)
    cache = tmp_path / "cache"
    outs = [tmp_path / "out1", tmp_path / "out2"]
    results = _two_runs(graph, cache, outs)
    for res in results:
        assert res.returncode == 0, res.stderr
        assert "Traceback" not in res.stderr and "corrupt" not in res.stderr, res.stderr
    first, second = [(out / "result.bin").read_bytes() for out in outs]
    assert first == second
    assert assert_cache_consistent(cache) >= 8
    # a third run finds everything
    third = subprocess.run(cli_command("run", str(graph), "-q", "--cache", str(cache), "--out", str(tmp_path / "o3")),
                           capture_output=True, text=True, cwd=tmp_path, env=cli_env(cache), timeout=600)
    assert third.returncode == 0, third.stderr
    report = json.loads((tmp_path / "o3" / "report.json").read_text())
    assert {e["status"] for e in report["nodes"]} == {"cached"}
    assert (tmp_path / "o3" / "result.bin").read_bytes() == first


def _stress(cache: Path, workers: int, n: int) -> list[dict]:
    procs = [subprocess.Popen([sys.executable, str(HERE / "cache_stress.py"), str(cache), str(w), str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(cache))
             for w in range(workers)]
    summaries = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        assert "corrupt" not in stderr and "cannot be decoded" not in stderr, stderr[-3000:]
        summaries.append(json.loads(stdout.strip().splitlines()[-1]))
    return summaries


def _check_all(cache: Path, n: int) -> None:
    sys.path.insert(0, str(HERE))
    from cache_stress import check

    disk = DiskCache(cache)
    assert all(check(disk, i) for i in range(n))
    assert assert_cache_consistent(cache) == n
    assert not list((cache / "tmp").iterdir()), "temporary entries left behind"


def test_disk_cache_put_from_two_processes(tmp_path: Path) -> None:
    summaries = _stress(tmp_path / "cache", workers=2, n=150)
    assert sum(s["random_hits"] for s in summaries) > 0
    _check_all(tmp_path / "cache", 150)


@pytest.mark.slow
def test_disk_cache_put_from_four_processes_many_entries(tmp_path: Path) -> None:
    summaries = _stress(tmp_path / "cache", workers=4, n=600)
    assert len(summaries) == 4
    _check_all(tmp_path / "cache", 600)
