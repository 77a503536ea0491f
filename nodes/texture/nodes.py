"""`texture.project`: each instance's swatch laid at its real size on its own atlas (see `project`)."""
from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from graphflow import Context, Node, Resources, UserError, register
from nodes.types import Instance, ProjectionSettings, Reference, Scene, SwatchMaterial, TextureMap

from .cost import DEFAULT_MAX_TEXELS, check_budget, density_warnings, estimated_seconds, instance_costs, plan_line
from .project import project_instance

DEFAULT = ProjectionSettings()  # the one default of each knob


class ProjectParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texels_per_metre: float = Field(
        DEFAULT.texels_per_metre, gt=0, le=8192, description="texel density of every atlas: an instance's atlas "
        "side is this times sqrt(surface area / UV area), rounded to a power of two and clamped to [min_size, "
        "max_size]")
    min_size: int = Field(DEFAULT.min_size, ge=8, le=8192, description="smallest atlas side (texels)")
    max_size: int = Field(DEFAULT.max_size, ge=8, le=8192, description="largest atlas side (texels)")
    blend_width: float = Field(DEFAULT.blend_width, ge=0, le=10, description="half-width of the cross-fade across "
                               "UV seams, in metres (wide enough to span a pattern's repeat is best); 0: no blending")
    max_distortion: float = Field(DEFAULT.max_distortion, gt=0, le=10, description="charts whose faces stretch "
                                  "more than this (mean |log stretch|) against one linear map get a triplanar "
                                  "projection")
    max_texels: int = Field(DEFAULT_MAX_TEXELS, ge=1, description="budget: the run stops before projecting when "
                            "all atlases together would hold more texels (CLI --max-texels); not in the cache key")

    @model_validator(mode="after")
    def _check(self) -> ProjectParams:
        if self.min_size > self.max_size:
            raise ValueError(f"min_size ({self.min_size}) must be <= max_size ({self.max_size})")
        return self

    def settings(self) -> ProjectionSettings:
        return ProjectionSettings(texels_per_metre=self.texels_per_metre, min_size=self.min_size,
                                  max_size=self.max_size, blend_width=self.blend_width,
                                  max_distortion=self.max_distortion)


@register
class TextureProject(Node):
    """The bound swatch laid on each instance at its real size (`size`, `mode` of its reference): per UV
    chart by the chart's tangent frame, triplanar where charts are tiny or distorted, cross-faded across
    seams. A fast preview on its own, and the start of `distill.semantic`. From a `swatch.material`
    (a SwatchMaterial) it lays the albedo and, where present, height and roughness with the same charts,
    phase and blends; from a bound Reference, its first image."""

    name = "texture.project"
    version = 5  # 2: the output carries `ideal` (what the refinement stages score against); charts weld per instance
    # 3: charts of equal area (to 6 digits) keep their order, whatever the scene's unit (issue 23)
    # 4: the output carries its WorldScale (`TextureMap.scale`, issue 24)
    # 5: triplanar charts: one axis per texel, a min-error cut where two meet (no half-and-half doubles; issue 25)
    Params = ProjectParams
    map_over = ("instances", "references")
    reads_only = ("scene",)  # shared by every item: not copied per item
    estimate_inputs = ("scene", "instances")
    unkeyed_params = ("max_texels",)

    def estimate(self, inputs: dict[str, Any], downstream: dict[str, tuple[str, BaseModel]]) -> str:
        """The plan line (instances, texels, largest, time) and the budget and density checks (`cost`)."""
        settings = self.params.settings()
        costs = instance_costs(inputs["scene"], inputs["instances"], settings)
        seconds, unknown = estimated_seconds(costs, [(self.name, self.params), *downstream.values()])
        check_budget(costs, settings, self.params.max_texels, seconds)
        for line in density_warnings(costs, settings):
            logging.getLogger("graphflow.nodes.texture").warning("%s", line)
        return plan_line(costs, seconds, unknown)
    resources = Resources(num_cpus=1, memory_mb=1024)

    def run(self, ctx: Context, scene: Scene, instances: Instance,
            references: Reference | SwatchMaterial) -> TextureMap:
        if instances.face_mask.shape[0] != scene.num_faces:
            raise UserError("instances do not belong to this scene (face count differs)", node=ctx.node_id,
                            item=ctx.item, hint="connect `scene` and `instances` from the same loader")
        if isinstance(references, Reference) and not references.images:
            raise UserError("the reference has no images", node=ctx.node_id, item=ctx.item,
                            hint="bind at least one image to this instance in the references file")
        if not bool(instances.face_mask.any()):
            raise UserError("the instance has no faces", node=ctx.node_id, item=ctx.item)
        return project_instance(scene, instances.face_mask, references, self.params.settings(), with_ideal=True)
