"""Ray scaling: a mapped node of 4 CPU-heavy items, local executor vs Ray with 2 workers, in one run.

    python bench/ray_scaling.py [--items 4] [--seconds 2.5] [--workers 2]

Each item is a torch matmul loop on 1 thread (its node declares num_cpus=1), sized to take about
`--seconds` on this machine. Local runs the items one after another; Ray runs them on
`--workers` worker processes. Cluster start-up and worker warm-up are excluded from the timed
runs (reported separately); overhead per task is measured on trivial items. The machine's load
average is printed next to the numbers (other processes share the cores). The last line is one
JSON object: speedup, overhead_ms_per_task, load, ...
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import graphflow as gf  # noqa: E402
from graphflow import Context, Graph, Keyed, Node, Registry, Resources  # noqa: E402
from graphflow.executors import LocalExecutor  # noqa: E402
from graphflow.executors.ray import RayExecutor  # noqa: E402

bench_nodes = Registry(plugins=False)


class ItemsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(4, ge=1)


@bench_nodes.register
class Items(Node):
    name = "bench.items"
    Params = ItemsParams

    def run(self, ctx: Context) -> Keyed[torch.Tensor]:
        return Keyed({f"item{i}": torch.tensor([float(i)]) for i in range(self.params.count)})


class WorkParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = 256
    iterations: int = 0


@bench_nodes.register
class MatmulLoop(Node):
    """`iterations` products of two `size`² matrices on one thread: CPU-bound, deterministic."""

    name = "bench.matmul_loop"
    map_over = "xs"
    cache = "never"
    Params = WorkParams
    resources = Resources(num_cpus=1)

    def run(self, ctx: Context, xs: torch.Tensor) -> torch.Tensor:
        n = self.params.size
        a = torch.randn(n, n, generator=ctx.generator) / n**0.5 + xs
        acc = torch.eye(n)
        for _ in range(self.params.iterations):
            acc = torch.tanh(acc @ a)
        return acc.sum().reshape(1)


def importable_registry() -> Registry:
    """The node classes as attributes of an importable module (`ray_scaling`, not `__main__`), so
    Ray workers import them by name like any installed node package."""
    import importlib

    return importlib.import_module("ray_scaling").bench_nodes if __name__ == "__main__" else bench_nodes


def graph(items: int, size: int, iterations: int) -> Graph:
    g = Graph("ray_scaling", importable_registry())
    g.add("xs", "bench.items", {"count": items})
    g.add("work", "bench.matmul_loop", {"size": size, "iterations": iterations})
    g.connect("xs", "work", "xs")
    g.outputs["out"] = gf.Link("work")
    return g


def timed_run(g: Graph, executor: gf.executors.Executor) -> tuple[float, dict]:  # type: ignore[name-defined]
    start = time.perf_counter()
    result = gf.run(g, cache=gf.open_cache(None, disk=False), executor=executor)
    return time.perf_counter() - start, result.outputs["out"]


def calibrate(size: int, seconds: float) -> int:
    torch.set_num_threads(1)
    a = torch.randn(size, size) / size**0.5
    acc = torch.eye(size)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 0.5:
        acc = torch.tanh(acc @ a)
        n += 1
    per = (time.perf_counter() - start) / n
    return max(1, int(seconds / per))


def _spin(args: tuple[int, int]) -> float:
    """One item's work in a plain process (for the machine's parallelism ceiling)."""
    size, iterations = args
    torch.set_num_threads(1)
    a = torch.randn(size, size, generator=torch.Generator().manual_seed(0)) / size**0.5
    acc = torch.eye(size)
    for _ in range(iterations):
        acc = torch.tanh(acc @ a)
    return float(acc.sum())


def parallel_ceiling(workers: int, size: int, iterations: int) -> float:
    """Speedup of `workers` plain processes over one on the same work, right now: what the shared
    cores allow at best, without any graphflow or Ray."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        pool.map(_spin, [(size, 1)] * workers)  # start-up outside the timing
        start = time.perf_counter()
        pool.map(_spin, [(size, iterations)] * workers, chunksize=1)
        parallel = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(workers):
        _spin((size, iterations))
    serial = time.perf_counter() - start
    return serial / parallel


def load() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=2.5, help="target seconds per item (1 thread)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--trivial", type=int, default=40, help="trivial items for the overhead measurement")
    ap.add_argument("--repeats", type=int, default=3, help="alternating local/ray repeats; the fastest counts "
                    "(the cores are shared: the minimum is the least disturbed run)")
    args = ap.parse_args()

    iterations = calibrate(args.size, args.seconds)
    heavy = graph(args.items, args.size, iterations)
    trivial = graph(args.trivial, 8, 1)
    load_start = load()

    local = LocalExecutor()
    t0 = time.perf_counter()
    ray_exec = RayExecutor(num_cpus=args.workers, object_store_memory=256 * 2**20)
    t_startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    timed_run(graph(args.workers, 8, 1), ray_exec)  # starts and warms the worker processes
    timed_run(trivial, ray_exec)
    t_warm = time.perf_counter() - t0
    locals_s, rays_s, local_trivial_s, ray_trivial_s = [], [], [], []
    try:
        for _ in range(args.repeats):
            t, out_local = timed_run(heavy, local)
            locals_s.append(t)
            t, out_ray = timed_run(heavy, ray_exec)
            rays_s.append(t)
            local_trivial_s.append(timed_run(trivial, local)[0])
            ray_trivial_s.append(timed_run(trivial, ray_exec)[0])
    finally:
        ray_exec.close()
    t_local, t_ray = min(locals_s), min(rays_s)
    ceiling = parallel_ceiling(args.workers, args.size, iterations)
    t_local_trivial, t_ray_trivial = min(local_trivial_s), min(ray_trivial_s)
    identical = all(out_local[k].numpy().tobytes() == out_ray[k].numpy().tobytes() for k in out_local)
    load_end = load()

    speedup = t_local / t_ray
    overhead_ms = max(0.0, (t_ray_trivial - t_local_trivial) / args.trivial * 1000.0)
    rows = [
        (f"local, {args.items} heavy items (best of {args.repeats})", t_local),
        (f"ray ({args.workers} workers), {args.items} heavy items (best of {args.repeats})", t_ray),
        (f"local, {args.trivial} trivial items", t_local_trivial),
        (f"ray, {args.trivial} trivial items", t_ray_trivial),
        ("ray cluster start (not timed above)", t_startup),
        ("ray worker warm-up (not timed above)", t_warm),
    ]
    print(f"{'run':<52}{'seconds':>10}")
    for name, secs in rows:
        print(f"{name:<52}{secs:>10.2f}")
    print("all local runs: " + ", ".join(f"{t:.2f}" for t in locals_s) + "; all ray runs: "
          + ", ".join(f"{t:.2f}" for t in rays_s))
    print(f"matmul {args.size}² x {iterations} iterations per item; outputs identical local vs ray: {identical}")
    print(f"load average (1 min) at start {load_start}, at end {load_end}, on {os.cpu_count()} cores")
    print(f"machine ceiling now: {args.workers} plain processes run the same work {ceiling:.2f}x faster than one")
    print(json.dumps({"speedup": round(speedup, 3), "overhead_ms_per_task": round(overhead_ms, 2),
                      "local_s": round(t_local, 3), "ray_s": round(t_ray, 3), "items": args.items,
                      "workers": args.workers, "identical": identical, "load_start": load_start,
                      "load_end": load_end, "cpus": os.cpu_count(),
                      "plain_process_ceiling": round(ceiling, 3),
                      "speedup_over_ceiling": round(speedup / ceiling, 3)}))


if __name__ == "__main__":
    main()
