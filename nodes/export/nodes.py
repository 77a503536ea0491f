"""Nodes of the export family: the glTF 2.0 asset and its preview contact sheet.

Thin shells over `gltf_writer` (export.gltf) and `preview` (preview.render).
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from graphflow import Context, FileBlob, Keyed, Node, register

from ..types import Instance, PBRMaps, Scene
from .gltf_writer import build_glb
from .preview import contact_sheet


@register
class ExportGltf(Node):
    """One binary glTF 2.0 (.glb): one mesh primitive and one material per instance (named after
    it) with baseColor, metallicRoughness + occlusion, normal (with TANGENT) PNG textures;
    KHR_materials_sheen on fabric when `sheen_for_fabric`. Passes the Khronos validator."""

    name = "export.gltf"
    version = 1

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
    version = 1

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        resolution: int = Field(256, ge=32, le=2048, description="side of each rendered view in pixels")
        views: int = Field(3, ge=1, le=12, description="number of views around the scene")

    def run(self, ctx: Context, scene: Scene, instances: Keyed[Instance], pbr: Keyed[PBRMaps]) -> FileBlob:
        data, summary = contact_sheet(scene, instances, pbr, resolution=self.params.resolution,
                                      views=self.params.views)
        return FileBlob(data=data, suffix=".png", summary=summary)
