"""Port types of the texturing pipeline (DESIGN.md §3).

Each is a frozen dataclass of tensors plus small metadata; `TensorData`
gives `to_tensors()/from_tensors()` through the engine's codec, and
`@value_type` lets the cache decode it. Conventions shared by every module:

- colours are linear RGB float32 in [0, 1], images channel-first `[C, H, W]`;
- UV origin is glTF's: (0, 0) is the top-left of the image, v grows downward,
  so texel row = v * H. (`nodes.render.texture` converts to grid_sample's
  convention.)
- positions in metres, world space, +Y up (glTF);
- faces int64 `[F, 3]`, counter-clockwise front faces.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from graphflow import FileBlob, Keyed, TensorData, value_type

MATERIAL_CLASSES = (
    "fabric", "leather", "wood", "metal", "plastic", "ceramic", "stone", "paper", "glass", "paint", "generic",
)

# Real-world width (metres) that a reference image spans when its entry gives no `size`: what a
# swatch of that class typically shows (a fabric sample, a plank, a tile with its grout, a sheet).
DEFAULT_SWATCH_SIZE = {
    "fabric": 0.5, "leather": 0.5, "wood": 1.0, "metal": 0.5, "plastic": 0.5, "ceramic": 1.0, "stone": 1.0,
    "paper": 1.0, "glass": 1.0, "paint": 1.0, "generic": 1.0,
}
REFERENCE_MODES = ("tile", "fit")


@value_type
@dataclass(frozen=True)
class ProjectionSettings:
    """How `texture.project` lays a swatch on an atlas: the one default of each knob (the node's params
    default from these)."""

    texels_per_metre: float = 128.0
    min_size: int = 64
    max_size: int = 1024
    blend_width: float = 0.08  # metres: half-width of the cross-fade across seams
    max_distortion: float = 0.12  # mean |log stretch| above which a chart is triplanar
    min_chart_texels: float = 16.0  # charts smaller than this many texels of area are triplanar
    # Metres added to every swatch coordinate (a shifted repeat). Metres, not fractions of the swatch: the
    # charts' coordinates are metres, and a phase in metres means the same place whatever the swatch's
    # pixel count or the density it is resampled to (`nodes.texture.world.phase_of_fraction` converts).
    phase: tuple[float, float] = (0.0, 0.0)
    fit_zoom: float = 1.0  # `fit`: >1 shows the picture's centre that many times larger (a measuring baseline)


@value_type
@dataclass(frozen=True)
class WorldScale:
    """The real-world scale of a texture laid by `texture.project`: what every later stage needs to see the
    swatch as the atlas shows it, or to lay it again (`nodes.texture.world`).

    `projection` holds the settings at this atlas's density: `texels_per_metre` and `phase` are its own
    (super-resolution multiplies the density and the small-chart threshold, so the same charts stay
    triplanar); its min/max sizes are the ones the atlas side was chosen within.
    """

    projection: ProjectionSettings
    swatch_size_m: tuple[float, float]  # (width, height) metres the swatch image spans
    mode: str = "tile"  # "tile" | "fit" (Reference.mode)
    repeat: str = "exact"  # "exact" | "vary" (SwatchMaterial.repeat)

    @property
    def texels_per_metre(self) -> float:
        return float(self.projection.texels_per_metre)

    @property
    def phase(self) -> tuple[float, float]:
        return self.projection.phase

    def scaled(self, factor: float) -> WorldScale:
        """The scale of the same texture on an atlas `factor` times finer (super-resolution)."""
        p = self.projection
        return replace(self, projection=replace(p, texels_per_metre=p.texels_per_metre * factor,
                                                min_chart_texels=p.min_chart_texels * factor * factor))


@value_type
@dataclass(frozen=True)
class Scene(TensorData):
    """A triangle mesh with parts. Vertices are split at UV seams (one UV per vertex).

    A *part* is one glTF primitive (or OBJ group): `part_info[i]` holds its
    `node`, `mesh`, `primitive` (int), `material` names; `segment.parts`
    groups parts (or connected components) into instances.
    `part_textures` carries each part's baseColor image when the source had
    one (linear RGB `[3, H, W]`), else None; `pbr_from_textured` bakes from it.
    """

    positions: torch.Tensor  # [V, 3] float32
    faces: torch.Tensor  # [F, 3] int64
    normals: torch.Tensor  # [V, 3] float32, unit
    uvs: torch.Tensor  # [V, 2] float32 (TEXCOORD_0, glTF convention)
    tangents: torch.Tensor  # [V, 4] float32, w = ±1 (glTF TANGENT)
    face_part: torch.Tensor  # [F] int64 index into part_names
    part_names: tuple[str, ...]
    part_info: tuple[dict[str, Any], ...]
    part_textures: tuple[torch.Tensor | None, ...] = ()
    source: str = ""
    # [V, 2] float32: the file's own TEXCOORD_0 per vertex (NaN where the part had none). Equal to
    # `uvs` except on parts that were unwrapped (tiled/overlapping/missing UVs); `part_textures`
    # live in this texture space (see part_info["base_color_uv_transform"]). None: same as uvs.
    source_uvs: torch.Tensor | None = None
    # The unit the source file was read in (`io.load_scene`'s `units`, see `nodes.scene.units`) and the
    # factor that took its coordinates to metres (that unit times the `scale` param); positions are metres.
    units: str = "m"
    metres_per_unit: float = 1.0

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])


@value_type
@dataclass(frozen=True)
class Instance(TensorData):
    """One object instance: the faces it owns and what it is made of."""

    name: str
    face_mask: torch.Tensor  # [F] bool over Scene.faces
    bbox: torch.Tensor  # [2, 3] float32 (min, max) in world space
    material: str = "generic"  # hint from the source material name, may be overridden by refs.bind


@value_type
@dataclass(frozen=True)
class Reference(TensorData):
    """Reference images bound to one instance."""

    images: tuple[torch.Tensor, ...]  # each [3, H, W] linear RGB float32
    material: str = "generic"
    prompt: str | None = None
    # Metres that the first image's width spans (its height follows by aspect ratio).
    size: float = 1.0
    # "tile": a material swatch repeated at its real size; "fit": one picture placed once over
    # the instance's largest chart (a rug, a painting, a label).
    mode: str = "tile"
    # Several photos under different lights (issue 21): per image (azimuth, elevation or None) in degrees,
    # azimuth 0 = from the image's right, 90 = from its top. Empty: one photo, its light estimated.
    lights: tuple[tuple[float, float | None], ...] = ()
    # tile mode: "exact" repeats the swatch as is; "vary" covers large surfaces without visible repetition
    # (`swatch.material` quilts a larger tile of K x K swatches, issue 25 item 4)
    repeat: str = "exact"


@value_type
@dataclass(frozen=True)
class SwatchMaterial(TensorData):
    """One reference turned into a material in the swatch's own 2D space (DESIGN §4 swatch.material)."""

    albedo: torch.Tensor  # [3, H, W] linear RGB; tileable when mode == "tile"; photo light removed
    height: torch.Tensor | None  # [1, H, W] metres of relief at the swatch's real size, mean 0; None = flat
    roughness: torch.Tensor | None  # [1, H, W] in [0, 1]; None = the class prior decides downstream
    metallic: float | None  # None = the class prior
    size: float  # metres the albedo's width spans (same meaning as Reference.size)
    mode: str = "tile"  # "tile" | "fit"
    repeat: str = "exact"  # "exact" | "vary" (issue 25 item 4)
    material: str = "generic"
    info: dict[str, Any] = field(default_factory=dict)  # diagnostics only (measures, choices)
    prompt: str | None = None  # the bound reference's prompt, kept for priors that read text

    def as_reference(self) -> Reference:
        """The material's albedo as a one-image Reference: what the stages that read a Reference
        (distillation's patch bank, super-resolution's pairs, re-projection) see of it."""
        return Reference(images=(self.albedo,), material=self.material, prompt=self.prompt, size=self.size,
                         mode=self.mode)


def as_reference(value: Reference | SwatchMaterial) -> Reference:
    """A Reference, whichever of the two a stage was given (a SwatchMaterial gives its albedo)."""
    return value.as_reference() if isinstance(value, SwatchMaterial) else value


@value_type
@dataclass(frozen=True)
class Views(TensorData):
    """Cameras and their rasterized fragments (nvdiffrast layout).

    `rast[b, y, x] = (u, v, z/w, triangle_id + 1)`, all 0 where empty; row 0 is
    the *bottom* of the image, as in nvdiffrast. Per-pixel attributes use the
    same rows. `instance_id` indexes `instance_names`, -1 where empty.
    `view_target[b]` is the instance a camera orbits ("" for room cameras).
    """

    rast: torch.Tensor  # [B, H, W, 4] float32
    uv: torch.Tensor  # [B, H, W, 2] float32 interpolated TEXCOORD_0
    normal: torch.Tensor  # [B, H, W, 3] float32 world-space unit normal
    position: torch.Tensor  # [B, H, W, 3] float32 world-space position
    depth: torch.Tensor  # [B, H, W] float32 camera-space distance along -z, 0 empty
    instance_id: torch.Tensor  # [B, H, W] int64, -1 empty
    mvp: torch.Tensor  # [B, 4, 4] float32 world -> clip
    world_to_cam: torch.Tensor  # [B, 4, 4] float32 (OpenGL camera: looks down -z, +y up)
    intrinsics: torch.Tensor  # [B, 3, 3] float32 pixel-space K
    instance_names: tuple[str, ...]
    view_target: tuple[str, ...]

    @property
    def resolution(self) -> tuple[int, int]:
        return int(self.rast.shape[1]), int(self.rast.shape[2])


@value_type
@dataclass(frozen=True)
class TextureMap(TensorData):
    """One instance's appearance atlas (its own UV space)."""

    image: torch.Tensor  # [C, H, W] linear RGB float32
    # [H, W] bool, texels covered by the instance's UV islands (`nodes.render.uv_raster`'s one coverage rule);
    # texels outside it are gutter fill. Consumers (brdf.decompose -> PBRMaps.mask -> exports) keep this mask.
    mask: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)  # e.g. steps, losses, sources
    # [C, H, W] or None: the swatch repeated at its real size on this atlas, unblended and at another phase
    # than `image` (texture.project's `IDEAL_PHASE`): what refinement stages score candidates against. The
    # distillation stages pass it on; None where the texture is not world-scale (or after superres).
    ideal: torch.Tensor | None = None
    # The swatch material's other maps laid with exactly the same charts, phase and blends as `image`
    # (texture.project, from a SwatchMaterial); None where the material has none. Distillation passes them
    # through; superres upsamples them (bilinear). height: [1, H, W] metres; roughness: [1, H, W] in [0, 1].
    height: torch.Tensor | None = None
    roughness: torch.Tensor | None = None
    # The texture's real-world scale (texture.project's, passed on by every later stage); None: not
    # world-scale (a texture from the scene's own maps, or distilled without a projected start).
    scale: WorldScale | None = None


@value_type
@dataclass(frozen=True)
class PBRMaps(TensorData):
    """One instance's factorized material, on the same atlas as its texture."""

    albedo: torch.Tensor  # [3, H, W] linear RGB
    roughness: torch.Tensor  # [1, H, W]
    metallic: torch.Tensor  # [1, H, W]
    normal: torch.Tensor  # [3, H, W] tangent-space unit vectors, +Y up (OpenGL / glTF)
    occlusion: torch.Tensor  # [1, H, W] ambient occlusion, 1 = unoccluded
    mask: torch.Tensor  # [H, W] bool, the texture's `TextureMap.mask` (the texels that hold data)
    material: str = "generic"
    info: dict[str, Any] = field(default_factory=dict)
    # [1, H, W] metres of relief (the laid swatch height, `TextureMap.height`) or None: exported as
    # displacement where the format takes it; the normal map already shows it.
    height: torch.Tensor | None = None
    scale: WorldScale | None = None  # the texture's (`TextureMap.scale`), passed through by brdf.decompose


Instances = Keyed[Instance]
References = Keyed[Reference]
Texture = Keyed[TextureMap]
PBR = Keyed[PBRMaps]


class Asset(FileBlob):
    """Marker for documentation: an exported asset is a `FileBlob` with suffix `.glb`."""


Domain = Literal["real", "synthetic"]


@dataclass(frozen=True)
class DomainSchedule:
    """Which blocks run in synthetic mode at which timesteps when sampling in real mode.

    `t` is continuous noise time in [0, 1] (1 = pure noise), as in
    `nodes.components.priors`; a discrete timestep `i` of a scheduler with
    `N` training steps is `t = i / N` (see `nodes.sd.domain_shifter.timestep_to_t`).
    """

    synthetic_blocks: tuple[int, ...] = ()
    t_min: float = 1.0  # blocks in synthetic_blocks are synthetic for t >= t_min

    def domain(self, block_index: int, t: float) -> Domain:
        return "synthetic" if block_index in self.synthetic_blocks and t >= self.t_min else "real"

    def to_meta(self) -> dict[str, Any]:
        return {"synthetic_blocks": list(self.synthetic_blocks), "t_min": self.t_min}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> DomainSchedule:
        return cls(tuple(int(b) for b in meta.get("synthetic_blocks", ())), float(meta.get("t_min", 1.0)))


@value_type
@dataclass(frozen=True)
class DomainAdapter(TensorData):
    """Trained Realiz3D adapter weights as a cacheable value (made by `nodes.sd`, read by its prior).

    `shifter`: the `DomainShifter` state (embeddings, downs.i.weight, ups.i.weight);
    `control`: stage-2 control pathway (peft LoRA + geometry encoder), empty after stage 1;
    `meta`: JSON: format, rank, embed_dim, blocks (name, dim), schedule, training info.
    The codec names it by its class name, "DomainAdapter", wherever it is defined.
    """

    shifter: dict[str, torch.Tensor]
    control: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def schedule(self) -> DomainSchedule:
        return DomainSchedule.from_meta(self.meta.get("schedule", {}))


__all__ = [
    "DEFAULT_SWATCH_SIZE", "MATERIAL_CLASSES", "REFERENCE_MODES", "Asset", "FileBlob", "Instance", "Instances", "Keyed",
    "PBR", "PBRMaps", "ProjectionSettings", "Reference", "References", "Scene", "SwatchMaterial", "Texture",
    "TextureMap", "Views", "WorldScale", "as_reference", "Domain", "DomainAdapter", "DomainSchedule",
]
