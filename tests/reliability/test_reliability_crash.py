"""Crash safety through the real CLI: SIGKILL at seeded-random moments of a run, Ctrl-C (SIGINT),
then a re-run that resumes from the cache and writes the same bytes as an uninterrupted run (issue 8).

The graph (`rel_nodes.py`) has seeded random work with sleeps, a mapped stage and a file output.
Each work node appends `node[item] pid` to a marker file when its run finishes, so a test knows
what had finished before a kill: every marker but the last of a killed run (the last one may
have been killed between its marker and its cache write) must be reported `cached` afterwards.
"""
from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from reliability_helpers import cli_command, cli_env

from graphflow import registry
from graphflow.cache import DiskCache

GRAPH = """
graph: crash
nodes:
  n: {{type: rel.noise, params: {{size: 3000, seconds: {s}, marker: "{m}"}}}}
  a: {{type: rel.work, params: {{seconds: {s}, marker: "{m}"}}, inputs: {{x: n}}}}
  b: {{type: rel.work, params: {{seconds: {s}, marker: "{m}", seed: 1}}, inputs: {{x: a}}}}
  sp: {{type: rel.split, params: {{parts: 4}}, inputs: {{x: b}}}}
  m: {{type: rel.map_work, params: {{seconds: {s}, marker: "{m}"}}, inputs: {{xs: sp}}}}
  j: {{type: rel.join, inputs: {{xs: m}}}}
  c: {{type: rel.work, params: {{seconds: {s}, marker: "{m}", seed: 2}}, inputs: {{x: j, y: a}}}}
  save: {{type: rel.save, inputs: {{x: c}}}}
outputs: {{result: save}}
"""
WORK_TASKS = 8  # n, a, b, m[part0..3], c


def write_graph(folder: Path, seconds: float) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "marker.txt"
    graph = folder / "crash.yaml"
    graph.write_text(GRAPH.format(s=seconds, m=marker))
    return graph, marker


def markers(marker: Path) -> list[str]:
    return [line.split()[0] for line in marker.read_text().splitlines()] if marker.exists() else []


def _default_sigint() -> None:
    # a shell starts background jobs with SIGINT ignored, and children inherit that; a user's
    # terminal does not, so restore the default (Python then raises KeyboardInterrupt)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(graph: Path, cache: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(cli_command("run", str(graph), "-q", "--cache", str(cache), "--out", str(out)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=graph.parent,
                            env=cli_env(cache), preexec_fn=_default_sigint)


def finish(graph: Path, cache: Path, out: Path) -> dict[str, str]:
    """Run to completion; {'node' or 'node[item]': status}."""
    res = subprocess.run(cli_command("run", str(graph), "-q", "--cache", str(cache), "--out", str(out)),
                         capture_output=True, text=True, cwd=graph.parent, env=cli_env(cache), timeout=600)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    report = json.loads((out / "report.json").read_text())
    return {(e["node"] + (f"[{e['item']}]" if e["item"] else "")): e["status"] for e in report["nodes"]}


def assert_cache_consistent(cache: Path) -> int:
    """Every entry directory is whole and verifies (a reader never sees a half-written entry)."""
    registry.load_plugins()  # the value types (Scene, Views...) of the node packages, to decode entries
    disk = DiskCache(cache)
    count = 0
    for folder in disk.entries_dir.glob("*/*"):
        assert (folder / "entry.json").exists() and (folder / "data.safetensors").exists(), f"partial entry {folder}"
        assert disk.get(folder.name) is not None, f"cache entry {folder.name} does not verify"
        count += 1
    return count


def wait_for_markers(proc: subprocess.Popen, marker: Path, count: int, timeout: float = 300) -> bool:
    """True once the marker file has `count` lines; False if the run ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(markers(marker)) >= count:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError("the run made no progress")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The output bytes of an uninterrupted run (own cache, own marker)."""
    folder = tmp_path_factory.mktemp("reference")
    graph, _ = write_graph(folder, 0.0)
    statuses = finish(graph, folder / "cache", folder / "out")
    assert set(statuses.values()) == {"ran"}
    return (folder / "out" / "result.bin").read_bytes()


def kill_round(folder: Path, rng: random.Random, max_kills: int, seconds: float
               ) -> tuple[int, dict[str, str], set[str]]:
    """SIGKILL runs at random moments until the graph finishes on its own or `max_kills` kills;
    then run it to the end. Returns (kills, final statuses, tasks that had safely finished)."""
    graph, marker = write_graph(folder, seconds)
    cache, out = folder / "cache", folder / "out"
    kills = 0
    safely_finished: set[str] = set()
    while kills < max_kills:
        before = len(markers(marker))
        proc = start(graph, cache, out)
        try:
            if rng.random() < 0.25:
                # anywhere: during start-up, graph checks, keying or a node
                time.sleep(rng.uniform(0.0, 4.0))
                alive = proc.poll() is None
            else:
                # during the work: after 0-2 more tasks finished, plus a random part of a task
                alive = wait_for_markers(proc, marker, before + rng.choice([0, 0, 1, 1, 2]))
                time.sleep(rng.uniform(0.0, seconds * 1.2))
                alive = alive and proc.poll() is None
            if not alive:
                proc.communicate(timeout=600)
                assert proc.returncode == 0, proc.stderr
                break  # it finished before the kill
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        kills += 1
        finished_now = markers(marker)[before:]
        safely_finished |= set(finished_now[:-1])  # the last one may have died before its cache write
        assert_cache_consistent(cache)
    return kills, finish(graph, cache, out), safely_finished


def check_resumed(statuses: dict[str, str], safely_finished: set[str], out: Path, reference: bytes) -> None:
    assert all(s in ("ran", "cached") for s in statuses.values()), statuses
    not_cached = [t for t in safely_finished if statuses.get(t) != "cached"]
    assert not not_cached, f"finished before a kill but re-ran: {not_cached} ({statuses})"
    assert (out / "result.bin").read_bytes() == reference, "output bytes differ from an uninterrupted run"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_at_random_moments_then_resume(tmp_path: Path, reference: bytes, seed: int) -> None:
    """At least 6 kills per seed; a round that finishes on its own is checked and a new round
    (fresh cache) takes the remaining kills."""
    rng = random.Random(seed)
    total, reused, rounds = 0, 0, 0
    while total < 6:
        folder = tmp_path / f"round{rounds}"
        kills, statuses, safely_finished = kill_round(folder, rng, 6 - total, seconds=0.4)
        check_resumed(statuses, safely_finished, folder / "out", reference)
        if kills:
            ran = [t for t, s in statuses.items() if s == "ran" and t not in ("sp", "j", "save")]
            assert len(ran) < WORK_TASKS or not safely_finished, f"the kills lost finished work: {statuses}"
        again = finish(folder / "crash.yaml", folder / "cache", folder / "out2")
        assert set(again.values()) == {"cached"}, again
        cached = [t for t, s in statuses.items() if s == "cached" and t not in ("sp", "j", "save")]
        total, reused, rounds = total + kills, reused + len(cached), rounds + 1
        assert rounds <= 6, "the kills keep missing the run"
    print(f"seed {seed}: {total} kills survived in {rounds} round(s); {reused} finished tasks reused by the resumed runs")


def test_sigkill_once_then_resume(tmp_path: Path, reference: bytes) -> None:
    """The fast variant: one kill in the middle of the work."""
    graph, marker = write_graph(tmp_path, 0.3)
    cache, out = tmp_path / "cache", tmp_path / "out"
    proc = start(graph, cache, out)
    assert wait_for_markers(proc, marker, 3)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    finished = markers(marker)
    assert assert_cache_consistent(cache) >= 2
    statuses = finish(graph, cache, out)
    check_resumed(statuses, set(finished[:-1]), out, reference)


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path: Path, reference: bytes) -> None:
    graph, marker = write_graph(tmp_path, 0.5)
    cache, out = tmp_path / "cache", tmp_path / "out"
    proc = start(graph, cache, out)
    assert wait_for_markers(proc, marker, 2)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    stopped_after = time.monotonic() - sent
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert "interrupted" in stderr and "resume" in stderr, stderr
    assert stopped_after < 5.0, f"Ctrl-C took {stopped_after:.1f} s to stop the run"
    finished = markers(marker)
    assert_cache_consistent(cache)
    statuses = finish(graph, cache, out)
    check_resumed(statuses, set(finished[:-1]), out, reference)
