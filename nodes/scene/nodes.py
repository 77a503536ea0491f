"""Nodes of the scene family: loading, the demo room, segmentation, reference binding.

Each node is a thin shell (params, typed ports) over the plain modules of
this package, which document the rules: `loader`/`gltf`/`obj` (io.load_scene),
`demo_room`/`patterns` (io.demo_room), `segment` (segment.parts),
`references` (refs.bind).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from graphflow import Context, Keyed, Node, UserError, register

from ..types import Instance, Reference, Scene
from .demo_room import build_room_references, build_room_scene, room_instance_names
from .gltf import gltf_file_dependencies
from .images import DEFAULT_MAX_PIXELS
from .loader import load_scene
from .references import bind_references, references_file_dependencies
from .segment import segment_scene
from .units import Units


@register
class LoadScene(Node):
    """Load a glTF 2.0 (.gltf/.glb) or OBJ file as a `Scene` (one part per glTF primitive / OBJ group).

    UVs: `auto` keeps each part's TEXCOORD_0 exactly when it is a valid
    atlas (present, finite, in [0, 1], not collapsed to zero area, a point or
    a line, not overlapping within the part) and unwraps the part with xatlas
    otherwise; `always` unwraps every part; `never` keeps UVs as they are
    (error if a part has none). `Scene.source_uvs` keeps the UVs the file's
    baseColor texture is sampled at (its texCoord set, KHR_texture_transform
    applied).

    Everything a file can be faulted for is checked here, before any
    expensive node: required glTF extensions graphflow cannot read (named),
    Draco data that does not decode, sparse accessors out of range... (see
    `gltf` and `gltf_ext`). A mesh used by several glTF nodes gives one part
    per node.

    Units (`nodes.scene.units`): `auto` (default) keeps the file's metres unless the scene is implausible
    indoors read that way (a 90 m tall chair), then reads it in cm or mm and says so in one warning line;
    the unit is in `Scene.units` and this node's note in report.json.
    Source textures that cannot be read (KTX2, a corrupt or missing image) do not stop the load: the part
    records them (`part_info["unreadable_texture"]`), one warning line and the note say so, and a node
    that reads source textures (`texture.from_scene`) fails naming the file (`require_part_textures`).
    """

    name = "io.load_scene"
    version = 3  # 2: collapsed UVs unwrapped, texture transform in source_uvs, sparse/Draco/quantized input
    # 3: units (auto), unreadable source textures recorded instead of raised, scale-free xatlas unwrap

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        max_faces: int = Field(5_000_000, ge=1, description="refuse scenes with more triangles than this")
        unwrap: Literal["auto", "never", "always"] = Field("auto", description="when to generate UVs with xatlas")
        units: Units = Field("auto", description="the file's length unit: m, cm, mm, in, ft, or auto (metres "
                             "unless implausible indoors, then cm or mm, with a warning)")
        scale: float = Field(1.0, gt=0, description="multiply positions by this after units (to metres)")
        texture_size: int = Field(2048, ge=1, le=16384, description="max long side of decoded baseColor textures")
        max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="refuse images with more pixels than this")

    def file_dependencies(self, port: str, path: Path) -> list[Path]:
        return gltf_file_dependencies(path) if port == "path" else []

    def run(self, ctx: Context, path: Path) -> Scene:
        p = self.params
        if path is None:
            raise UserError("no scene file given", param="path", hint="pass --input scene=FILE")
        notes: list[str] = []
        scene = load_scene(Path(path), max_faces=p.max_faces, unwrap_mode=p.unwrap, scale=p.scale,
                           max_pixels=p.max_pixels, texture_size=p.texture_size, log=ctx.log, units=p.units,
                           notes=notes)
        for note in notes:
            ctx.note(note)
        return scene


class DemoRoom(NamedTuple):
    scene: Scene
    references: Keyed[Reference]


@register
class DemoRoomNode(Node):
    """The embedded demo: a small furnished room (floor, walls, rug, table, sofa, shelf) and one
    procedural reference image per instance. No input files.

    `seeds` overrides the pattern seed of single instances (changing one changes only that
    instance's reference); the others derive theirs from `seed` and their name.
    """

    name = "io.demo_room"
    version = 2

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        seed: int = Field(0, description="seed of every instance's reference pattern")
        seeds: dict[str, int] = Field(default_factory=dict, description="per-instance pattern seed overrides")
        reference_size: int = Field(256, ge=16, le=4096, description="side of the reference images in pixels")

    def run(self, ctx: Context) -> DemoRoom:
        p = self.params
        known = room_instance_names()
        for name in p.seeds:
            if name not in known:
                raise UserError(f"seeds entry '{name}' is not an instance of the demo room", param="seeds",
                                hint=f"instances are: {', '.join(known)}")
        return DemoRoom(build_room_scene(), build_room_references(p.seed, dict(p.seeds), p.reference_size))


@register
class SegmentParts(Node):
    """Group scene parts into named instances by glTF node, mesh, primitive, material or connected
    component; `merge` (new name -> names/globs) then `rename` (name/glob -> new name, `*` carries
    the matched text). Instances keep the order of their first face."""

    name = "segment.parts"
    version = 1

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        by: Literal["node", "mesh", "primitive", "material", "component"] = "node"
        rename: dict[str, str] = Field(default_factory=dict, description="old name or glob -> new name")
        merge: dict[str, list[str]] = Field(default_factory=dict, description="new name -> names or globs")
        min_faces: int = Field(1, ge=1, description="drop groups with fewer triangles")

    def run(self, ctx: Context, scene: Scene) -> Keyed[Instance]:
        p = self.params
        return segment_scene(scene, by=p.by, rename=p.rename, merge=p.merge, min_faces=p.min_faces, log=ctx.log)


@register
class BindReferences(Node):
    """Bind reference images to instances from a references YAML file (exact names, globs, an
    optional default) and/or pre-made references (e.g. from io.demo_room). Output keyed exactly by
    the instance names, in instance order; images downscaled so the short side is <= image_size."""

    name = "refs.bind"
    version = 3  # 3: the Reference carries `repeat` (exact | vary, issue 25)

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="refuse images with more pixels than this")
        image_size: int = Field(256, ge=8, le=8192, description="max short side of the bound images")

    def file_dependencies(self, port: str, path: Path) -> list[Path]:
        return references_file_dependencies(path) if port == "file" else []

    def run(self, ctx: Context, instances: Keyed[Instance], file: Path | None = None,
            references: Keyed[Reference] | None = None) -> Keyed[Reference]:
        p = self.params
        return bind_references(instances, file=Path(file) if file is not None else None, references=references,
                               max_pixels=p.max_pixels, image_size=p.image_size, log=ctx.log)
