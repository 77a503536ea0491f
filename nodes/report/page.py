"""The run page's static part: index.html, its scripts, the model's bytes and each instance's panel data.

What the page shows comes from three places, so that the node stays cached like any other:
- this module (the `report.page` node) writes everything a run's values decide: the page and its
  scripts, `index_files/asset.glb.js` (the glb's bytes as base64: a page opened from `file://` may
  not `fetch()` a file, but it may run a classic script beside it, and the viewer gets a blob URL),
  the swatches as given (PNGs), and `index_files/page_data.js` (instances, their boxes, the paths of
  the map PNGs the exporters wrote, scales and measures, and per instance laid in `tile` mode the tile-seam
  ratios of issue 25 item 2 (`nodes.measures.tile_report`), also in the node's summary, so in report.json);
- the map PNGs themselves are the exporters' (`asset_textures/*.png` of export.materialx), shown with
  `<img>` and never copied; a graph without export.materialx gets the same bytes under
  `index_files/maps/` (`gltf_writer.material_pngs`, the glTF's own PNGs);
- `report.js` (written by `graphflow run --out` beside report.json once the run is complete: the
  report and the graph's nodes and edges) fills in the graph, each node's status, seconds, cores,
  notes and warnings, and the links. The page works without it and says so.
"""
from __future__ import annotations

import base64
import json
import math
from importlib import resources
from typing import Any

import torch
import torch.nn.functional as F

from graphflow import FileBlob, FileTree

from ..export.gltf_writer import encode_png, linear_to_srgb, material_pngs
from ..export.names import identifiers
from ..measures.tile_report import tile_report
from ..texture.world import instance_charts
from ..types import Instance, PBRMaps, Reference, Scene, TextureMap

FILES = "index_files"
STATIC = ("page.css", "page.js", "model-viewer-umd.min.js")
MAP_SUFFIXES = {"albedo": "baseColor", "orm": "occlusionRoughnessMetallic", "normal": "normal"}
WINDOW = 200  # CSS px of a panel: the swatch's width is shown at this size, every map of its row at the same scale
# Texture info keys shown as measures, with their label and unit; any other scalar key is shown under its own name.
LABELS = {
    "sw_to_reference": ("structure distance to the swatch at real size (patch sliced-Wasserstein)", ""),
    "init": ("kept candidate", ""), "superres_choice": ("super-resolution kept", ""),
    "charts": ("UV charts", ""), "triplanar_charts": ("triplanar charts", ""), "seam_edges": ("seam edges", ""),
    "surface_area_m2": ("surface", "m²"), "texels_per_metre": ("swatch sampled at", "texels/m"),
    "note": ("note", ""), "stage": ("last texture stage", ""), "prior": ("prior", ""), "steps": ("steps", ""),
}
HIDDEN = {"instance", "projection", "swatch_size_m", "mode", "atlas_size", "size", "lr", "restarted", "factor"}


def static_file(name: str) -> bytes:
    return resources.files("nodes.report").joinpath("static", name).read_bytes()


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return " × ".join(_fmt(v) for v in value)
    return str(value)


def measures(*infos: dict[str, Any]) -> list[list[str]]:
    """[label, value, key] rows of what the run recorded for an instance (later infos override earlier ones).
    Only scalars, short lists and flat dicts of scalars: whatever a stage measured, nothing computed here."""
    merged: dict[str, Any] = {}
    for info in infos:
        merged.update(info)
    rows = []
    for key, value in merged.items():
        if key in HIDDEN or value is None:
            continue
        flat = isinstance(value, (str, int, float, bool)) or (
            isinstance(value, (list, tuple)) and len(value) <= 4 and all(isinstance(v, (int, float)) for v in value)) \
            or (isinstance(value, dict) and all(isinstance(v, (str, int, float, bool)) for v in value.values()))
        if not flat:
            continue
        label, unit = LABELS.get(key, (key.replace("_", " "), ""))
        rows.append([label, f"{_fmt(value)} {unit}".strip(), key])
    return rows


def focus(mask: torch.Tensor, window: int) -> list[int]:
    """Top-left texel of the `window`² square of the atlas that holds the most data texels: where a panel
    showing the atlas at real size opens (an atlas corner is often gutter)."""
    h, w = mask.shape[-2:]
    if window >= h and window >= w:
        return [0, 0]
    k = (min(window, h), min(window, w))
    covered = F.avg_pool2d(mask.float()[None, None], kernel_size=k, stride=max(1, min(k) // 8))[0, 0]
    flat = int(torch.argmax(covered))
    stride = max(1, min(k) // 8)
    return [(flat % covered.shape[1]) * stride, (flat // covered.shape[1]) * stride]


def mean_density(scene: Scene, instance: Instance, size: tuple[int, int]) -> float | None:
    """Texels per metre of an atlas of `size` over the instance's surface: sqrt(UV area in texels / surface
    area), exact where the charts share one scale (texture.project's layouts, xatlas), the mean otherwise."""
    faces = scene.faces[instance.face_mask]
    if faces.numel() == 0:
        return None
    p, uv = scene.positions[faces].double(), scene.uvs[faces].double()
    area = torch.linalg.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]).norm(dim=1).sum() / 2
    e1, e2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    uv_area = (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).abs().sum() / 2 * size[0] * size[1]
    return float(math.sqrt(uv_area / area)) if area > 0 and uv_area > 0 else None


def swatch_entries(ident: str, reference: Reference | None) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """The swatch images as given (sRGB PNGs) with their real width in metres."""
    if reference is None:
        return [], {}
    entries, files = [], {}
    for i, image in enumerate(reference.images):
        path = f"{FILES}/swatches/{ident}_{i}.png"
        files[path] = encode_png(linear_to_srgb(image.float().clamp(0, 1)))
        width_m = float(reference.size) * image.shape[-1] / reference.images[0].shape[-1]
        entries.append({"src": path, "px": [int(image.shape[-1]), int(image.shape[-2])], "width_m": width_m})
    return entries, files


def map_paths(name: str, ident: str, maps: PBRMaps, materials: FileTree | None) -> tuple[dict[str, str], dict[str, bytes]]:
    """Where the page finds the instance's map PNGs: the export.materialx files when the graph has them,
    else the same bytes written under index_files/maps/."""
    if materials is not None:
        mtlx_ident = materials.summary.get("names", {}).get(name, ident)
        found = {slot: next((p for p in materials.files if p.endswith(f"/{mtlx_ident}_{suffix}.png")), None)
                 for slot, suffix in MAP_SUFFIXES.items()}
        if all(found.values()):
            return {k: v for k, v in found.items() if v}, {}
    pngs = material_pngs(maps)
    files = {f"{FILES}/maps/{ident}_{MAP_SUFFIXES['albedo']}.png": pngs.base_color,
             f"{FILES}/maps/{ident}_{MAP_SUFFIXES['orm']}.png": pngs.orm,
             f"{FILES}/maps/{ident}_{MAP_SUFFIXES['normal']}.png": pngs.normal}
    return {slot: f"{FILES}/maps/{ident}_{suffix}.png" for slot, suffix in MAP_SUFFIXES.items()}, files


def tile_seams_of(scene: Scene, instance: Instance, maps: PBRMaps, texture: TextureMap | None,
                  reference: Reference | None) -> dict[str, Any] | None:
    """Issue 25's tile-seam ratios of the shipped albedo (`nodes.measures.tile_report`) for an instance laid in
    `tile` mode at its real size; None for any other (no world scale, `fit`). The reference's own ratios
    come along where it is the swatch laid (its width is the scale's: an `exact` repeat, not a `vary` quilt)."""
    if texture is None or texture.scale is None or texture.scale.mode != "tile":
        return None
    same_atlas = tuple(maps.albedo.shape[-2:]) == tuple(texture.image.shape[-2:])
    atlas, mask = (maps.albedo, maps.mask) if same_atlas else (texture.image[:3], texture.mask)
    laid = reference is not None and bool(reference.images) and \
        math.isclose(float(reference.size), texture.scale.swatch_size_m[0], rel_tol=1e-3)
    return tile_report(instance_charts(scene, instance), atlas, mask.bool(), texture.scale,
                       reference.images[0] if laid else None)


def instance_entry(name: str, ident: str, instance: Instance, maps: PBRMaps, texture: TextureMap | None,
                   reference: Reference | None, scene: Scene) -> dict[str, Any]:
    """Everything the page shows about one instance except its files."""
    info = dict(texture.info) if texture is not None else {}
    size = (int(maps.albedo.shape[-2]), int(maps.albedo.shape[-1]))
    # The atlas image's own scale: its UV area in texels over the surface. A texture stage's
    # `texels_per_metre` is the density it sampled the swatch at (a measure, listed below); the atlas side
    # is that density rounded to a power of two and clamped, so its texels per metre can differ.
    tpm = mean_density(scene, instance, size)
    swatch_m = float(reference.size) if reference is not None and reference.images else None
    # one scale per row: the swatch's width at WINDOW px; without a swatch, a window of the atlas at 1 px per texel
    px_per_m = WINDOW / swatch_m if swatch_m else (float(tpm) if tpm else None)
    window_texels = int(round(WINDOW * float(tpm) / px_per_m)) if tpm and px_per_m else WINDOW
    faces = int(instance.face_mask.sum())
    return {
        "name": name, "ident": ident, "material": maps.material,
        "mode": getattr(reference, "mode", None) if reference is not None else None,
        "prompt": getattr(reference, "prompt", None) if reference is not None else None,
        "bbox": [[round(float(v), 5) for v in row] for row in instance.bbox.tolist()], "triangles": faces,
        "atlas_px": [size[1], size[0]], "texels_per_metre": round(tpm, 3) if tpm else None,
        "px_per_metre": px_per_m,
        "focus": focus(maps.mask, window_texels), "swatch_m": swatch_m,
        "measures": measures(info, dict(maps.info)),
        "tile_seams": tile_seams_of(scene, instance, maps, texture, reference),
    }


def page_files(scene: Scene, instances: dict[str, Instance], pbr: dict[str, PBRMaps], asset: FileBlob,
               references: dict[str, Reference], textures: dict[str, TextureMap],
               materials: FileTree | None, title: str) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The page's files (relative path -> bytes) and a summary for report.json."""
    idents = identifiers(pbr)
    files: dict[str, bytes] = {f"{FILES}/{name}": static_file(name) for name in STATIC}
    entries = []
    for name, maps in pbr.items():
        entry = instance_entry(name, idents[name], instances[name], maps, textures.get(name), references.get(name),
                               scene)
        entry["swatches"], swatch_pngs = swatch_entries(idents[name], references.get(name))
        entry["maps"], own_maps = map_paths(name, idents[name], maps, materials)
        files.update(swatch_pngs)
        files.update(own_maps)
        entries.append(entry)
    data = {"title": title, "instances": entries, "glb_bytes": len(asset.data), "asset_summary": asset.summary}
    files[f"{FILES}/page_data.js"] = ("window.GRAPHFLOW_PAGE = " + json.dumps(data, indent=1, sort_keys=True)
                                      + ";\n").encode()
    files[f"{FILES}/asset.glb.js"] = b'window.GRAPHFLOW_GLB = "' + base64.b64encode(asset.data) + b'";\n'
    files["index.html"] = static_file("index.html").replace(b"{{title}}", _html_text(title).encode())
    summary = {"page": "index.html", "instances": len(entries),
               "tile_seams": {e["name"]: e["tile_seams"] for e in entries if e["tile_seams"] is not None},
               "bytes_beyond_model": sum(len(v) for k, v in files.items() if not k.endswith("asset.glb.js"))}
    return files, summary


def _html_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
