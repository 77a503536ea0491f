"""Rasterization benchmark: our fragment pipeline vs raw embreex ray casting vs the torch backend.

A ~100k-triangle torus seen by a few orbit cameras at 512x512. Timed (best of
interleaved repeats, BVH already built for both embree variants, one torch thread):
- raw embreex: `EmbreeScene.run(origins, dirs, tmax)` (closest-hit ids) on the same rays, nothing else;
- fragments (embree backend): ray generation + cast + packing into nvdiffrast's
  layout (float64 barycentric refinement, z/w) + `interpolate` of uv, normal, position;
- torch backend: the pure-PyTorch reference rasterizer + the same interpolation.
Last line: a JSON object with `fragments_vs_raw_embree` (target <= 1.5) and `torch_vs_embree`.
Usage: python bench/raster.py [--resolution 512] [--views 4] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from nodes.components.raster import to_clip
from nodes.render.cameras import orbit_cameras
from nodes.render.embree import EmbreeRasterizer, world_rays
from nodes.render.ops import interpolate
from nodes.render.raster import get_rasterizer


def torus(major: int, minor: int, radius: float = 1.0, tube: float = 0.35) -> tuple[torch.Tensor, torch.Tensor,
                                                                                     torch.Tensor, torch.Tensor]:
    """(positions, faces, normals, uvs) of a torus with 2 * major * minor triangles."""
    theta = torch.arange(major, dtype=torch.float64) * 2 * math.pi / major
    phi = torch.arange(minor, dtype=torch.float64) * 2 * math.pi / minor
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    ring = radius + tube * torch.cos(p)
    positions = torch.stack([ring * torch.cos(t), tube * torch.sin(p), ring * torch.sin(t)], -1).reshape(-1, 3)
    normals = torch.stack([torch.cos(p) * torch.cos(t), torch.sin(p), torch.cos(p) * torch.sin(t)], -1).reshape(-1, 3)
    uvs = torch.stack([t / (2 * math.pi), p / (2 * math.pi)], -1).reshape(-1, 2)
    i, j = torch.meshgrid(torch.arange(major), torch.arange(minor), indexing="ij")
    a = i * minor + j
    b = ((i + 1) % major) * minor + j
    c = ((i + 1) % major) * minor + (j + 1) % minor
    d = i * minor + (j + 1) % minor
    faces = torch.cat([torch.stack([a, b, c], -1).reshape(-1, 3), torch.stack([a, c, d], -1).reshape(-1, 3)])
    return positions.float(), faces, normals.float(), uvs.float()


def interleaved_best_seconds(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best-of-`repeats` wall time of each function, measured in alternation so that load spikes on a shared
    machine hit every contender alike (one warm-up call each: BVH cache, allocations)."""
    for function in functions.values():
        function()
    best = {name: float("inf") for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)

    positions, faces, normals, uvs = torus(250, 200)
    tri = faces.to(torch.int32)
    attributes = torch.cat([uvs, normals, positions], dim=1)  # interpolated together, as views.sample does
    cameras = orbit_cameras(torch.zeros(3), 1.35, args.views, (20.0, 50.0), (40.0, 40.0),
                            torch.Generator().manual_seed(0), margin=1.0)
    mvp = torch.stack([camera.mvp() for camera in cameras])
    resolution = (args.resolution, args.resolution)

    embree = EmbreeRasterizer()
    start = time.perf_counter()
    caster = embree.caster_for(positions, tri)
    bvh_seconds = time.perf_counter() - start
    origins, dirs, tmax = world_rays(mvp.double().numpy(), resolution)

    def raw_embree() -> object:
        return caster._scene.run(origins, dirs, dists=tmax)  # closest-hit triangle ids: the cheapest full query

    def fragments(rasterizer: object, use_world: bool) -> Callable[[], object]:
        def run() -> object:
            if use_world:  # what views.sample runs on the embree backend
                return rasterizer.rasterize_world_interpolate(positions, tri, mvp, resolution, attributes)
            rast = rasterizer.rasterize(to_clip(positions, mvp), tri, resolution)
            return interpolate(attributes, rast, faces)
        return run

    def fragments_unfused() -> object:
        # Same work without the fused interpolation and without overlapping casting and packing.
        return interpolate(attributes, embree.rasterize_world(positions, tri, mvp, resolution), faces)

    contenders = {"raw": raw_embree, "ours": fragments(embree, True), "unfused": fragments_unfused}
    timings = interleaved_best_seconds(contenders, args.repeats)
    raw, ours, unfused = timings["raw"], timings["ours"], timings["unfused"]
    reference = interleaved_best_seconds({"torch": fragments(get_rasterizer("torch"), False)},
                                         max(1, args.repeats // 2))["torch"]
    rays = origins.shape[0]
    rast = embree.rasterize_world(positions, tri, mvp, resolution)
    coverage = float((rast[..., 3] > 0).float().mean())

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.1f} on {os.cpu_count()} cores (a loaded machine inflates every row)")
    print(f"mesh: {faces.shape[0]} triangles; {args.views} views at {args.resolution}^2 = {rays} rays; "
          f"coverage {coverage:.1%}; BVH build {bvh_seconds * 1e3:.0f} ms (once per mesh, cached)")
    print(f"{'pipeline':<44}{'seconds':>10}{'Mrays/s':>10}{'ratio':>8}")
    for name, seconds in (("raw embreex cast (same rays)", raw), ("fragments: embree backend + interpolate", ours),
                          ("  same, rasterize_world then interpolate", unfused),
                          ("fragments: torch backend + interpolate", reference)):
        print(f"{name:<44}{seconds:>10.3f}{rays / seconds / 1e6:>10.2f}{seconds / raw:>8.2f}")
    print(json.dumps({
        "triangles": int(faces.shape[0]), "resolution": args.resolution, "views": args.views,
        "raw_embree_s": round(raw, 4), "fragments_embree_s": round(ours, 4), "torch_s": round(reference, 4),
        "fragments_vs_raw_embree": round(ours / raw, 3), "unfused_vs_raw_embree": round(unfused / raw, 3),
        "torch_vs_embree": round(reference / ours, 3),
        "coverage": round(coverage, 4), "load_average": round(load, 2), "bvh_build_s": round(bvh_seconds, 4),
    }))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
