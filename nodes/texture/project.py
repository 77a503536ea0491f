"""`texture.project`: the swatch laid on an instance at its real size, on the instance's own atlas.

Per atlas texel (the surface point it shows, from `texel_fragments`):
- `tile`: its chart's map `s = L uv + b` (metres along the surface, see
  `nodes.texture.charts`) looks up the swatch repeated every `size` metres;
  charts too distorted for one linear map (a UV sphere's poles) or too small to
  hold a few texels use a triplanar projection of the same swatch instead: each
  texel one axis's projection, and where two axes are nearly equal a min-error
  cut (`nodes.texture.cuts`) decides which, so dots are never doubled;
- across a seam (two faces that meet on the surface but not in the atlas) the
  two charts' patterns are cross-faded over `blend_width` metres: a texel near the
  seam mixes its own chart's pattern with the neighbour's pattern continued
  across the edge (the point unfolded into the neighbour's plane), half and
  half on the seam itself, so both sides agree there (a min-error cut there,
  as on triplanar charts, measured worse across a stool's rim: see issue 25's
  note);
- `fit`: the picture is stretched once over the instance's largest chart (a
  rug's top, a painting's face), axis-aligned with that chart's frame; the
  other charts take the colour of the picture's outer ring.
Texels outside every island are filled from the nearest island texel, so
bilinear and mip lookups at island borders never see a hole.

The atlas side follows the texel density: `texels_per_metre * sqrt(surface
area / UV area)`, rounded to a power of two in log scale and clamped.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.ndimage import distance_transform_cdt
from scipy.spatial import cKDTree

from nodes.render.uv_raster import dilate_into_empty, texel_fragments
from nodes.types import ProjectionSettings, Reference, Scene, SwatchMaterial, TextureMap, WorldScale

from .charts import Charts, build_charts
from .cuts import choose_by_cut
from .swatch import Swatch, sample_along_axis, sample_fitted, sample_tiled

GUTTER_TEXELS = 2
FILL_RINGS = 8  # texels past the gutter filled from the island; beyond, its mean colour
# The ideal (`project_instance(with_ideal=True)`) lies at this phase: any that is not the start's, so that a
# refinement that merely keeps its start does not measure zero against it.
IDEAL_PHASE = (0.37, 0.61)  # metres
TRIPLANAR_BAND = 0.6  # where the normal's two largest components differ by less, a cut picks the projection


def atlas_side(charts: Charts, settings: ProjectionSettings) -> int:
    """Atlas side in texels: the density over the surface's UV area, a power of two, clamped."""
    return atlas_side_of(float(charts.area.sum()), float(charts.uv_area.sum()), settings)


def atlas_side_of(surface: float, uv: float, settings: ProjectionSettings) -> int:
    """`atlas_side` from the surface area (m²) and the UV area (UV units) alone (the cost check, issue 23)."""
    if surface <= 0 or uv <= 0:
        return settings.min_size
    wanted = wanted_side(surface, uv, settings.texels_per_metre)
    side = 2 ** round(math.log2(max(wanted, 1.0)))
    return int(min(settings.max_size, max(settings.min_size, side)))


def triplanar_charts(charts: Charts, settings: ProjectionSettings) -> np.ndarray:
    """Per chart, whether it is laid triplanar: too distorted for one linear map, or too small to hold
    `min_chart_texels` texels at the density."""
    small = charts.area * settings.texels_per_metre**2 < settings.min_chart_texels
    return (charts.distortion > settings.max_distortion) | small


def wanted_side(surface: float, uv: float, texels_per_metre: float) -> float:
    """The atlas side (texels, before rounding and clamping) that shows `surface` m² spread over `uv` UV area
    at `texels_per_metre`: the one formula of the atlas size (0 for an instance with no area)."""
    return texels_per_metre * math.sqrt(surface / uv) if surface > 0 and uv > 0 else 0.0


@dataclass(frozen=True)
class Texels:
    """The covered texels of an atlas as flat buffers."""

    index: torch.Tensor  # [N] flat texel index
    face: torch.Tensor  # [N] local face index (into charts.faces)
    uv: torch.Tensor  # [N, 2] texel centre, glTF uv
    position: torch.Tensor  # [N, 3]
    normal: torch.Tensor  # [N, 3]


def covered_texels(scene: Scene, face_mask: torch.Tensor, side: int, charts: Charts,
                   gutter: int = GUTTER_TEXELS) -> tuple[Texels, torch.Tensor]:
    """The texels whose centre lies on the instance, plus a `gutter` of texels around every island.

    A gutter texel continues the nearest island texel's face past its edge (its UV map extrapolated),
    so it gets the colour that point of the surface would have: bilinear and mip lookups near an
    island's border then read the right pattern on both sides of a seam, not a smeared fill.
    Returns the texels and the island mask (gutter excluded).
    """
    fragments = texel_fragments(scene, face_mask, side)
    mask = fragments.mask
    local = torch.cumsum(face_mask.long(), 0) - 1
    covered = torch.nonzero(mask.reshape(-1)).flatten()
    face_of = torch.full((side * side,), -1, dtype=torch.long)
    face_of[covered] = local[fragments.face_id.reshape(-1)[covered]]
    distance, (near_rows, near_cols) = distance_transform_cdt(~mask.numpy(), metric="chessboard", return_indices=True)
    ring = torch.from_numpy(((distance > 0) & (distance <= gutter)).reshape(-1))
    extra = torch.nonzero(ring).flatten()
    nearest = torch.from_numpy((near_rows * side + near_cols).reshape(-1))[extra]
    index = torch.cat([covered, extra])
    face = torch.cat([face_of[covered], face_of[nearest]])
    rows, cols = index // side, index % side
    uv = torch.stack([(cols.double() + 0.5) / side, (rows.double() + 0.5) / side], -1)
    position = fragments.position.reshape(-1, 3).double()[covered]
    normal = fragments.normal.reshape(-1, 3).double()
    extra_position = torch.from_numpy(charts.point_at_uv(face[len(covered):].numpy(), uv[len(covered):].numpy()))
    texels = Texels(index=index, face=face, uv=uv, position=torch.cat([position, extra_position]),
                    normal=torch.cat([normal[covered], normal[nearest]]))
    return texels, mask


class ChartColours:
    """Colour of a point of a chart: its tiled swatch, or the triplanar projection on triplanar charts."""

    def __init__(self, charts: Charts, swatch: Swatch, triplanar: np.ndarray,
                 phase: tuple[float, float] = (0.0, 0.0)) -> None:
        self.linear = torch.from_numpy(charts.linear)
        self.phase = torch.tensor(phase, dtype=torch.float64)
        self.offset = torch.from_numpy(charts.offset) + self.phase
        self.triplanar = torch.from_numpy(triplanar)
        self.swatch = swatch

    def __call__(self, chart: torch.Tensor, uv: torch.Tensor, position: torch.Tensor,
                 normal: torch.Tensor) -> torch.Tensor:
        """Colours `[N, C]`; on triplanar charts the projection along the normal's largest axis (see `cut_triplanar`)."""
        s = torch.einsum("nij,nj->ni", self.linear[chart], uv) + self.offset[chart]
        out = sample_tiled(self.swatch, s.float())
        tri = self.triplanar[chart]
        if bool(tri.any()):
            axis = normal[tri].abs().argmax(1)
            out[tri] = self.along_axis(axis, position[tri], normal[tri])
        return out

    def along_axis(self, axis: torch.Tensor, position: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
        """Colours `[N, C]` of the swatch projected along world axis `axis [N]` (0 x, 1 y, 2 z)."""
        return sample_along_axis(self.swatch, position.float(), normal.float(), axis, self.phase.float())


def _nearest_own_seam(charts: Charts, texels: Texels, chart: torch.Tensor, band: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per texel, the nearest seam half-edge of its own chart within `band` metres (-1: none)."""
    seams = charts.seams
    none = np.full(len(texels.index), -1), np.zeros(len(texels.index), dtype=bool)
    if len(seams.face) == 0 or band <= 0:
        return none
    length = np.linalg.norm(seams.end - seams.start, axis=1)
    per_edge = np.maximum(2, np.ceil(length / (band / 3)).astype(np.int64) + 1)
    edge = np.repeat(np.arange(len(length)), per_edge)
    step = np.arange(edge.size) - np.repeat(np.cumsum(per_edge) - per_edge, per_edge)
    frac = (step / (per_edge[edge] - 1))[:, None]
    points = seams.start[edge] * (1 - frac) + seams.end[edge] * frac
    tree = cKDTree(points)
    position = texels.position.numpy()
    near, _ = tree.query(position, k=1, distance_upper_bound=band * 1.5)
    rows = np.nonzero(np.isfinite(near))[0]  # only texels near some seam need the k-nearest search
    half_edge, has = none
    if rows.size == 0:
        return half_edge, has
    k = min(16, len(points))
    distance, nearest = tree.query(position[rows], k=k, distance_upper_bound=band * 1.5)
    distance, nearest = distance.reshape(len(rows), k), nearest.reshape(len(rows), k)
    found = np.isfinite(distance)
    candidate = edge[np.where(found, nearest, 0)]
    own = found & (charts.chart[seams.face[candidate]] == chart.numpy()[rows, None])
    # Both half-edges of a seam lie at the same 3D points; the texel's own is the one near it in UV space
    # (on a seam inside one chart, a cylinder's wrap, both belong to the chart but sit at opposite UVs).
    uv_gap = _segment_distance(texels.uv.numpy()[rows, None, :], seams.own_uv[candidate])
    choice = np.where(own, uv_gap, np.inf).argmin(1)
    hit = own[np.arange(len(rows)), choice]
    half_edge[rows] = np.where(hit, candidate[np.arange(len(rows)), choice], -1)
    has[rows] = hit
    return half_edge, has


def _segment_distance(points: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Distance from points `[..., 2]` to segments `[..., 2, 2]` (broadcast)."""
    a, b = segments[..., 0, :], segments[..., 1, :]
    ab = b - a
    t = np.clip(((points - a) * ab).sum(-1) / np.clip((ab * ab).sum(-1), 1e-20, None), 0, 1)
    return np.linalg.norm(points - (a + t[..., None] * ab), axis=-1)


def blend_seams(colours: torch.Tensor, texels: Texels, charts: Charts, chart_colours: ChartColours,
                band: float) -> torch.Tensor:
    """Cross-fade each texel near a seam with the neighbour chart's pattern continued across the edge (seams
    between two triplanar charts are left: their colours already agree)."""
    chart = torch.from_numpy(charts.chart)[texels.face]
    half_edge, has = _nearest_own_seam(charts, texels, chart, band)
    if not has.any():
        return colours
    rows = np.nonzero(has)[0]
    e = half_edge[rows]
    seams = charts.seams
    p = texels.position.numpy()[rows]
    e0, e1 = seams.start[e], seams.end[e]
    direction = (e1 - e0) / np.clip(np.linalg.norm(e1 - e0, axis=1, keepdims=True), 1e-12, None)
    along = np.clip(((p - e0) * direction).sum(1), 0, np.linalg.norm(e1 - e0, axis=1))
    foot = e0 + along[:, None] * direction
    distance = np.linalg.norm(p - foot, axis=1)
    weight = 0.5 * np.clip(1 - distance / band, 0, 1)
    other = seams.other[e]
    # A triplanar chart's colour is a function of the 3D point: it already agrees across its seams, and a
    # fade there would mix two axes' projections (ghosted doubles).
    triplanar = chart_colours.triplanar.numpy()
    weight = np.where(triplanar[charts.chart[seams.face[e]]] & triplanar[charts.chart[other]], 0.0, weight)
    corners = charts.face_points(other)  # [N, 3, 3]
    inward = corners.mean(1) - e0
    inward -= (inward * direction).sum(1, keepdims=True) * direction
    inward /= np.clip(np.linalg.norm(inward, axis=1, keepdims=True), 1e-12, None)
    unfolded = foot - distance[:, None] * inward  # the texel's point, continued across the edge
    uv = charts.uv_in_plane(other, unfolded)
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normal /= np.clip(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12, None)
    neighbour = chart_colours(torch.from_numpy(charts.chart[other]), torch.from_numpy(uv),
                              torch.from_numpy(unfolded), torch.from_numpy(normal))
    out = colours.clone()
    w = torch.from_numpy(weight).float()[:, None]
    out[rows] = (1 - w) * colours[rows] + w * neighbour.to(colours.dtype)
    return out


def cut_triplanar(colours: torch.Tensor, texels: Texels, chart: torch.Tensor, chart_colours: ChartColours,
                  side: int) -> torch.Tensor:
    """On triplanar charts, where two axes are nearly equal, each texel takes one axis's projection, the
    boundary a min-error cut (no half-strength doubles); elsewhere the largest axis's (as `ChartColours`)."""
    tri = chart_colours.triplanar[chart]
    top = texels.normal[tri].abs().topk(2, dim=1)
    gap = top.values[:, 0] - top.values[:, 1]
    near = gap < TRIPLANAR_BAND
    if not bool(near.any()):
        return colours
    rows = torch.nonzero(tri).flatten()[near]
    first_axis, second_axis = top.indices[near].min(1).values, top.indices[near].max(1).values
    position, normal = texels.position[rows], texels.normal[rows]
    first = chart_colours.along_axis(first_axis, position, normal)
    second = chart_colours.along_axis(second_axis, position, normal)
    dominant_second = top.indices[near, 0] == second_axis
    forced = torch.where(gap[near] > 0.85 * TRIPLANAR_BAND, dominant_second.long(), -1)
    take = choose_by_cut(side, texels.index[rows], first, second, forced, first_axis * 3 + second_axis)
    out = colours.clone()
    out[rows] = torch.where(take[:, None], second, first).to(out.dtype)
    return out


def fitted_colours(charts: Charts, texels: Texels, chart: torch.Tensor, swatch: Swatch,
                   zoom: float = 1.0) -> torch.Tensor:
    """`fit`: the picture stretched once over the largest chart's extent (in its frame); the rest its border."""
    largest = int(np.argmax(charts.area))
    border = swatch.border_colour()
    out = border[None].expand(len(texels.index), len(border)).clone()
    members = chart == largest
    corners = np.unique(charts.faces[charts.chart == largest].reshape(-1))
    s_corner = charts.uvs[corners] @ charts.linear[largest].T + charts.offset[largest]
    lo, hi = s_corner.min(0), s_corner.max(0)
    s = torch.einsum("ij,nj->ni", torch.from_numpy(charts.linear[largest]), texels.uv[members])
    s = s + torch.from_numpy(charts.offset[largest])
    unit = (s - torch.from_numpy(lo)) / torch.from_numpy(np.maximum(hi - lo, 1e-12))
    out[members] = sample_fitted(swatch, (0.5 + (unit - 0.5) / zoom).float())
    return out


def fit_extent(charts: Charts) -> tuple[float, float]:
    """(width, height) in metres of the largest chart in its own frame: what a `fit` picture spans."""
    largest = int(np.argmax(charts.area))
    corners = np.unique(charts.faces[charts.chart == largest].reshape(-1))
    s = charts.uvs[corners] @ charts.linear[largest].T
    width, height = np.ptp(s, axis=0)
    return float(max(width, 1e-6)), float(max(height, 1e-6))


def project_instance(scene: Scene, face_mask: torch.Tensor, reference: Reference | SwatchMaterial,
                     settings: ProjectionSettings, with_ideal: bool = False) -> TextureMap:
    """The reference laid on the instance at its real size (module docstring), on its own atlas.

    A SwatchMaterial's maps (albedo, and height / roughness when it has them) are stacked as channels and
    laid in one pass, so they share every chart, frame, phase, triplanar and seam blend exactly.
    `with_ideal`: the result also carries `ideal`, the same swatch at `IDEAL_PHASE` without seam blending on
    the same atlas (the charts and texels are shared, so it costs one more colour lookup): what the
    refinement stages score their candidates against, so that they need not project again."""
    image, layout = _stacked_maps(reference)
    faces = scene.faces[face_mask].numpy()
    charts = build_charts(scene.positions.numpy(), scene.normals.numpy(), scene.uvs.numpy(), faces)
    side = atlas_side(charts, settings)
    texels, mask = covered_texels(scene, face_mask, side, charts)
    chart = torch.from_numpy(charts.chart)[texels.face]
    density = settings.texels_per_metre
    triplanar = triplanar_charts(charts, settings)
    swatch = _swatch(image, reference.size, reference.mode, charts, density)
    painted = _painted_atlas(charts, texels, chart, mask, swatch, triplanar, settings, reference.mode, side)
    painted = _clamped(painted, layout)
    ideal = None
    if with_ideal:
        unblended = dataclasses.replace(settings, blend_width=0.0, phase=IDEAL_PHASE)
        albedo_only = dataclasses.replace(swatch, image=swatch.image[:3])
        ideal = _painted_atlas(charts, texels, chart, mask, albedo_only, triplanar, unblended, reference.mode,
                               side).clamp(0, 1)
    info: dict[str, Any] = {
        "stage": "project", "mode": reference.mode, "swatch_size_m": [swatch.width_m, swatch.height_m],
        "texels_per_metre": density, "atlas_size": side, "charts": charts.count,
        "triplanar_charts": int(triplanar.sum()), "seam_edges": int(len(charts.seams.face) // 2),
        "surface_area_m2": float(charts.area.sum()),
        # Diagnostics only: later stages read the TextureMap's `scale` (a WorldScale).
        "projection": {"blend_width": settings.blend_width, "max_distortion": settings.max_distortion,
                       "min_chart_texels": settings.min_chart_texels},
    }
    scale = WorldScale(projection=settings, swatch_size_m=(swatch.width_m, swatch.height_m), mode=reference.mode,
                       repeat=getattr(reference, "repeat", "exact"))
    maps = {name: painted[lo:hi].contiguous() for name, (lo, hi) in layout.items()}
    return TextureMap(image=maps["albedo"], mask=mask.clone(), info=info, ideal=ideal,
                      height=maps.get("height"), roughness=maps.get("roughness"), scale=scale)


def _stacked_maps(reference: Reference | SwatchMaterial) -> tuple[torch.Tensor, dict[str, tuple[int, int]]]:
    """The maps to lay as one `[C, h, w]` image, and each map's channel range in it (albedo first)."""
    if not isinstance(reference, SwatchMaterial):
        return reference.images[0], {"albedo": (0, 3)}
    maps, layout, start = [reference.albedo.float()], {"albedo": (0, 3)}, 3
    for name in ("height", "roughness"):
        value = getattr(reference, name)
        if value is not None:
            maps.append(value.float())
            layout[name] = (start, start + 1)
            start += 1
    return torch.cat(maps), layout


def _clamped(painted: torch.Tensor, layout: dict[str, tuple[int, int]]) -> torch.Tensor:
    """Colours and roughness clamped to [0, 1]; height (metres, signed) as laid."""
    if "height" not in layout:
        return painted.clamp(0, 1)
    lo, hi = layout["height"]
    return torch.cat([painted[:lo].clamp(0, 1), painted[lo:hi], painted[hi:].clamp(0, 1)])


def _swatch(image: torch.Tensor, size: float, mode: str, charts: Charts, density: float) -> Swatch:
    if mode == "fit":
        width, height = fit_extent(charts)
        return Swatch.at_density(image, width, density, height_m=height)
    return Swatch.at_density(image, size, density)


def _painted_atlas(charts: Charts, texels: Texels, chart: torch.Tensor, mask: torch.Tensor, swatch: Swatch,
                   triplanar: np.ndarray, settings: ProjectionSettings, mode: str, side: int) -> torch.Tensor:
    """The atlas `[3, side, side]` of the swatch laid on the charts at `settings.phase`, gutter filled."""
    if mode == "fit":
        colours = fitted_colours(charts, texels, chart, swatch, settings.fit_zoom)
    else:
        chart_colours = ChartColours(charts, swatch, triplanar, settings.phase)
        colours = chart_colours(chart, texels.uv, texels.position, texels.normal)
        colours = blend_seams(colours, texels, charts, chart_colours, settings.blend_width)
        colours = cut_triplanar(colours, texels, chart, chart_colours, side)
    channels = int(swatch.image.shape[0])
    atlas = torch.zeros(channels, side * side)
    atlas[:, texels.index] = colours.T.float()
    atlas = atlas.reshape(channels, side, side)
    filled = torch.zeros(side * side, dtype=torch.bool)
    filled[texels.index] = True
    if bool(mask.any()):
        # A few rings of dilation for mip lookups at island borders, then the island's mean colour:
        # the unused atlas stays calm instead of carrying streaks of copied texels.
        filled = filled.reshape(side, side)
        atlas = dilate_into_empty(atlas, filled, iterations=FILL_RINGS)
        far = ~(torch.from_numpy(distance_transform_cdt(~filled.numpy(), metric="chessboard") <= FILL_RINGS))
        atlas = torch.where(far[None], atlas[:, mask].mean(1)[:, None, None], atlas)
    return atlas.contiguous()
