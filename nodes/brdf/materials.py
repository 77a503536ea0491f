"""Per material class priors for the BRDF decomposition.

Ranges are what the class's real materials span (glTF metallic-roughness
values of PBR libraries such as ambientCG / Poly Haven, rounded); `typical`
is where the optimisation starts. A metallic range of zero width fixes the
value (dielectrics are exactly 0: glTF viewers treat any metallic > 0 as a
partial metal). `relief` scales the normal map derived from high-frequency
luminance: how much of a class's fine luminance detail is surface relief
(weave of a fabric, grain of stone) rather than colour (print on paper,
figure of varnished wood, brushed or painted finishes): 0 keeps the class
exactly flat, since a wrong normal map is worse than none.
"""
from __future__ import annotations

from dataclasses import dataclass

from graphflow import UserError

from nodes.types import MATERIAL_CLASSES


@dataclass(frozen=True)
class MaterialPrior:
    roughness: tuple[float, float]
    roughness_typical: float
    metallic: tuple[float, float]
    metallic_typical: float
    relief: float
    sheen: bool = False  # exported with KHR_materials_sheen when asked


MATERIAL_PRIORS: dict[str, MaterialPrior] = {
    "fabric": MaterialPrior((0.6, 1.0), 0.85, (0.0, 0.0), 0.0, 1.0, sheen=True),
    "leather": MaterialPrior((0.35, 0.8), 0.55, (0.0, 0.0), 0.0, 0.6),
    "wood": MaterialPrior((0.3, 0.9), 0.45, (0.0, 0.0), 0.0, 0.0),
    "metal": MaterialPrior((0.1, 0.6), 0.35, (0.8, 1.0), 1.0, 0.0),
    "plastic": MaterialPrior((0.2, 0.7), 0.45, (0.0, 0.0), 0.0, 0.0),
    "ceramic": MaterialPrior((0.05, 0.4), 0.2, (0.0, 0.0), 0.0, 0.0),
    "stone": MaterialPrior((0.5, 0.95), 0.75, (0.0, 0.0), 0.0, 1.0),
    "paper": MaterialPrior((0.7, 1.0), 0.9, (0.0, 0.0), 0.0, 0.0),
    "glass": MaterialPrior((0.0, 0.2), 0.05, (0.0, 0.0), 0.0, 0.0),
    "paint": MaterialPrior((0.3, 0.8), 0.5, (0.0, 0.2), 0.0, 0.0),
    "generic": MaterialPrior((0.3, 0.9), 0.6, (0.0, 1.0), 0.0, 0.5),
}
assert set(MATERIAL_PRIORS) == set(MATERIAL_CLASSES)


def material_prior(material: str, *, where: str | None = None) -> MaterialPrior:
    """The prior of a material class; an unknown class is a user error."""
    prior = MATERIAL_PRIORS.get(material)
    if prior is None:
        raise UserError(
            f"unknown material class '{material}'", node=where,
            hint=f"use one of: {', '.join(MATERIAL_CLASSES)}",
        )
    return prior
