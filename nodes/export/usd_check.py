"""Check a USDZ the way usdchecker --arkit does, including its MaterialX shaders.

usd-core (PyPI) is built without the usdMtlx plugin (usd-wg/assets#82), so Sdr does not know the
`ND_*` MaterialX node definitions and `UsdUtils.ComplianceChecker` reports every MaterialX shader
as "has invalid shader node". `register_materialx_nodedefs` fills that gap the way usdMtlx would:
it turns MaterialX's own nodedefs (from the materialx package's libraries) into Sdr shader
definitions, with usdMtlx's type mapping, so the checker then verifies every MaterialX shader
input's type against its nodedef instead of failing them all.
"""
from __future__ import annotations

import functools
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import MaterialX as mx
from pxr import Sdf, Sdr, Usd, UsdShade

from .materialx_writer import standard_libraries

# MaterialX type -> Sdf type, as usdMtlx maps them (pxr/usd/usdMtlx/utils.cpp).
MTLX_TO_SDF = {
    "boolean": Sdf.ValueTypeNames.Bool, "integer": Sdf.ValueTypeNames.Int, "float": Sdf.ValueTypeNames.Float,
    "color3": Sdf.ValueTypeNames.Color3f, "color4": Sdf.ValueTypeNames.Color4f,
    "vector2": Sdf.ValueTypeNames.Float2, "vector3": Sdf.ValueTypeNames.Float3,
    "vector4": Sdf.ValueTypeNames.Float4, "matrix33": Sdf.ValueTypeNames.Matrix3d,
    "matrix44": Sdf.ValueTypeNames.Matrix4d, "string": Sdf.ValueTypeNames.String,
    "filename": Sdf.ValueTypeNames.Asset,
}
_REGISTERED: set[str] = set()


def _definition(stage: Usd.Stage, nodedef: mx.NodeDef) -> UsdShade.Shader:
    shader = UsdShade.Shader.Define(stage, f"/{nodedef.getName()}")
    shader.SetSourceAsset(Sdf.AssetPath(nodedef.getActiveSourceUri() or nodedef.getSourceUri()), "mtlx")
    for port in nodedef.getActiveInputs():
        shader.CreateInput(port.getName(), MTLX_TO_SDF.get(port.getType(), Sdf.ValueTypeNames.Token))
    for port in nodedef.getActiveOutputs():
        shader.CreateOutput(port.getName(), MTLX_TO_SDF.get(port.getType(), Sdf.ValueTypeNames.Token))
    return shader


@functools.lru_cache(maxsize=1)
def _definitions_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="graphflow-sdr-mtlx-"))


def register_materialx_nodedefs(names: Iterable[str]) -> None:
    """Make `Sdr.Registry()` know the named MaterialX nodedefs (no-op for known ones)."""
    registry = Sdr.Registry()
    wanted = sorted({n for n in names if n not in _REGISTERED and not registry.GetShaderNodeByIdentifier(n)})
    if not wanted:
        return
    path = _definitions_dir() / f"defs{len(_REGISTERED)}.usda"
    stage = Usd.Stage.CreateNew(str(path))
    shaders = []
    for name in wanted:
        nodedef = standard_libraries().getNodeDef(name)
        if nodedef is None:
            raise KeyError(f"MaterialX has no nodedef {name}")
        shaders.append(_definition(stage, nodedef))
    stage.Save()
    for shader in shaders:
        for result in UsdShade.ShaderDefUtils.GetDiscoveryResults(shader, str(path)):
            registry.AddDiscoveryResult(result)
    _REGISTERED.update(wanted)


def materialx_shader_ids(path: str | Path) -> set[str]:
    """The `ND_*` info:id values of every shader on the stage at `path`."""
    stage = Usd.Stage.Open(str(path))
    ids = set()
    for prim in stage.Traverse():
        if prim.IsA(UsdShade.Shader):
            shader_id = UsdShade.Shader(prim).GetShaderId()
            if shader_id and shader_id.startswith("ND_"):
                ids.add(shader_id)
    return ids


def arkit_compliance(path: str | Path) -> dict[str, list[str]]:
    """`UsdUtils.ComplianceChecker(arkit=True)` on `path`: its errors, failed checks and warnings."""
    from pxr import UsdUtils

    register_materialx_nodedefs(materialx_shader_ids(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated in favour of UsdValidation
        checker = UsdUtils.ComplianceChecker(arkit=True)
    checker.CheckCompliance(str(path))
    return {"errors": list(checker.GetErrors()), "failed": list(checker.GetFailedChecks()),
            "warnings": list(checker.GetWarnings())}
