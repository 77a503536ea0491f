"""The per-texel rates behind the cost line of `texture.project` (`nodes/texture/cost.py` RATES, issue 23).

Runs `graphs/demo_room.yaml` through the real CLI (or reads the report.json of such a run with --report),
computes each instance's atlas texels with `cost.instance_costs` (texture.project's own rule) and measures, per
node type after the projection, seconds per million atlas texels (`fit`). Seconds are each item's CPU seconds
over its threads (report.json `cpu_seconds / cpu_threads`): what the item takes on an idle machine with the
node's threads, so a run on a busy shared machine still measures the work, not the queue. Prints the RATES
table to paste, then one JSON line.

    python bench/cost_rates.py                       # runs the demo graph (minutes on 2 cores)
    python bench/cost_rates.py --report out/report.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graphflow import Graph  # noqa: E402
from nodes.scene.demo_room import build_room_scene  # noqa: E402
from nodes.scene.segment import segment_scene  # noqa: E402
from nodes.texture.cost import instance_costs  # noqa: E402
from nodes.texture.nodes import ProjectParams  # noqa: E402

GRAPH = ROOT / "graphs" / "demo_room.yaml"


def run_demo(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "graphflow.cli", "run", str(GRAPH), "--out", str(out), "--cache",
                    str(out / "cache"), "-q"], check=True, cwd=ROOT)
    return out / "report.json"


def fit(report: dict, texels: dict[str, float], types: dict[str, str]) -> dict[str, tuple[float, int]]:
    """node type -> (seconds per million atlas texels, entries): the node's seconds over the texels they
    served, summed over its items (a whole-scene node such as an export serves all of them). A ratio and not a
    fixed + per-texel fit: over 7 items of a busy machine the two-term fit came out negative for one stage."""
    total = sum(texels.values()) / 1e6
    sums: dict[str, list[float]] = {}
    for entry in report["nodes"]:
        if entry["status"] != "ran" or entry["node"] in ("scene", "segment", "bind", "views"):
            continue  # before the projection: not part of what the texels cost
        seconds = entry["cpu_seconds"] / max(entry.get("cpu_threads") or 1.0, 1.0)
        served = texels[entry["item"]] / 1e6 if entry["item"] in texels else total
        acc = sums.setdefault(types[entry["node"]], [0.0, 0.0, 0])
        acc[0], acc[1], acc[2] = acc[0] + seconds, acc[1] + served, acc[2] + 1
    return {t: (round(s / m, 1), int(n)) for t, (s, m, n) in sums.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", type=Path, help="report.json of a demo_room.yaml run (default: run it)")
    args = parser.parse_args()
    report_path = args.report or run_demo(Path(tempfile.mkdtemp(prefix="cost-rates-")))
    report = json.loads(report_path.read_text())
    graph = Graph.from_yaml(GRAPH)
    settings = ProjectParams(**graph.nodes["project"].params).settings()
    scene = build_room_scene()
    costs = instance_costs(scene, segment_scene(scene, by="node"), settings)
    texels = {c.name: float(c.texels) for c in costs}
    types = {nid: spec.type for nid, spec in graph.nodes.items()}
    rates = fit(report, texels, types)
    print(f"# {len(costs)} instances, {sum(texels.values()) / 1e6:.2f} M texels; node type: s per M texels")
    for node_type, (per, entries) in sorted(rates.items()):
        print(f'    "{node_type}": {per},  # {entries} entries')
    print(json.dumps({"texels": texels, "rates": rates}))


if __name__ == "__main__":
    main()
