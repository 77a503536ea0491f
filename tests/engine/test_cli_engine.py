from __future__ import annotations

import json
from pathlib import Path

GRAPH = """
graph: cli
inputs:
  v: {type: float, default: 2.0}
nodes:
  c: {type: toy.const, params: {value: 3}}
  s: {type: toy.scale, inputs: {x: c}}
  sp: {type: toy.split}
  m: {type: toy.map_square, inputs: {xs: sp}}
  t: {type: toy.total, inputs: {xs: m}}
outputs: {scaled: s, total: t}
"""


def write(tmp_path: Path, text: str = GRAPH, name: str = "g.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_run_writes_report_and_reruns_nothing(tmp_path: Path, cli) -> None:
    g = write(tmp_path)
    out = tmp_path / "out"
    first = cli("run", str(g), "--out", str(out), "-q")
    assert first.returncode == 0, first.stderr
    report = json.loads((out / "report.json").read_text())
    assert {n["status"] for n in report["nodes"]} == {"ran"} and "total_seconds" in report
    assert {(n["node"], n["item"]) for n in report["nodes"]} >= {("m", "a"), ("m", "b"), ("m", "c")}
    second = cli("run", str(g), "--out", str(out), "-q")
    assert second.returncode == 0
    report = json.loads((out / "report.json").read_text())
    assert {n["status"] for n in report["nodes"]} == {"cached"}
    third = cli("run", str(g), "--out", str(out), "-q", "--set", "s.params.factor=4")
    assert third.returncode == 0, third.stderr
    report = json.loads((out / "report.json").read_text())
    assert {n["node"] for n in report["nodes"] if n["status"] == "ran"} == {"s"}


def test_user_errors_exit_2_without_traceback(tmp_path: Path, cli) -> None:
    g = write(tmp_path)
    cases = [
        (["run", str(g), "--set", "c.params.size=-1"], "size"),
        (["run", str(g), "--set", "nope.params.x=1"], "nope"),
        (["run", str(g), "--input", "zzz=1"], "zzz"),
        (["run", str(tmp_path / "missing.yaml")], "missing.yaml"),
        (["validate", str(write(tmp_path, "nodes: {a: {type: toy.nothing}}", "bad.yaml"))], "toy.nothing"),
        (["run", str(g), "--executor", "spark"], "spark"),
        (["run", str(g), "--cache-mem", "lots"], "cache-mem"),
    ]
    for args, culprit in cases:
        res = cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert "Traceback" not in res.stderr and culprit in res.stderr, (args, res.stderr)


def test_failing_node_user_error_vs_bug(tmp_path: Path, cli) -> None:
    g = write(tmp_path, """
nodes:
  c: {type: toy.const}
  f: {type: toy.fail, params: {user: true}, inputs: {x: c}}
  ok: {type: toy.scale, inputs: {x: c}}
outputs: {f: f, ok: ok}
""")
    res = cli("run", str(g), "--out", str(tmp_path / "o"), "-q")
    assert res.returncode == 2 and "node 'f'" in res.stderr and "not acceptable" in res.stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    status = {n["node"]: n["status"] for n in report["nodes"]}
    assert status == {"c": "ran", "f": "failed", "ok": "ran"}
    g.write_text(g.read_text().replace("user: true", "user: false"))
    res = cli("run", str(g), "-q")
    assert res.returncode == 1 and "Traceback" not in res.stderr and "ZeroDivisionError" in res.stderr
    res = cli("run", str(g), "-q", "--debug")
    assert "Traceback" in res.stderr


def test_show_nodes_validate_cache(tmp_path: Path, cli) -> None:
    g = write(tmp_path)
    mer = cli("show", str(g), "--format", "mermaid")
    assert mer.returncode == 0 and "flowchart" in mer.stdout and "sp -->|xs| m" in mer.stdout
    dot = cli("show", str(g), "--format", "dot")
    assert dot.returncode == 0 and '"c" -> "s"' in dot.stdout
    listing = cli("nodes", "--json")
    types = {n["name"]: n for n in json.loads(listing.stdout)}
    assert types["toy.map_square"]["inputs"]["xs"]["type"] == "Keyed[Tensor]"
    assert "properties" in types["toy.const"]["params"]
    assert cli("validate", str(g)).returncode == 0
    cache = tmp_path / "c"
    cli("run", str(g), "--cache", str(cache), "-q")
    info = json.loads(cli("cache", "info", "--cache", str(cache)).stdout)
    assert info["entries"] > 0
    assert cli("cache", "clear", "--cache", str(cache)).returncode == 0
    assert json.loads(cli("cache", "info", "--cache", str(cache)).stdout)["entries"] == 0


def test_unwritable_cache_dir(tmp_path: Path, cli) -> None:
    g = write(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = cli("run", str(g), "--cache", str(blocker / "sub"))
    assert res.returncode == 2 and "cache" in res.stderr and "Traceback" not in res.stderr
