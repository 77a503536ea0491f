"""The built-in priors by name: importing this module registers every one; resolve prior names here.

The one place that knows every built-in implementation (as `nodes.catalog` knows every node
module), so a node package (distill) reaches another's priors (sd) by name without importing
that package. Contracts and registries: `nodes.components.priors`. Rasterizer backends register
through `nodes.render.raster`, which imports them.
"""
from __future__ import annotations

from nodes.components.priors import (
    SCORE_PRIORS,
    SUPERRES_PRIORS,
    ScorePrior,
    ScorePriorConfig,
    SuperResPrior,
    SuperResPriorConfig,
)
from nodes.distill import closed_form, superres
from nodes.sd import prior as sd_prior
from nodes.sd import upscaler as sd_upscaler

# Importing a module registers the priors it defines: closed_form (score, super-resolution), stable_diffusion (both).
BUILTIN_PRIOR_MODULES = (closed_form, superres, sd_prior, sd_upscaler)


def score_prior(name: str, config: ScorePriorConfig) -> ScorePrior:
    """The score prior called `name`; an unknown name is a UserError listing the known ones."""
    return SCORE_PRIORS.get(name)(config)


def superres_prior(name: str, config: SuperResPriorConfig) -> SuperResPrior:
    """The super-resolution prior called `name`; an unknown name is a UserError listing the known ones."""
    return SUPERRES_PRIORS.get(name)(config)


__all__ = ["BUILTIN_PRIOR_MODULES", "score_prior", "superres_prior"]
