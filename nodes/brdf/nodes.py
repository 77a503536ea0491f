"""Nodes of the BRDF family: baked textures from a scene, material-class references, decomposition.

Thin shells over `decompose` (brdf.decompose), `scene_texture`
(texture.from_scene) and `materials` (brdf.class_references).
"""
from __future__ import annotations

import dataclasses

import torch
from pydantic import BaseModel, ConfigDict, Field

from graphflow import Context, Keyed, Node, Resources, UserError, register

from ..types import Instance, PBRMaps, Reference, Scene, TextureMap
from .decompose import decompose_texture, unlit_maps
from .materials import MATERIAL_PRIORS, material_prior
from .scene_texture import texture_from_scene
from .texels import TexelGeometry, ambient_occlusion, texel_geometry


@register
class Decompose(Node):
    """Baked appearance texture -> albedo, roughness, metallic, normal and ambient occlusion maps.

    Per instance (mapped over `texture`, `references` and `instances`, zipped by instance
    name): texel geometry on the texture's atlas, ambient occlusion ray-cast
    against the whole scene, baked lighting fitted to the luminance and
    divided out of the albedo, normals from a height field of the
    high-frequency luminance, roughness/metallic from the instance's material
    class (`references[...].material`, else the instance's hint), then the
    re-rendering loss (GGX, lights importance-sampled toward the specular
    lobe) for `steps` Adam steps. See `nodes.brdf.decompose`.
    """

    name = "brdf.decompose"
    version = 6  # 5: laid height / roughness maps of a fitted swatch (issue 21) drive normals and roughness
    # 6: the maps carry the texture's WorldScale (`PBRMaps.scale`, issue 24)
    map_over = ("texture", "references", "instances")
    reads_only = ("scene",)  # shared by every item: not copied per item
    resources = Resources(num_cpus=2, memory_mb=1024)  # the AO rays are cast on both threads

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        steps: int = Field(30, ge=0, le=10_000, description="Adam steps of the re-rendering loss (0: closed form only)")
        lr: float = Field(0.05, gt=0, le=1.0, description="Adam learning rate of log-albedo (materials: 0.2x)")
        ao_rays: int = Field(64, ge=0, le=4096, description="ambient occlusion rays per texel (0: no occlusion)")
        normal_strength: float = Field(1.0, ge=0, le=20.0,
                                       description="scale of the luminance height-field normals (0: flat)")
        seed: int = Field(0, ge=0, description="seed of AO rays and light samples (the run's: ctx.generator)")
        light_samples: int = Field(4, ge=0, le=256, description="sky directions per texel and step, "
                                   "importance-sampled toward the specular lobe")
        baked_shading: bool = Field(True, description="true: the texture holds the scene's light (a bake, a "
                                    "scan's baseColor): fit it and divide it out of the albedo. false: it holds "
                                    "none (texture.project, distillation): the albedo is the texture itself")

    def run(self, ctx: Context, scene: Scene, instances: Instance, texture: TextureMap,
            references: Reference) -> PBRMaps:
        p = self.params
        name = ctx.item
        instance = instances  # mapped: this item's instance only, so its key depends on no other instance
        if instance.face_mask.shape[0] != scene.num_faces:
            raise UserError("instances do not belong to this scene (face count differs)", node=ctx.node_id,
                            item=name, hint="connect `scene` and `instances` from the same loader")
        image = texture.image
        if image.dim() != 3 or image.shape[0] < 3:
            raise UserError(f"texture must be [3, H, W] RGB, got {tuple(image.shape)}", node=ctx.node_id, item=name)
        material = references.material if references.material != "generic" else material_prior_name(instance.material)
        prior = material_prior(material, where=ctx.where)
        geometry = texture_geometry(scene, instance, texture, ctx)
        generator = ctx.generator
        occlusion = ambient_occlusion(scene, geometry.position, geometry.normal, p.ao_rays, generator)
        if not p.baked_shading:
            maps = unlit_maps(image[:3].to(torch.float32), geometry, occlusion, prior, material,
                              normal_strength=p.normal_strength, height=texture.height, roughness=texture.roughness)
        else:
            with ctx.progress(total=p.steps, desc="decompose") as bar:
                maps = decompose_texture(
                    image[:3].to(torch.float32), geometry, occlusion, prior, material,
                    steps=p.steps, lr=p.lr, normal_strength=p.normal_strength, light_samples=p.light_samples,
                    generator=generator, progress=bar,
                )
        # The maps lie on the texture's atlas: its real-world scale passes through for whatever reads them.
        return dataclasses.replace(maps, scale=texture.scale)


def texture_geometry(scene: Scene, instance: Instance, texture: TextureMap, ctx: Context) -> TexelGeometry:
    """The texel geometry of the texels in the texture's own mask (`TextureMap.mask`, which the maps keep
    as `PBRMaps.mask`); texels of the mask that show no surface point of the instance are dropped."""
    shape = tuple(texture.image.shape[1:])
    if tuple(texture.mask.shape) != shape:
        raise UserError(f"texture mask {tuple(texture.mask.shape)} does not match its image {shape}",
                        node=ctx.node_id, item=ctx.item, hint="the texture's producer must give a mask per texel")
    geometry = texel_geometry(scene, instance.face_mask, (shape[0], shape[1]), within=texture.mask)
    if geometry.index.numel() == 0:
        raise UserError("the instance covers no texel of its texture atlas", node=ctx.node_id, item=ctx.item,
                        hint="its UVs may be degenerate; re-load the scene with unwrap: always")
    dropped = int(texture.mask.to(torch.bool).sum()) - int(geometry.index.numel())
    if dropped:
        ctx.log.warning("%s: %d texel(s) of the texture's mask show no surface point of the instance; "
                        "they are left out of the maps", ctx.item, dropped)
    return geometry


@register
class TextureFromScene(Node):
    """Each instance's baked appearance from the scene's own baseColor textures, on the
    instance's atlas (`Scene.uvs`): every texel looks up its part's texture at the surface
    point's source UV (with the part's KHR_texture_transform); parts without a texture give
    their baseColorFactor."""

    name = "texture.from_scene"
    version = 2
    map_over = "instances"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        size: int = Field(256, ge=8, le=8192, description="atlas side in texels")

    def run(self, ctx: Context, scene: Scene, instances: Instance) -> TextureMap:
        return texture_from_scene(scene, instances, self.params.size, log=ctx.log)


@register
class ClassReferences(Node):
    """References that carry only each instance's material class hint (one flat grey image):
    what `refs.bind` falls back to when a graph has no references file."""

    name = "brdf.class_references"
    version = 1

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        material: str | None = Field(None, description="force this class for every instance (default: hints)")

    def run(self, ctx: Context, instances: Keyed[Instance]) -> Keyed[Reference]:
        forced = self.params.material
        if forced is not None:
            material_prior(forced, where=ctx.where)
        grey = torch.full((3, 8, 8), 0.5)
        return Keyed({
            name: Reference(images=(grey,), material=forced or material_prior_name(inst.material))
            for name, inst in instances.items()
        })


def material_prior_name(material: str) -> str:
    """The class of a material hint, `generic` when it is not a known class."""

    return material if material in MATERIAL_PRIORS else "generic"
