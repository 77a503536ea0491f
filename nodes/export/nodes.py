"""Nodes of the export family: the glTF 2.0 asset, its USDZ and MaterialX twins, and a preview.

Thin shells over `gltf_writer` (export.gltf), `usd_writer` (export.usd), `materialx_writer`
(export.materialx) and `preview` (preview.render). The three exports encode the same PBRMaps
into the same PNG bytes (`gltf_writer.material_pngs`).
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from graphflow import Context, FileBlob, FileTree, Keyed, Node, register

from ..types import Instance, PBRMaps, Scene
from .gltf_writer import build_glb
from .materialx_writer import export_materials, write_materialx
from .preview import contact_sheet
from .usd_writer import ARKIT_MAX_TEXTURE, build_usdz

FILE_STEM = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # a plain file name: no folders, no leading dot


@register
class ExportGltf(Node):
    """One binary glTF 2.0 (.glb): one mesh primitive and one material per instance (named after
    it) with baseColor, metallicRoughness + occlusion, normal (with TANGENT) PNG textures;
    KHR_materials_sheen on fabric when `sheen_for_fabric`. Passes the Khronos validator."""

    name = "export.gltf"
    version = 2

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        sheen_for_fabric: bool = Field(True, description="add KHR_materials_sheen to fabric materials")
        name: str = Field("graphflow", min_length=1, max_length=200, description="name of the glTF scene")

    def run(self, ctx: Context, scene: Scene, instances: Keyed[Instance], pbr: Keyed[PBRMaps]) -> FileBlob:
        data, summary = build_glb(scene, instances, pbr, sheen_for_fabric=self.params.sheen_for_fabric,
                                  name=self.params.name)
        return FileBlob(data=data, suffix=".glb", summary=summary)


@register
class PreviewRender(Node):
    """A contact sheet PNG: `views` shaded renders of the PBR asset around the scene under three
    lights, then each instance's albedo / roughness / metallic / normal maps."""

    name = "preview.render"
    version = 2

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        resolution: int = Field(256, ge=32, le=2048, description="side of each rendered view in pixels")
        views: int = Field(3, ge=1, le=12, description="number of views around the scene")

    def run(self, ctx: Context, scene: Scene, instances: Keyed[Instance], pbr: Keyed[PBRMaps]) -> FileBlob:
        data, summary = contact_sheet(scene, instances, pbr, resolution=self.params.resolution,
                                      views=self.params.views)
        return FileBlob(data=data, suffix=".png", summary=summary)


@register
class ExportUsd(Node):
    """`<filename>.usdz`: an ARKit-compliant package of the same meshes (metres, +Y up, primvars:st,
    normals) with, per instance, a UsdPreviewSurface over the glTF's PNGs and the MaterialX
    standard_surface graph bound through outputs:mtlx:surface. Instance names that are not
    identifiers are sanitised (the summary maps them). Maps over `max_texture` px (ARKit) are
    kept with a warning, or downsized in the usdz only with `oversize: downsize`."""

    name = "export.usd"
    version = 2

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        filename: str = Field("asset", pattern=FILE_STEM, max_length=100,
                              description="file name without .usdz, written into --out")
        sheen_for_fabric: bool = Field(True, description="sheen on fabric in the MaterialX shader, as in the glTF")
        max_texture: int = Field(ARKIT_MAX_TEXTURE, ge=16, le=16384,
                                 description="largest texture side for AR Quick Look (Apple: 2048)")
        oversize: Literal["warn", "downsize"] = Field(
            "warn", description="a larger map: keep it and warn, or box-filter it to fit (usdz only)")

    def run(self, ctx: Context, scene: Scene, instances: Keyed[Instance], pbr: Keyed[PBRMaps]) -> FileTree:
        materials = export_materials(instances, pbr, sheen_for_fabric=self.params.sheen_for_fabric)
        data, summary = build_usdz(scene, dict(instances.items()), materials, max_texture=self.params.max_texture,
                                   oversize=self.params.oversize)
        for item in summary["oversize_textures"]:
            ctx.log.warning("%s: instance '%s' has %dx%d maps, over ARKit's %d px: %s", ctx.where, item["instance"],
                            *item["size"], self.params.max_texture,
                            "downsized in the usdz" if item["action"] == "downsize" else
                            "kept (AR Quick Look may refuse them); --set NODE.params.oversize=downsize fits them")
        return FileTree(files={f"{self.params.filename}.usdz": data}, summary=summary)


@register
class ExportMaterialx(Node):
    """`<filename>.mtlx`: a MaterialX 1.39 document, per instance a standard_surface material over
    image nodes (srgb_texture colour, raw data, a normalmap), with the glTF's PNGs written beside
    it in `<filename>_textures/`. Validates under MaterialX's own Document.validate()."""

    name = "export.materialx"
    version = 2

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        filename: str = Field("asset", pattern=FILE_STEM, max_length=100,
                              description="file name without .mtlx, written into --out")
        sheen_for_fabric: bool = Field(True, description="sheen on fabric, as KHR_materials_sheen in the glTF")

    def run(self, ctx: Context, instances: Keyed[Instance], pbr: Keyed[PBRMaps]) -> FileTree:
        # no scene input: the document holds no geometry, so a geometry change alone never re-runs it
        materials = export_materials(instances, pbr, sheen_for_fabric=self.params.sheen_for_fabric)
        files, summary = write_materialx(materials, basename=self.params.filename)
        return FileTree(files=files, summary=summary)
