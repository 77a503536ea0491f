"""How the texturing graph's cost grows with a scene (issue 14 item 5), measured in one run.

Procedural rooms (a floor and N-1 boxes of the demo room's construction, `nodes/scene/demo_room.py`, each
face a subdivided quad with packed UVs) are written as OBJ with procedural swatches and run through
`graphs/texture_scene.yaml` by the real CLI at a reduced density (`--set` knobs below). Per run and stage:
wall seconds (report.json, summed over items), peak RSS and texels per second (the final baseColor texels
over the stage's seconds). Then the exponents of total time against instances (same triangles and texels
per instance) and against triangles (same instances), by a least-squares fit in log-log, and the fixed cost
per semantic item: the intercept of an item's seconds against its steps (two runs, `steps` and `4 * steps`;
item by item, the median over items) over its seconds at `steps`, and the same at the shipped graph's
settings (10 and 70 steps, as a share of a 30-step item). The first item is left out: it also pays the
process's one-time imports (~1.5 s, `warm_up_s`), not a cost per instance; the mean-item intercept is
printed too. Per stage, `cpu_threads` (report.json) tells whether it ran on one thread; the largest share
of the run one single-threaded stage took is printed. The last printed line is JSON. On a shared machine the load changes between runs:
the exponents and the intercept are only as good as the load was steady (`uptime` is printed per run).

    python bench/scene_scale.py                # 10 and 50 instances (10k and 50k triangles), 10 x 10k: minutes
    python bench/scene_scale.py --large        # adds 200 instances (1M triangles): tens of minutes on 2 cores
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nodes.scene.demo_room import DemoInstance, Quad, box, instance_mesh
from nodes.scene.patterns import PATTERNS

GRAPH = ROOT / "graphs" / "texture_scene.yaml"
STAGES = ("scene", "segment", "views", "project", "semantic", "pixel", "superres", "brdf", "export", "export_usd",
          "export_mtlx", "preview")
SINGLE_THREAD_BELOW = 1.3  # threads on average; on 2 cores a stage below this ran mostly on one thread


def shipped_knobs(steps: int, density: float) -> list[str]:
    """The shipped graph's own settings (density 128, its steps) but `steps` semantic steps."""
    return ["--set", f"semantic.params.steps={steps}"]


def knobs(steps: int, density: float) -> list[str]:
    """Reduced density and steps: the same graph and code paths, small enough for a 2-core CPU."""
    sets = {"views.params.texels_per_metre": density, "views.params.resolution": 64, "project.params.texels_per_metre": density,
            "project.params.min_size": 16, "project.params.max_size": 128, "semantic.params.steps": steps,
            "pixel.params.steps": max(1, steps // 2),
            "superres.params.steps": max(1, steps // 2), "brdf.params.steps": max(1, steps // 2),
            "brdf.params.ao_rays": 8, "preview.params.resolution": 64}
    return [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]


def room_instances(count: int, tris_per_instance: int) -> list[DemoInstance]:
    """A floor under a grid of count - 1 boxes (0.6 m, 1.2 m apart), each with about `tris_per_instance`."""
    side = max(1, math.ceil(math.sqrt(count - 1)))
    box_cells = max(1, round(math.sqrt(tris_per_instance / 12)))  # 6 faces x 2 triangles x cells^2
    floor_cells = max(1, round(math.sqrt(tris_per_instance / 2)))
    width = 1.2 * side + 1.0
    floor = Quad((-width / 2, 0.0, -width / 2), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), width, width, (0.0, 1.0, 0.0),
                 (floor_cells, floor_cells))
    out = [DemoInstance("floor", "wood", "floor", "floor_tiles", "floor tiles", (floor,), swatch_size=1.2)]
    for k in range(count - 1):
        x, z = -width / 2 + 1.1 + 1.2 * (k % side), -width / 2 + 1.1 + 1.2 * (k // side)
        quads = tuple(Quad(q.origin, q.u_axis, q.v_axis, q.width, q.height, q.normal, (box_cells, box_cells))
                      for q in box((x, 0.3, z), (0.6, 0.6, 0.6), skip_bottom=False))
        out.append(DemoInstance(f"box_{k:03d}", "wood", "box", "wood_grain", "oak", quads, swatch_size=0.6))
    return out


def write_room(folder: Path, count: int, tris_per_instance: int) -> tuple[Path, Path, int]:
    """room.obj (one group per instance, UVs and normals), two swatch PNGs and refs.yaml; returns triangles."""
    folder.mkdir(parents=True, exist_ok=True)
    lines, base, triangles = [], 1, 0
    for instance in room_instances(count, tris_per_instance):
        part = instance_mesh(instance)
        lines.append(f"g {instance.name}")
        lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in part.positions]
        lines += [f"vt {u:.6f} {1 - v:.6f}" for u, v in part.uvs]  # OBJ's v points up
        lines += [f"vn {x:.6f} {y:.6f} {z:.6f}" for x, y, z in part.normals]
        lines += [f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}" for a, b, c in (part.faces + base).tolist()]
        base += len(part.positions)
        triangles += len(part.faces)
    (folder / "room.obj").write_text("\n".join(lines) + "\n")
    for name in ("floor_tiles", "wood_grain"):
        srgb = PATTERNS[name](torch.Generator().manual_seed(0), 128).clamp(0, 1)
        Image.fromarray((srgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(folder / f"{name}.png")
    refs = folder / "refs.yaml"
    refs.write_text("instances:\n  floor: {images: floor_tiles.png, material: ceramic, size: 1.2}\n"
                    "default: {images: wood_grain.png, material: wood, size: 0.6}\n")
    return folder / "room.obj", refs, triangles


def run_graph(folder: Path, cache: Path, obj: Path, refs: Path, extra: list[str]) -> dict:
    """One CLI run; its wall seconds, report entries and the final baseColor texels."""
    out = folder / "out"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "graphflow.cli", "run", str(GRAPH), "--input", f"scene={obj}",
                           "--input", f"references={refs}", "--cache", str(cache), "--out", str(out), "-q", *extra],
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    entries = json.loads((out / "report.json").read_text())["nodes"]
    texels = 0
    for png in sorted((out / "asset_textures").glob("*_baseColor.png")):
        with Image.open(png) as image:
            texels += image.width * image.height
    return {"wall": wall, "entries": entries, "texels": texels}


def stage_table(entries: list[dict], texels: int) -> dict[str, dict[str, float]]:
    """Per stage: seconds (summed over items), items, peak RSS (MB) and final texels per second."""
    table: dict[str, dict[str, float]] = {}
    for entry in entries:
        row = table.setdefault(entry["node"], {"seconds": 0.0, "cpu_seconds": 0.0, "thread_cpu_seconds": 0.0,
                                               "items": 0, "peak_rss_mb": 0.0})
        row["seconds"] += entry["seconds"]
        row["cpu_seconds"] += entry.get("cpu_seconds", 0.0)
        row["thread_cpu_seconds"] += entry.get("cpu_seconds", 0.0) / max(entry.get("cpu_threads", 1.0), 1e-6)
        row["items"] += 1
        row["peak_rss_mb"] = max(row["peak_rss_mb"], entry.get("peak_rss_mb", 0.0))
    for row in table.values():
        thread_cpu = row.pop("thread_cpu_seconds")
        row["cpu_threads"] = round(row["cpu_seconds"] / thread_cpu, 2) if thread_cpu > 0 else None
        row["seconds"], row["cpu_seconds"] = round(row["seconds"], 3), round(row["cpu_seconds"], 3)
        row["texels_per_s"] = round(texels / row["seconds"]) if row["seconds"] > 0 else None
    return table


def single_thread_share(stages: dict[str, dict[str, float]], total: float) -> tuple[float, str]:
    """The largest share of the run that one stage spent on one thread (issue 14: no stage more than 10%):
    a stage counts when its work ran on fewer than SINGLE_THREAD_BELOW threads on average (report.json's
    `cpu_threads`: the process's CPU seconds per CPU second of the item's own thread, so other processes'
    load does not change it). Returns (share, stage)."""
    single = {name: row["seconds"] for name, row in stages.items() if (row["cpu_threads"] or 0) < SINGLE_THREAD_BELOW}
    if not single or not total:
        return 0.0, ""
    name = max(single, key=single.__getitem__)
    return round(single[name] / total, 3), name


def measure(work: Path, instances: int, tris: int, steps: int, density: float, cache: Path | None = None,
            settings: Callable[[int, float], list[str]] = knobs) -> dict:
    folder = work / f"n{instances}_t{tris}_s{steps}{'_shipped' if settings is shipped_knobs else ''}"
    obj, refs, triangles = write_room(work / f"room_n{instances}_t{tris}", instances, tris)
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    got = run_graph(folder, cache or folder / "cache", obj, refs, settings(steps, density))
    stages = stage_table(got["entries"], got["texels"])
    total = sum(row["seconds"] for row in stages.values())
    result = {"instances": instances, "triangles": triangles, "steps": steps, "load_before": load,
              "wall_s": round(got["wall"], 2),
              "stage_s_total": round(total, 2), "texels": got["texels"],
              "texels_per_s": round(got["texels"] / total) if total else None,
              "peak_rss_mb": max(row["peak_rss_mb"] for row in stages.values()),
              "stages": stages}
    result["single_thread_share"], result["single_thread_stage"] = single_thread_share(stages, total)
    # In run order: the first semantic item also pays the process's one-time imports (torch's optimiser
    # machinery, ~1.5 s), which is not a cost per instance.
    result["semantic_item_s"] = [round(e["seconds"], 4) for e in got["entries"] if e["node"] == "semantic"]
    print(f"{instances:4d} instances {triangles:8d} triangles steps {steps} (load {load}): wall {got['wall']:7.1f} s, "
          f"stages {total:7.1f} s, peak RSS {result['peak_rss_mb']:.0f} MB, {got['texels']} texels, "
          + ", ".join(f"{name} {stages[name]['seconds']:.1f} s x{stages[name]['cpu_threads']}" for name in STAGES
                      if name in stages)
          + f"; largest single-threaded stage: {result['single_thread_stage']} "
            f"{100 * result['single_thread_share']:.0f}% of the run", flush=True)
    return result


def exponent(xs: list[float], ys: list[float]) -> float | None:
    """Slope of log(y) against log(x) (least squares); None with fewer than two distinct x."""
    if len(set(xs)) < 2:
        return None
    return round(float(np.polyfit(np.log(xs), np.log(ys), 1)[0]), 3)


def fixed_cost(low: dict, high: dict, at_steps: int | None = None) -> dict[str, float]:
    """Per semantic item: seconds = fixed + per_step * steps, from runs at two step counts, item by item
    (the same instance in both runs, so its own size cancels) and the median over items: what one more
    instance costs. The first item is left out: it also pays the process's one-time imports (reported as
    `warm_up_s`), which is not a cost per instance. The fixed share of an item at `at_steps` (default: the
    low run's steps). `fixed_per_item_mean_s`: the intercept of the stage's mean item, warm-up included."""
    s1, s2 = low["steps"], high["steps"]
    at = at_steps or s1
    pairs = list(zip(low["semantic_item_s"], high["semantic_item_s"], strict=True))[1:] or \
        list(zip(low["semantic_item_s"], high["semantic_item_s"], strict=True))
    per_step = float(np.median([(t2 - t1) / (s2 - s1) for t1, t2 in pairs]))
    fixed = float(np.median([t1 - (t2 - t1) / (s2 - s1) * s1 for t1, t2 in pairs]))
    items = low["stages"]["semantic"]["items"]
    t1, t2 = low["stages"]["semantic"]["seconds"] / items, high["stages"]["semantic"]["seconds"] / items
    mean_fixed = t1 - (t2 - t1) / (s2 - s1) * s1
    item = fixed + per_step * at
    warm_up = low["semantic_item_s"][0] - float(np.median(low["semantic_item_s"]))
    return {"steps": at, "semantic_item_s": round(item, 3), "fixed_per_item_s": round(fixed, 3),
            "fixed_fraction": round(fixed / item, 3) if item > 0 else None,
            "fixed_per_item_mean_s": round(mean_fixed, 3), "warm_up_s": round(warm_up, 3)}


def targets(summary: dict, runs: list[dict]) -> dict[str, bool | None]:
    """Issue 14's targets, each True/False (None: not measured in this run, e.g. without --large)."""
    large = [r for r in runs if r["instances"] >= 200]
    exp = summary["exponent_time_vs_instances"]
    # The fixed cost is judged on a real distillation item, the shipped graph's (30 steps at 128 texels/m):
    # at the reduced settings an item is 6 steps on 64-px views (~0.1 s), printed for reference only.
    return {"time_vs_instances_exponent_le_1.1": None if exp is None else exp <= 1.1,
            "fixed_cost_under_20pct": summary["shipped_fixed_cost"]["fixed_fraction"] < 0.2,
            "200_instances_within_20_min": max(r["wall_s"] for r in large) <= 1200 if large else None,
            "peak_rss_le_8_GiB": summary["peak_rss_mb"] <= 8192,
            "no_single_threaded_stage_over_10pct": max(r["single_thread_share"] for r in runs) <= 0.10}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--large", action="store_true", help="also 200 instances at 5000 triangles each (1M)")
    ap.add_argument("--tris-per-instance", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=6, help="semantic steps (pixel, superres, brdf: half)")
    ap.add_argument("--density", type=float, default=32.0, help="project.params.texels_per_metre")
    ap.add_argument("--work", type=Path, default=None, help="keep the rooms and outputs here")
    ap.add_argument("--only", type=int, default=None, help="one run of this many instances (a quick check)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="scene-scale-") as tmp:
        work = args.work or Path(tmp)
        tpi = args.tris_per_instance
        if args.only:
            print(json.dumps(measure(work, args.only, tpi, args.steps, args.density)))
            return
        by_instances = [measure(work, n, tpi, args.steps, args.density) for n in (10, 50)]
        by_triangles = [by_instances[0], measure(work, 10, 10 * tpi, args.steps, args.density)]
        if args.large:
            by_instances.append(measure(work, 200, tpi, args.steps, args.density))
            by_triangles.append(measure(work, 200, 5000, args.steps, args.density))  # 1M triangles
        # Same room, four times the steps, same cache: only semantic and what follows it run again.
        base = by_instances[0]
        doubled = measure(work, 10, tpi, 4 * args.steps, args.density,
                          cache=work / f"n10_t{tpi}_s{args.steps}" / "cache")
        # The same at the shipped graph's settings (density 128, 20-step pixel and superres): 10 and 70
        # semantic steps, the fixed cost as a share of a 30-step semantic item (the shipped count).
        shipped = [measure(work, 10, tpi, steps, 128.0, cache=work / "shipped_cache", settings=shipped_knobs)
                   for steps in (10, 70)]
        series = [r for r in by_instances if r["triangles"] // r["instances"] <= 2 * tpi]
        summary = {
            "runs": [*by_instances, *by_triangles[1:], doubled, *shipped],
            "exponent_time_vs_instances": exponent([r["instances"] for r in series],
                                                   [r["stage_s_total"] for r in series]),
            "exponent_time_vs_texels": exponent([r["texels"] for r in series], [r["stage_s_total"] for r in series]),
            "exponent_time_vs_triangles": exponent([r["triangles"] for r in by_triangles[:2]],
                                                   [r["stage_s_total"] for r in by_triangles[:2]]),
            "fixed_cost": fixed_cost(base, doubled),
            "shipped_fixed_cost": fixed_cost(*shipped, at_steps=30),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in [*by_instances, *by_triangles, doubled, *shipped]),
            "settings": {"steps": args.steps, "density": args.density, "tris_per_instance": tpi,
                         "large": args.large},
        }
        summary["targets"] = targets(summary, [*by_instances, *by_triangles, doubled, *shipped])
        print(f"time ~ instances^{summary['exponent_time_vs_instances']}, "
              f"time ~ triangles^{summary['exponent_time_vs_triangles']} (10 instances), "
              f"fixed cost per semantic item at the reduced settings (reference) {summary['fixed_cost']}, at the shipped settings "
              f"{summary['shipped_fixed_cost']}; targets {summary['targets']}", flush=True)
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
