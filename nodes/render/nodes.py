"""Nodes of the rendering family: `views.sample`."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from graphflow import Context, Keyed, Node, register
from nodes.components.raster import BackendName
from nodes.types import Instance, Scene, Views

from .views import sample_views


@register
class SampleViews(Node):
    """Cameras orbiting each instance (framing its bounding box, on its visible side) plus optional
    cameras standing inside the room; the whole scene rasterized from each, in nvdiffrast's layout."""

    name = "views.sample"
    version = 3  # 2: cameras from ctx.seed; 3: an instance alone is rasterized with only its vertices (Embree ties)

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        count: int = Field(8, ge=0, le=256, description="orbit cameras per instance")
        resolution: int = Field(128, ge=8, le=4096, description="square image size in pixels")
        elevation: tuple[float, float] = Field((10.0, 50.0), description="orbit elevation range, degrees")
        fov: tuple[float, float] = Field((35.0, 50.0), description="vertical field of view range, degrees")
        room_cameras: int = Field(0, ge=0, le=256, description="cameras inside the scene's bounding box")
        backend: BackendName = "auto"
        seed: int = Field(0, ge=0, description="seed of the camera draws (the run's: ctx.seed)")
        margin: float = Field(1.1, gt=0.1, le=10.0, description="framing: 1 = bounding sphere fills the view")
        isolate: bool = Field(False, description="rasterize each instance's own cameras with only its faces, so "
                              "that hidden parts (a bulb inside a shade) get pixels; room cameras see the whole scene")
        texels_per_metre: float = Field(0.0, ge=0.0, le=100_000.0, description="texel density of the textures "
                                        "(texture.project's): > 0 sizes each instance's views by its size at "
                                        "texels_per_pixel (count is then unused); 0 = count views each")
        texels_per_pixel: float = Field(2.0, ge=0.25, le=64.0, description="texels one view pixel spans "
                                        "(the mip level distillation reads); with texels_per_metre only")
        min_count: int = Field(4, ge=1, le=256, description="fewest views of an instance (with texels_per_metre)")
        max_count: int = Field(32, ge=1, le=256, description="most views of an instance (with texels_per_metre)")

        @model_validator(mode="after")
        def _ranges(self) -> SampleViews.Params:
            low, high = self.elevation
            if not -90.0 <= low <= high <= 90.0:
                raise ValueError(f"elevation must be (low, high) with -90 <= low <= high <= 90, got {self.elevation}")
            low, high = self.fov
            if not 1.0 <= low <= high <= 170.0:
                raise ValueError(f"fov must be (low, high) with 1 <= low <= high <= 170 degrees, got {self.fov}")
            if self.min_count > self.max_count:
                raise ValueError(f"min_count ({self.min_count}) must be <= max_count ({self.max_count})")
            return self

    def run(self, ctx: Context, scene: Scene, instances: Keyed[Instance]) -> Views:
        p = self.params
        density = p.texels_per_metre / p.texels_per_pixel
        ctx.log.info("sampling %s cameras per instance for %d instances, %d room cameras, %dx%d%s",
                     f"{p.min_count}-{p.max_count}" if density else p.count, len(instances), p.room_cameras,
                     p.resolution, p.resolution, ", each instance alone" if p.isolate else "")
        return sample_views(scene, instances, count=p.count, resolution=p.resolution, elevation=p.elevation,
                            fov=p.fov, room_camera_count=p.room_cameras, backend=p.backend, seed=ctx.seed,
                            margin=p.margin, device=ctx.device, isolate=p.isolate, pixels_per_metre=density,
                            min_count=p.min_count, max_count=p.max_count)
