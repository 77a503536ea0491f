from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from helpers.cli import cli_env
from helpers.toys import toys

import graphflow as gf
from graphflow import Graph
from graphflow.cache import DiskCache, Entry, MemoryCache

CHAIN = """
graph: chain
nodes:
  c: {type: toy.const, params: {value: 1}}
  s1: {type: toy.slow, params: {seconds: 0.0}, inputs: {x: c}}
  s2: {type: toy.scale, inputs: {x: s1}}
outputs: {out: s2}
"""


def test_corrupt_disk_entry_is_recomputed_not_a_crash(tmp_path: Path, caplog) -> None:
    g = Graph.from_yaml(CHAIN, registry=toys)
    first = gf.run(g, cache=tmp_path)
    data_files = sorted(tmp_path.glob("v1/*/*/data.safetensors"))
    assert data_files
    for f in data_files:
        raw = bytearray(f.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        f.write_bytes(bytes(raw))
    second = gf.run(g, cache=tmp_path)
    assert torch.equal(first.outputs["out"], second.outputs["out"])
    assert {e.status for e in second.report.entries} == {"ran"}
    assert "corrupt" in caplog.text


def test_truncated_and_garbage_entries(tmp_path: Path) -> None:
    disk = DiskCache(tmp_path)
    entry = Entry("ab" * 32, {"out": torch.arange(10)}, {"out": "d"}, seconds=1.0, nbytes=80)
    assert disk.put(entry)
    (tmp_path / "v1" / "ab" / ("ab" * 32) / "entry.json").write_text("{not json")
    disk2 = DiskCache(tmp_path)
    assert disk2.get("ab" * 32) is None and disk2.peek("ab" * 32) is None


def test_memory_tier_is_bounded_and_keeps_expensive_entries() -> None:
    mem = MemoryCache(max_bytes=1000)
    mem.put(Entry("cheap", {}, {}, seconds=0.001, nbytes=400))
    mem.put(Entry("dear", {}, {}, seconds=10.0, nbytes=400))
    mem.put(Entry("new", {}, {}, seconds=0.5, nbytes=400))
    assert mem.bytes <= 1000
    assert "dear" in mem and "new" in mem and "cheap" not in mem


def test_killed_run_resumes_with_finished_nodes_cached(tmp_path: Path, cli) -> None:
    graph = tmp_path / "g.yaml"
    marker = tmp_path / "marker.txt"
    graph.write_text(f"""
graph: kill
nodes:
  c: {{type: toy.const}}
  fast: {{type: toy.slow, params: {{seconds: 0.0, marker: "{marker}"}}, inputs: {{x: c}}}}
  slow: {{type: toy.slow, params: {{seconds: 30}}, inputs: {{x: fast}}}}
outputs: {{out: slow}}
""")
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-m", "graphflow.cli", "run", str(graph), "--cache", str(cache), "-q"],
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # `fast` finished; its entry is being (or has been) renamed into place
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    out = tmp_path / "out"
    res = cli("run", str(graph), "--cache", str(cache), "--out", str(out), "-q", "--set", "slow.params.seconds=0")
    assert res.returncode == 0, res.stderr
    import json

    report = json.loads((out / "report.json").read_text())
    status = {n["node"]: n["status"] for n in report["nodes"]}
    assert status["c"] == "cached" and status["fast"] == "cached" and status["slow"] == "ran"


def test_orphaned_write_folders_are_swept(tmp_path: Path) -> None:
    DiskCache(tmp_path)
    orphan = tmp_path / "tmp" / "deadbeef.123.abcd"
    orphan.mkdir()
    (orphan / "data.safetensors").write_bytes(b"half")
    fresh = tmp_path / "tmp" / "cafe.456.ef01"
    fresh.mkdir()
    old = time.time() - 7200
    os.utime(orphan, (old, old))
    DiskCache(tmp_path)
    assert not orphan.exists() and fresh.exists()
