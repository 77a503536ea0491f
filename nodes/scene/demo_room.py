"""The embedded demo scene (`io.demo_room`): a small furnished room and its references.

Geometry: every instance is made of boxes and planes, each flat face a quad
(vertices split per face, flat normals). Each instance is one part (node =
mesh = instance name) with its own UV atlas: its faces are shelf-packed into
[0, 1]² at one texel density per instance (so textures keep their aspect),
with padding between islands, no overlap. Vertical faces have texture-up =
world-up. Units are metres, +Y up, the room spans x in [-2.5, 2.5],
z in [-2, 2], the floor at y = 0; walls face into the room.

References: one procedural image per instance (`patterns.py`), each with the
real-world width it spans (`swatch_size`: the floor's image shows 4 tiles of
0.3 m, the table's 4 planks of 0.15 m) and its mode (the rug's picture is
`fit` once over its top, every other swatch `tile`s), seeded by
`seeds[name]` when given, else by a hash of (`seed`, name); an instance's
reference depends on nothing else, so changing one seed changes one item.
"""
from __future__ import annotations

from dataclasses import dataclass

import blake3
import kornia
import numpy as np
import torch

from graphflow import Keyed

from ..types import Reference, Scene
from .gltf import MeshPart
from .loader import assemble_scene
from .patterns import PATTERNS

UV_PADDING = 0.02  # gap between islands, as a fraction of the atlas side


@dataclass(frozen=True)
class Quad:
    """A planar rectangle: origin corner, unit axes (u right, v down in texture), size in metres."""

    origin: tuple[float, float, float]
    u_axis: tuple[float, float, float]
    v_axis: tuple[float, float, float]
    width: float
    height: float
    normal: tuple[float, float, float]
    subdivisions: tuple[int, int] = (1, 1)


@dataclass(frozen=True)
class DemoInstance:
    name: str
    material_class: str
    material_name: str
    pattern: str
    prompt: str
    quads: tuple[Quad, ...]
    swatch_size: float = 1.0  # metres the reference image's width spans
    mode: str = "tile"  # "fit": the rug's picture is placed once over its top


X, Y, Z = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


def _neg(v: tuple[float, float, float]) -> tuple[float, float, float]:
    return (-v[0], -v[1], -v[2])


def box(center: tuple[float, float, float], size: tuple[float, float, float], skip_bottom: bool = False) -> list[Quad]:
    """The 6 outward faces of an axis-aligned box (texture up = world up on the sides)."""
    cx, cy, cz = center
    hx, hy, hz = size[0] / 2, size[1] / 2, size[2] / 2
    down = _neg(Y)
    quads = [
        Quad((cx - hx, cy + hy, cz + hz), X, down, 2 * hx, 2 * hy, Z),  # front (+z)
        Quad((cx + hx, cy + hy, cz - hz), _neg(X), down, 2 * hx, 2 * hy, _neg(Z)),  # back (-z)
        Quad((cx + hx, cy + hy, cz + hz), _neg(Z), down, 2 * hz, 2 * hy, X),  # right (+x)
        Quad((cx - hx, cy + hy, cz - hz), Z, down, 2 * hz, 2 * hy, _neg(X)),  # left (-x)
        Quad((cx - hx, cy + hy, cz - hz), X, Z, 2 * hx, 2 * hz, Y),  # top (+y)
    ]
    if not skip_bottom:
        quads.append(Quad((cx - hx, cy - hy, cz + hz), X, _neg(Z), 2 * hx, 2 * hz, _neg(Y)))
    return quads


def room_layout() -> tuple[DemoInstance, ...]:
    """The instances of the demo room, in part order."""
    table_top_y, leg = 0.72, 0.05
    table = box((0.6, table_top_y - 0.02, 0.6), (1.2, 0.04, 0.7))
    for lx in (0.6 - 0.55, 0.6 + 0.55):
        for lz in (0.6 - 0.3, 0.6 + 0.3):
            table += box((lx, (table_top_y - 0.04) / 2, lz), (leg, table_top_y - 0.04, leg), skip_bottom=True)
    sofa = box((0.2, 0.22, -1.5), (2.0, 0.44, 0.85), skip_bottom=True)  # seat
    sofa += box((0.2, 0.65, -1.84), (2.0, 0.42, 0.17))  # backrest
    sofa += box((-0.9, 0.32, -1.5), (0.2, 0.64, 0.85), skip_bottom=True)  # arms
    sofa += box((1.3, 0.32, -1.5), (0.2, 0.64, 0.85), skip_bottom=True)
    shelf: list[Quad] = []
    shelf_x, shelf_z, depth, width, height = -2.3, 0.6, 0.35, 0.9, 1.8
    for dz in (-width / 2, width / 2):
        shelf += box((shelf_x, height / 2, shelf_z + dz), (depth, height, 0.03), skip_bottom=True)
    for k in range(5):
        shelf += box((shelf_x, 0.05 + k * (height - 0.1) / 4, shelf_z), (depth, 0.03, width - 0.03))
    return (
        DemoInstance("floor", "ceramic", "floor ceramic tiles", "floor_tiles",
                     "cream ceramic floor tiles with grey grout",
                     (Quad((-2.5, 0.0, -2.0), X, Z, 5.0, 4.0, Y, (10, 8)),), swatch_size=1.2),
        DemoInstance("wall_back", "paper", "back wall striped wallpaper", "wallpaper",
                     "sage and cream striped wallpaper with a diamond motif",
                     (Quad((-2.5, 2.7, -2.0), X, _neg(Y), 5.0, 2.7, Z, (10, 6)),), swatch_size=0.8),
        DemoInstance("wall_side", "paint", "side wall ochre paint", "painted_plaster",
                     "warm terracotta painted plaster wall",
                     (Quad((-2.5, 2.7, 2.0), _neg(Z), _neg(Y), 4.0, 2.7, X, (8, 6)),), swatch_size=1.0),
        DemoInstance("rug", "fabric", "rug wool kilim", "rug_pattern", "red and navy kilim rug with a diamond lattice",
                     tuple(box((0.4, 0.005, 0.0), (2.4, 0.01, 1.6), skip_bottom=True)), swatch_size=2.4, mode="fit"),
        DemoInstance("table", "wood", "table oak wood", "wood_grain", "light oak wood with visible grain",
                     tuple(table), swatch_size=0.6),
        DemoInstance("sofa", "fabric", "sofa teal woven fabric", "fabric_weave", "teal woven upholstery fabric",
                     tuple(sofa), swatch_size=0.3),
        DemoInstance("shelf", "metal", "shelf brushed steel", "brushed_metal", "brushed stainless steel",
                     tuple(shelf), swatch_size=0.5),
    )


def pack_islands(sizes: list[tuple[float, float]],
                 padding: float = UV_PADDING) -> tuple[list[tuple[float, float]], float]:
    """Shelf-pack rectangles (w, h) into the smallest square that fits them; returns (origins, side).

    Tallest first (ties by input order); the side is found by bisection. The
    padding is relative to the side, so islands stay apart at any texture size.
    """
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i][1], i))

    def place(side: float) -> list[tuple[float, float]] | None:
        pad = padding * side
        origins: list[tuple[float, float]] = [(0.0, 0.0)] * len(sizes)
        x, y, row = pad, pad, 0.0
        for i in order:
            w, h = sizes[i]
            if x + w + pad > side:
                x, y, row = pad, y + row + pad, 0.0
            if x + w + pad > side or y + h + pad > side:
                return None
            origins[i] = (x, y)
            x += w + pad
            row = max(row, h)
        return origins

    area = sum(w * h for w, h in sizes)
    lo = max(max(max(w, h) for w, h in sizes), area**0.5)
    hi = lo * 4
    while place(hi) is None:
        hi *= 2
    for _ in range(40):
        mid = (lo + hi) / 2
        if place(mid) is None:
            lo = mid
        else:
            hi = mid
    result = place(hi)
    assert result is not None
    return result, hi


def instance_mesh(instance: DemoInstance) -> MeshPart:
    """Triangulated quads of one instance with its packed UVs and flat normals."""
    origins, side = pack_islands([(q.width, q.height) for q in instance.quads])
    positions, uvs, normals, faces = [], [], [], []
    for quad, (ox, oy) in zip(instance.quads, origins, strict=True):
        nu, nv = quad.subdivisions
        o, u, v, n = (np.asarray(a, dtype=np.float64) for a in (quad.origin, quad.u_axis, quad.v_axis, quad.normal))
        base = len(positions)
        for j in range(nv + 1):
            for i in range(nu + 1):
                su, sv = quad.width * i / nu, quad.height * j / nv
                positions.append(o + u * su + v * sv)
                uvs.append(((ox + su) / side, (oy + sv) / side))
                normals.append(n)
        flip = float(np.dot(np.cross(v, u), n)) < 0  # keep counter-clockwise seen from the normal side
        for j in range(nv):
            for i in range(nu):
                a = base + j * (nu + 1) + i
                b, c, d = a + 1, a + nu + 2, a + nu + 1
                tris = [(a, d, c), (a, c, b)]
                faces += [(t[0], t[2], t[1]) for t in tris] if flip else tris
    return MeshPart(
        name=instance.name,
        info={"node": instance.name, "mesh": instance.name, "primitive": 0, "material": instance.material_name},
        positions=np.asarray(positions, dtype=np.float32),
        faces=np.asarray(faces, dtype=np.int64),
        normals=np.asarray(normals, dtype=np.float32),
        uvs=np.asarray(uvs, dtype=np.float32),
    )


def build_room_scene() -> Scene:
    """The demo room geometry as a `Scene` (one part per instance)."""
    return assemble_scene([instance_mesh(i) for i in room_layout()], unwrap_mode="never", source="demo_room")


def instance_seed(seed: int, name: str) -> int:
    """A 63-bit seed for one instance's pattern, from the room seed and the instance name."""
    digest = blake3.blake3(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def room_reference(instance: DemoInstance, seed: int, size: int) -> Reference:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    srgb = PATTERNS[instance.pattern](generator, size)
    linear = kornia.color.rgb_to_linear_rgb(srgb.clamp(0, 1)).contiguous()
    return Reference(images=(linear,), material=instance.material_class, prompt=instance.prompt,
                     size=instance.swatch_size, mode=instance.mode)


def build_room_references(seed: int = 0, seeds: dict[str, int] | None = None, size: int = 256) -> Keyed[Reference]:
    """One procedural reference per instance, keyed by instance name in part order."""
    seeds = seeds or {}
    return Keyed({
        inst.name: room_reference(inst, seeds.get(inst.name, instance_seed(seed, inst.name)), size)
        for inst in room_layout()
    })


def room_instance_names() -> tuple[str, ...]:
    return tuple(i.name for i in room_layout())
