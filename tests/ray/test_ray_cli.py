"""`graphflow run --executor ray` end to end, in a subprocess (it starts its own local cluster)."""
from __future__ import annotations

import json
from pathlib import Path

GRAPH = """
graph: ray_cli
nodes:
  xs: {type: raytoy.items}
  mm: {type: raytoy.noisy_matmul, params: {seed: 3, size: 64}, inputs: {xs: xs}}
  f: {type: raytoy.fail_one, params: {bad_item: %s}, inputs: {xs: mm}}
  total: {type: raytoy.total, inputs: {xs: f}}
outputs: {total: total}
"""


def statuses(out: Path) -> dict[tuple[str, str | None], str]:
    report = json.loads((out / "report.json").read_text())
    return {(n["node"], n["item"]): n["status"] for n in report["nodes"]}


def test_cli_ray_runs_fails_like_local_and_resumes(tmp_path: Path, cli, ray_cluster: str) -> None:
    """On the test session's cluster through --ray-address (a fresh local cluster per CLI run would
    cost ~20 s each here; starting one from the CLI is covered by the slow tests)."""
    failing = tmp_path / "failing.yaml"
    failing.write_text(GRAPH % "c")
    # the same failure locally and on Ray: exit 2, the same one-line message
    local = cli("run", str(failing), "-q", "--out", str(tmp_path / "local"), "--cache", str(tmp_path / "lc"))
    on_ray = cli("run", str(failing), "-q", "--executor", "ray", "--ray-address", ray_cluster,
                 "--out", str(tmp_path / "ray"))
    assert local.returncode == 2, local.stderr
    assert on_ray.returncode == 2, on_ray.stderr
    message = [line for line in on_ray.stderr.splitlines() if line.startswith("error:")]
    assert message == [line for line in local.stderr.splitlines() if line.startswith("error:")]
    assert "item c is not acceptable" in message[0]
    st = statuses(tmp_path / "ray")
    assert st[("f", "c")] == "failed" and st[("total", None)] == "skipped"
    assert {st[("mm", i)] for i in "abcd"} == {"ran"}
    # with the failure gone, the re-run on Ray takes the finished work from the (shared) cache
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(GRAPH % "none")
    rerun = cli("run", str(fixed), "-q", "--executor", "ray", "--ray-address", ray_cluster,
                "--out", str(tmp_path / "ray2"))
    assert rerun.returncode == 0, rerun.stderr
    st = statuses(tmp_path / "ray2")
    assert {st[("mm", i)] for i in "abcd"} == {"cached"} and st[("xs", None)] == "cached"
    assert {st[("f", i)] for i in "abcd"} == {"ran"} and st[("total", None)] == "ran"
    report = json.loads((tmp_path / "ray2" / "report.json").read_text())
    assert report["executor"] == "ray"

