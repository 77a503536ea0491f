"""Engine overhead on 1,000 trivial nodes, against apache-hamilton doing the same work.

Two shapes (a chain and a wide fan), each node a tiny torch op. For both
engines, in one run: a cold run with the disk cache on, a warm re-run in the
same process, and a warm re-run from disk in a new process (timed inside it,
import excluded). Overhead per node = (engine time - the same ops in a plain
loop) / nodes. Last line: one JSON object.

    python bench/engine_overhead.py [--nodes 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HAMILTON_TELEMETRY_ENABLED", "false")

HERE = Path(__file__).resolve().parent  # on sys.path when run as a script: trivial_nodes imports

import torch  # noqa: E402

torch.set_num_threads(1)
sys.setrecursionlimit(20000)  # Hamilton walks a 1,000-node chain recursively


def factor(i: int) -> float:
    return 1.0 + i * 1e-6


def our_graph(n: int, shape: str):
    from trivial_nodes import trivial as toys

    from graphflow import Graph

    g = Graph(f"bench_{shape}", toys)
    g.add("n0", "toy.const", {"value": 1.0})
    for i in range(1, n):
        src = f"n{i - 1}" if shape == "chain" else "n0"
        # distinct factors: identical fan nodes would share one key (content addressing dedups them)
        g.add(f"n{i}", "toy.scale", {"factor": factor(i)}, inputs={"x": src})
    g.outputs = {"out": g.nodes and __import__("graphflow").Link(f"n{n - 1}")} if shape == "chain" else \
        {f"o{i}": __import__("graphflow").Link(f"n{i}") for i in range(1, n)}
    return g


def hamilton_module(n: int, shape: str):
    src = ["import torch", "def n0() -> torch.Tensor:\n    return torch.full((4,), 1.0)"]
    for i in range(1, n):
        arg = f"n{i - 1}" if shape == "chain" else "n0"
        src.append(f"def n{i}({arg}: torch.Tensor) -> torch.Tensor:\n    return {arg} * {factor(i)!r}")
    # A real file, so Hamilton can hash each function's source for its cache versions.
    folder = Path(tempfile.gettempdir()) / "graphflow_bench_hamilton"
    folder.mkdir(exist_ok=True)
    name = f"ham_{shape}_{n}"
    (folder / f"{name}.py").write_text("\n".join(src) + "\n")
    sys.path.insert(0, str(folder))
    import importlib

    return importlib.import_module(name)


def final_vars(n: int, shape: str) -> list[str]:
    return [f"n{n - 1}"] if shape == "chain" else [f"n{i}" for i in range(1, n)]


def plain_loop(n: int, shape: str) -> float:
    start = time.perf_counter()
    x0 = torch.full((4,), 1.0)
    x = x0
    for i in range(1, n):
        x = (x if shape == "chain" else x0) * factor(i)
    return time.perf_counter() - start


def ours(n: int, shape: str, cache_dir: Path) -> dict[str, float]:
    import graphflow as gf

    g = our_graph(n, shape)
    tiers = gf.open_cache(cache_dir)
    t0 = time.perf_counter()
    gf.run(g, cache=tiers)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    rep = gf.run(g, cache=tiers).report
    warm_mem = time.perf_counter() - t0
    assert {e.status for e in rep.entries} == {"cached"}
    return {"cold": cold, "warm_mem": warm_mem}


def hamilton(n: int, shape: str, cache_dir: Path) -> dict[str, float]:
    from hamilton import driver

    mod = hamilton_module(n, shape)
    t0 = time.perf_counter()
    dr = driver.Builder().with_modules(mod).with_cache(path=str(cache_dir)).build()
    dr.execute(final_vars(n, shape))
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    dr.execute(final_vars(n, shape))
    warm_mem = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain = driver.Builder().with_modules(mod).build()
    plain.execute(final_vars(n, shape))
    nocache = time.perf_counter() - t0
    return {"cold": cold, "warm_mem": warm_mem, "nocache": nocache}


def child(engine: str, n: int, shape: str, cache_dir: str) -> None:
    """Warm re-run from disk in a fresh process; prints seconds of the run itself."""
    if engine == "ours":
        import graphflow as gf

        g = our_graph(n, shape)
        t0 = time.perf_counter()
        rep = gf.run(g, cache=cache_dir).report
        dt = time.perf_counter() - t0
        assert {e.status for e in rep.entries} == {"cached"}
    else:
        from hamilton import driver

        mod = hamilton_module(n, shape)
        t0 = time.perf_counter()
        dr = driver.Builder().with_modules(mod).with_cache(path=cache_dir).build()
        dr.execute(final_vars(n, shape))
        dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt}))


def in_new_process(engine: str, n: int, shape: str, cache_dir: Path) -> float:
    out = subprocess.run([sys.executable, __file__, "--child", engine, "--nodes", str(n), "--shape", shape,
                          "--cache", str(cache_dir)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--child")
    ap.add_argument("--shape", default="chain")
    ap.add_argument("--cache")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.nodes, args.shape, args.cache)
        return
    n = args.nodes
    rows = {}
    for shape in ("chain", "fan"):
        work = min(plain_loop(n, shape) for _ in range(3))
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            o = ours(n, shape, Path(a))
            o["warm_disk"] = in_new_process("ours", n, shape, Path(a))
            h = hamilton(n, shape, Path(b))
            h["warm_disk"] = in_new_process("hamilton", n, shape, Path(b))
        rows[shape] = {"work": work, "ours": o, "hamilton": h}
        print(f"{shape:6s} work {work * 1e3:7.1f} ms | ours cold {o['cold']:6.2f} s warm(mem) {o['warm_mem']:6.3f} s "
              f"warm(disk) {o['warm_disk']:6.3f} s | hamilton cold {h['cold']:6.2f} s warm(mem) {h['warm_mem']:6.3f} s "
              f"warm(disk) {h['warm_disk']:6.3f} s no-cache {h['nocache']:6.3f} s")
    per = lambda t, w: (t - w) / n * 1e6  # noqa: E731
    ours_us = max(per(rows[s]["ours"]["cold"], rows[s]["work"]) for s in rows)
    ham_us = max(per(rows[s]["hamilton"]["cold"], rows[s]["work"]) for s in rows)
    result = {
        "nodes": n,
        "overhead_us_per_node": round(ours_us, 1),
        "hamilton_overhead_us_per_node": round(ham_us, 1),
        "overhead_ratio_vs_hamilton": round(ours_us / ham_us, 3),
        "warm_rerun_s_1000": round(max(rows[s]["ours"]["warm_disk"] for s in rows) * 1000 / n, 3),
        "warm_rerun_in_process_s_1000": round(max(rows[s]["ours"]["warm_mem"] for s in rows) * 1000 / n, 3),
        "hamilton_warm_rerun_s_1000": round(max(rows[s]["hamilton"]["warm_disk"] for s in rows) * 1000 / n, 3),
        "hamilton_nocache_overhead_us_per_node": round(max(per(rows[s]["hamilton"]["nocache"], rows[s]["work"])
                                                           for s in rows), 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
