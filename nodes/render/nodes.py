"""Nodes of the rendering family: `views.sample`."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from graphflow import Context, Keyed, Node, register
from nodes.types import Instance, Scene, Views

from .views import sample_views


@register
class SampleViews(Node):
    """Cameras orbiting each instance (framing its bounding box, on its visible side) plus optional
    cameras standing inside the room; the whole scene rasterized from each, in nvdiffrast's layout."""

    name = "views.sample"
    version = 1

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        count: int = Field(8, ge=0, le=256, description="orbit cameras per instance")
        resolution: int = Field(128, ge=8, le=4096, description="square image size in pixels")
        elevation: tuple[float, float] = Field((10.0, 50.0), description="orbit elevation range, degrees")
        fov: tuple[float, float] = Field((35.0, 50.0), description="vertical field of view range, degrees")
        room_cameras: int = Field(0, ge=0, le=256, description="cameras inside the scene's bounding box")
        backend: Literal["auto", "embree", "torch", "nvdiffrast"] = "auto"
        seed: int = 0
        margin: float = Field(1.1, gt=0.1, le=10.0, description="framing: 1 = bounding sphere fills the view")

        @model_validator(mode="after")
        def _ranges(self) -> SampleViews.Params:
            low, high = self.elevation
            if not -90.0 <= low <= high <= 90.0:
                raise ValueError(f"elevation must be (low, high) with -90 <= low <= high <= 90, got {self.elevation}")
            low, high = self.fov
            if not 1.0 <= low <= high <= 170.0:
                raise ValueError(f"fov must be (low, high) with 1 <= low <= high <= 170 degrees, got {self.fov}")
            return self

    def run(self, ctx: Context, scene: Scene, instances: Keyed[Instance]) -> Views:
        p = self.params
        ctx.log.info("sampling %d cameras per instance for %d instances, %d room cameras, %dx%d",
                     p.count, len(instances), p.room_cameras, p.resolution, p.resolution)
        return sample_views(scene, instances, count=p.count, resolution=p.resolution, elevation=p.elevation,
                            fov=p.fov, room_camera_count=p.room_cameras, backend=p.backend, seed=p.seed,
                            margin=p.margin, device=ctx.device)
