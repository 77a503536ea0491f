"""Incremental re-runs on the demo room, measured in one run.

Full run (cold cache) vs the same command again (no change) vs a re-run after changing
one instance's reference (`scene.params.seeds.sofa`) vs a re-run after changing a BRDF
param. Ideal: the one-reference re-run costs 1/N of the full run for N instances (plus
the cheap gathering nodes). Last line: one JSON object.

    python bench/incremental.py            # shipped settings (minutes)
    python bench/incremental.py --small    # tiny settings (seconds), same structure
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "views.params.count=2", "--set", "views.params.resolution=48", "--set", "views.params.texels_per_metre=0", "--set", "semantic.params.steps=4",
         "--set", "project.params.texels_per_metre=8", "--set", "project.params.min_size=16",
         "--set", "project.params.max_size=32", "--set", "pixel.params.steps=2",
         "--set", "superres.params.steps=2", "--set", "brdf.params.steps=2"]


def run(cache: Path, out: Path, extra: list[str]) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "graphflow.cli", "run", str(ROOT / "graphs" / "demo_room.yaml"),
                    "--cache", str(cache), "--out", str(out), "-q", *extra], check=True)
    seconds = time.perf_counter() - start
    return seconds, json.loads((out / "report.json").read_text())["nodes"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args()
    base = SMALL if args.small else []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        full_s, nodes = run(cache, Path(tmp) / "full", base)
        noop_s, noop_nodes = run(cache, Path(tmp) / "noop", base)
        ref_s, ref_nodes = run(cache, Path(tmp) / "ref", [*base, "--set", "scene.params.seeds.sofa=11"])
        brdf_s, brdf_nodes = run(cache, Path(tmp) / "brdf", [*base, "--set", "brdf.params.steps=7"])
    n = len({e["item"] for e in nodes if e["node"] == "semantic"})
    ran = lambda rep: sorted(e["node"] + (f"[{e['item']}]" if e["item"] else "")  # noqa: E731
                             for e in rep if e["status"] == "ran")
    print(f"instances {n}")
    print(f"full run            {full_s:8.2f} s")
    print(f"no change           {noop_s:8.2f} s  ran: {ran(noop_nodes)}")
    print(f"one reference       {ref_s:8.2f} s  ran: {ran(ref_nodes)}")
    print(f"one brdf param      {brdf_s:8.2f} s  ran: {ran(brdf_nodes)}")
    print(json.dumps({"full_s": round(full_s, 2), "noop_s": round(noop_s, 2), "one_ref_s": round(ref_s, 2),
                      "one_ref_ratio": round(ref_s / full_s, 3), "ideal_ratio": round(1 / n, 3),
                      "brdf_s": round(brdf_s, 2), "brdf_ratio": round(brdf_s / full_s, 3), "n_instances": n,
                      "small": args.small}))


if __name__ == "__main__":
    main()
