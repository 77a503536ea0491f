"""`report.page`: the run page (`index.html` in `--out`) as a node, cached like the others.

The node writes what the run's values decide (see `page`); `graphflow run --out` writes `report.js`
beside report.json when the run is complete, from which the page draws the graph with each node's
status, seconds, cores and warnings (a node cannot report on the run it is part of).
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from graphflow import Context, FileBlob, FileTree, Keyed, Node, UserError, register

from ..types import Instance, PBRMaps, Reference, Scene, TextureMap
from .page import page_files


@register
class RunPage(Node):
    """`index.html` + `index_files/`: the asset in a bundled <model-viewer> (orbit, lighting switch, an
    instance list that frames each one), per instance the swatch(es) | albedo | normal | roughness |
    occlusion at one real-world scale with a scale bar in metres and the measures the run recorded, and
    the graph with per node and item ran/cached, seconds, cores and warnings (from report.js). Opens from
    file:// with no server or network. Map PNGs are export.materialx's (`materials`), never copied."""

    name = "report.page"
    version = 2  # 2: per-instance tile seams (issue 25 item 2)

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        title: str = Field("graphflow run", min_length=1, max_length=200, description="the page's title")

    def run(self, ctx: Context, scene: Scene, instances: Keyed[Instance], pbr: Keyed[PBRMaps], asset: FileBlob,
            references: Keyed[Reference] | None = None, texture: Keyed[TextureMap] | None = None,
            materials: FileTree | None = None) -> FileTree:
        missing = [name for name in pbr if name not in instances]
        if missing:
            raise UserError(f"pbr has instances that 'instances' lacks: {', '.join(missing)}", node=ctx.node_id,
                            hint="connect the same segment output that fed brdf.decompose")
        if asset.data[:4] != b"glTF":
            raise UserError("input 'asset' is not a binary glTF (.glb)", node=ctx.node_id,
                            hint="connect export.gltf's output")
        files, summary = page_files(scene, dict(instances.items()), dict(pbr.items()), asset,
                                    dict(references.items()) if references is not None else {},
                                    dict(texture.items()) if texture is not None else {}, materials,
                                    self.params.title)
        return FileTree(files=files, summary=summary)
