"""The built-in priors by name: importing this module registers every one; resolve prior names here.

The one place that knows every built-in implementation (as `nodes.catalog` knows every node
module), so a node package (distill) reaches another's priors (sd) by name without importing
that package. Contracts and registries: `nodes.components.priors`. Rasterizer backends register
through `nodes.render.raster`, which imports them.
"""
from __future__ import annotations

import nodes.distill.closed_form  # registers closed_form
import nodes.distill.superres  # registers closed_form super-resolution
import nodes.sd.prior  # registers stable_diffusion
import nodes.sd.upscaler  # registers stable_diffusion super-resolution
from nodes.components.priors import (
    SCORE_PRIORS,
    SUPERRES_PRIORS,
    ScorePrior,
    ScorePriorConfig,
    SuperResPrior,
    SuperResPriorConfig,
)


def score_prior(name: str, config: ScorePriorConfig) -> ScorePrior:
    """The score prior called `name`; an unknown name is a UserError listing the known ones."""
    return SCORE_PRIORS.get(name)(config)


def superres_prior(name: str, config: SuperResPriorConfig) -> SuperResPrior:
    """The super-resolution prior called `name`; an unknown name is a UserError listing the known ones."""
    return SUPERRES_PRIORS.get(name)(config)


__all__ = ["score_prior", "superres_prior"]
