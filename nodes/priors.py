"""The built-in priors: importing this module registers every one (`nodes.catalog` imports it).

The one place that knows every built-in implementation (as `nodes.catalog` knows every node
module), so a node package (distill) reaches another's priors (sd) by name without importing
that package: it resolves names through `nodes.components.priors` (`score_prior`,
`superres_prior`), whose registries load the node plugins, and so this module, on a name they do
not know yet. It sits on the top floor of `nodes/`, beside the catalog. Rasterizer backends
register through `nodes.render.raster`, which imports them.
"""
from __future__ import annotations

from nodes.components.priors import score_prior, superres_prior
from nodes.distill import closed_form, superres
from nodes.sd import prior as sd_prior
from nodes.sd import upscaler as sd_upscaler

# Importing a module registers the priors it defines: closed_form (score, super-resolution), stable_diffusion (both).
BUILTIN_PRIOR_MODULES = (closed_form, superres, sd_prior, sd_upscaler)

__all__ = ["BUILTIN_PRIOR_MODULES", "score_prior", "superres_prior"]
