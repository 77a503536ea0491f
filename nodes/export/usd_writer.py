"""Write the scene and its per-instance PBR maps as an ARKit-compliant USDZ package (usd-core).

Layout of the stage (root layer `asset.usdc`, the first file of the package as ARKit wants):

    /Root                      Xform, defaultPrim, kind component; metersPerUnit 1, upAxis Y
      /Root/Geometry/<ident>   Mesh: points, triangles, vertex normals, primvars:st, extent,
                               subdivisionScheme none, bound to its material (MaterialBindingAPI)
      /Root/Materials/<ident>  Material
        PreviewSurface         UsdPreviewSurface <- outputs:surface
        st_reader              UsdPrimvarReader_float2 (varname "st")
        base_color_texture     UsdUVTexture, sourceColorSpace sRGB  -> diffuseColor (rgb)
        orm_texture            UsdUVTexture, raw -> occlusion (r), roughness (g), metallic (b)
        normal_texture         UsdUVTexture, raw, scale (2,2,2,1), bias (-1,-1,-1,0) -> normal (rgb)
        mtlx_*                 the MaterialX graph of `materialx_writer.material_graph` as flat
                               ND_* shaders (ARKit allows only Shader/Material connection
                               sources, so no NodeGraph) <- outputs:mtlx:surface

`<ident>` is the instance's identifier (`names.py`); its original name is the prim's
displayName. Texture coordinates: USD's st has v up, glTF's uv v down, so st = (u, 1 - v) and
the PNGs are the glTF's own bytes (textures/<ident>_*.png), with no flip. The glTF normal maps
are OpenGL-style (+Y = up in the image = +t), which is what UsdPreviewSurface expects.

ARKit texture size: Apple's guidance for AR Quick Look is at most 2048 x 2048 per texture.
`oversize="warn"` (default) keeps the maps pixel-identical to the glTF and logs a warning
naming each larger map (also listed in the summary); `oversize="downsize"` box-filters those
maps by the smallest integer factor that fits, in the usdz only (normals renormalised).
"""
from __future__ import annotations

import io
import math
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pxr import Gf, Kind, Sdf, Usd, UsdGeom, UsdShade, Vt

from nodes.types import Instance, Scene

from .gltf_writer import PNG_COMPRESS_LEVEL, instance_primitive
from .materialx_writer import (
    NODE_INPUT_TYPES, SURFACE_INPUT_TYPES, SURFACE_NODEDEF, ExportMaterial, Ref, Tex,
    material_graph, typed_value,
)

ROOT = "/Root"
TEXTURE_DIR = "textures"
ARKIT_MAX_TEXTURE = 2048
DOS_DATE_1980 = (1 << 5) | 1  # 1980-01-01, the zip epoch
SDF_TYPES = {
    "float": Sdf.ValueTypeNames.Float, "color3": Sdf.ValueTypeNames.Color3f,
    "vector3": Sdf.ValueTypeNames.Float3, "integer": Sdf.ValueTypeNames.Int,
    "filename": Sdf.ValueTypeNames.Asset, "surfaceshader": Sdf.ValueTypeNames.Token,
}


def _mesh(stage: Usd.Stage, path: str, scene: Scene, instance: Instance, display_name: str) -> UsdGeom.Mesh:
    """One instance's triangles as a Mesh with vertex normals and st (v flipped to USD's v up)."""
    arrays = instance_primitive(scene, instance)
    points = arrays["POSITION"].astype(np.float64)
    uv = arrays["TEXCOORD_0"].astype(np.float64)
    st = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1)
    mesh = UsdGeom.Mesh.Define(stage, path)
    mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(points.astype(np.float32)))
    indices = arrays["indices"].astype(np.int32)
    mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(indices.shape[0] // 3, 3, dtype=np.int32)))
    mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(indices))
    mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(arrays["NORMAL"].astype(np.float32)))
    mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    mesh.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*points.min(axis=0)), Gf.Vec3f(*points.max(axis=0))]))
    primvar = UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray,
                                                      UsdGeom.Tokens.vertex)
    primvar.Set(Vt.Vec2fArray.FromNumpy(st.astype(np.float32)))
    mesh.GetPrim().SetDisplayName(display_name)
    return mesh


def _uv_texture(stage: Usd.Stage, path: str, file: str, reader: UsdShade.Shader, colour_space: str,
                normal: bool = False) -> UsdShade.Shader:
    texture = UsdShade.Shader.Define(stage, path)
    texture.CreateIdAttr("UsdUVTexture")
    texture.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(Sdf.AssetPath(file))
    texture.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(reader.ConnectableAPI(), "result")
    texture.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set(colour_space)
    texture.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set("repeat")  # the glTF sampler's REPEAT
    texture.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set("repeat")
    if normal:
        texture.CreateInput("scale", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(2.0, 2.0, 2.0, 1.0))
        texture.CreateInput("bias", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(-1.0, -1.0, -1.0, 0.0))
    for name in ("rgb", "r", "g", "b"):
        texture.CreateOutput(name, Sdf.ValueTypeNames.Float3 if name == "rgb" else Sdf.ValueTypeNames.Float)
    return texture


def _preview_surface(stage: Usd.Stage, material: UsdShade.Material, files: dict[str, str]) -> None:
    """UsdPreviewSurface reading the three PNGs, the consumer-level (ARKit) material."""
    base = str(material.GetPath())
    reader = UsdShade.Shader.Define(stage, f"{base}/st_reader")
    reader.CreateIdAttr("UsdPrimvarReader_float2")
    reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
    reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)
    colour = _uv_texture(stage, f"{base}/base_color_texture", files["base_color"], reader, "sRGB")
    orm = _uv_texture(stage, f"{base}/orm_texture", files["orm"], reader, "raw")
    normal = _uv_texture(stage, f"{base}/normal_texture", files["normal"], reader, "raw", normal=True)
    surface = UsdShade.Shader.Define(stage, f"{base}/PreviewSurface")
    surface.CreateIdAttr("UsdPreviewSurface")
    surface.CreateInput("useSpecularWorkflow", Sdf.ValueTypeNames.Int).Set(0)
    links = [("diffuseColor", Sdf.ValueTypeNames.Color3f, colour, "rgb"),
             ("occlusion", Sdf.ValueTypeNames.Float, orm, "r"),
             ("roughness", Sdf.ValueTypeNames.Float, orm, "g"),
             ("metallic", Sdf.ValueTypeNames.Float, orm, "b"),
             ("normal", Sdf.ValueTypeNames.Normal3f, normal, "rgb")]
    for name, sdf_type, source, output in links:
        surface.CreateInput(name, sdf_type).ConnectToSource(source.ConnectableAPI(), output)
    material.CreateSurfaceOutput().ConnectToSource(surface.CreateOutput("surface", Sdf.ValueTypeNames.Token))


def _preview_displacement(stage: Usd.Stage, material: UsdShade.Material, spec: ExportMaterial, file: str) -> None:
    """UsdPreviewSurface's `displacement` (metres) from the height PNG: grey * scale + offset."""
    base = str(material.GetPath())
    reader = UsdShade.Shader.Get(stage, f"{base}/st_reader")
    texture = _uv_texture(stage, f"{base}/height_texture", file, reader, "raw")
    scale, offset = float(spec.pngs.height_scale), float(spec.pngs.height_offset)
    texture.CreateInput("scale", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(scale, scale, scale, 1.0))
    texture.CreateInput("bias", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(offset, offset, offset, 0.0))
    surface = UsdShade.Shader.Get(stage, f"{base}/PreviewSurface")
    surface.CreateInput("displacement", Sdf.ValueTypeNames.Float).ConnectToSource(texture.ConnectableAPI(), "r")


def _set_input(shader: UsdShade.Shader, key: str, value: Any, mtype: str) -> None:
    typed = typed_value(value, mtype)
    shader.CreateInput(key, SDF_TYPES[mtype]).Set(Gf.Vec3f(*typed) if isinstance(typed, list) else typed)


def _materialx_shaders(stage: Usd.Stage, material: UsdShade.Material, spec: ExportMaterial,
                       files: dict[str, str]) -> None:
    """The MaterialX graph as ND_* shaders under the material, bound through outputs:mtlx:surface."""
    base = str(material.GetPath())
    nodes, surface_inputs = material_graph(spec)
    shaders: dict[str, UsdShade.Shader] = {}
    for node in nodes:
        shader = UsdShade.Shader.Define(stage, f"{base}/mtlx_{node.name}")
        shader.CreateIdAttr(node.nodedef)
        for key, value in node.inputs.items():
            if isinstance(value, Tex):
                port = shader.CreateInput(key, Sdf.ValueTypeNames.Asset)
                port.Set(Sdf.AssetPath(files[value.slot]))
                if value.colorspace:
                    port.GetAttr().SetColorSpace(value.colorspace)
            elif isinstance(value, Ref):
                upstream = shaders[value.node]
                shader.CreateInput(key, SDF_TYPES[_node_type(nodes, value.node)]).ConnectToSource(
                    upstream.ConnectableAPI(), "out")
            else:
                _set_input(shader, key, value, NODE_INPUT_TYPES[key] or "float")
        shader.CreateOutput("out", SDF_TYPES[node.type])
        shaders[node.name] = shader
    surface = UsdShade.Shader.Define(stage, f"{base}/mtlx_surface")
    surface.CreateIdAttr(SURFACE_NODEDEF)
    for key, value in surface_inputs.items():
        if isinstance(value, Ref):
            surface.CreateInput(key, SDF_TYPES[SURFACE_INPUT_TYPES[key]]).ConnectToSource(
                shaders[value.node].ConnectableAPI(), "out")
        else:
            _set_input(surface, key, value, SURFACE_INPUT_TYPES[key])
    out = surface.CreateOutput("out", Sdf.ValueTypeNames.Token)
    material.CreateSurfaceOutput("mtlx").ConnectToSource(out)


def _node_type(nodes: list[Any], name: str) -> str:
    return next(node.type for node in nodes if node.name == name)


def _downsized(png: bytes, factor: int, normal: bool) -> bytes:
    """A PNG box-filtered by an integer factor (normals renormalised), encoded like the originals."""
    image = Image.open(io.BytesIO(png))
    image = image.reduce(factor)
    if normal:
        n = np.asarray(image, dtype=np.float64) / 255.0 * 2.0 - 1.0
        n /= np.maximum(np.linalg.norm(n, axis=2, keepdims=True), 1e-8)
        image = Image.fromarray(np.floor((n * 0.5 + 0.5).clip(0, 1) * 255.0 + 0.5).astype(np.uint8), mode="RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    return buffer.getvalue()


def package_textures(materials: list[ExportMaterial], *, max_texture: int,
                     oversize: str) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """Package path -> PNG bytes, and the maps over the ARKit size (the node warns about each; with
    `oversize="downsize"` they are box-filtered here)."""
    files: dict[str, bytes] = {}
    over: list[dict[str, Any]] = []
    for spec in materials:
        height, width = spec.size
        factor = math.ceil(max(height, width) / max_texture)
        if factor > 1:
            kept = oversize != "downsize"  # PIL's reduce rounds the size up
            over.append({"instance": spec.name, "size": [width, height], "action": oversize,
                         "usdz_size": [width, height] if kept else [-(-width // factor), -(-height // factor)]})
        for slot in spec.slots():
            png = spec.png(slot)
            if factor > 1 and oversize == "downsize":
                png = _downsized(png, factor, normal=slot == "normal")
            files[f"{TEXTURE_DIR}/{spec.texture_name(slot)}"] = png
    return files, over


def build_stage(path: Path, scene: Scene, instances: dict[str, Instance], materials: list[ExportMaterial]) -> None:
    """Author the stage (meshes, both materials per instance) and save it as `path` (usdc)."""
    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    root = UsdGeom.Xform.Define(stage, ROOT)
    stage.SetDefaultPrim(root.GetPrim())
    Usd.ModelAPI(root.GetPrim()).SetKind(Kind.Tokens.component)
    UsdGeom.Scope.Define(stage, f"{ROOT}/Geometry")
    UsdGeom.Scope.Define(stage, f"{ROOT}/Materials")
    for spec in materials:
        files = {slot: f"{TEXTURE_DIR}/{spec.texture_name(slot)}" for slot in spec.slots()}
        material = UsdShade.Material.Define(stage, f"{ROOT}/Materials/{spec.ident}")
        material.GetPrim().SetDisplayName(spec.name)
        _preview_surface(stage, material, files)
        if "height" in files:
            _preview_displacement(stage, material, spec, files["height"])
        _materialx_shaders(stage, material, spec, files)
        mesh = _mesh(stage, f"{ROOT}/Geometry/{spec.ident}", scene, instances[spec.name], spec.name)
        UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(material)
    stage.GetRootLayer().Save()


def fixed_zip_dates(data: bytes) -> bytes:
    """The zip with every entry dated 1980-01-01 00:00 (local and central headers): USD's zip writer
    stamps the temp files' modification times, which would make each export's bytes differ."""
    buffer = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
    for info in infos:
        if buffer[info.header_offset:info.header_offset + 4] != b"PK\x03\x04":
            raise ValueError("unexpected local header in the usdz")
        struct.pack_into("<HH", buffer, info.header_offset + 10, 0, DOS_DATE_1980)
    end = data.rfind(b"PK\x05\x06")
    count, _, offset = struct.unpack_from("<HII", buffer, end + 10)
    for _ in range(count):
        if buffer[offset:offset + 4] != b"PK\x01\x02":
            raise ValueError("unexpected central directory entry in the usdz")
        struct.pack_into("<HH", buffer, offset + 12, 0, DOS_DATE_1980)
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", buffer, offset + 28)
        offset += 46 + name_len + extra_len + comment_len
    return bytes(buffer)


def build_usdz(scene: Scene, instances: dict[str, Instance], materials: list[ExportMaterial], *,
               max_texture: int = ARKIT_MAX_TEXTURE, oversize: str = "warn") -> tuple[bytes, dict[str, Any]]:
    """The .usdz bytes (root layer first, then the PNGs, 64-byte aligned by USD's zip writer) and a summary."""
    textures, over = package_textures(materials, max_texture=max_texture, oversize=oversize)
    with tempfile.TemporaryDirectory(prefix="graphflow-usd-") as tmp:
        folder = Path(tmp)
        build_stage(folder / "asset.usdc", scene, instances, materials)
        for rel, data in textures.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
        writer = Sdf.ZipFileWriter.CreateNew(str(folder / "asset.usdz"))
        for rel in ["asset.usdc", *textures]:
            writer.AddFile(str(folder / rel), rel)
        writer.Save()
        data = fixed_zip_dates((folder / "asset.usdz").read_bytes())
    summary = {
        "root_layer": "asset.usdc",
        "instances": len(materials),
        "meshes": [f"{ROOT}/Geometry/{m.ident}" for m in materials],
        "materials": [f"{ROOT}/Materials/{m.ident}" for m in materials],
        "names": {m.name: m.ident for m in materials},
        "units": {"metersPerUnit": 1.0, "upAxis": "Y"},
        "arkit_max_texture": max_texture,
        "oversize_textures": over,
        "bytes": len(data),
    }
    return data, summary
