"""Entry point of the `graphflow.nodes` group: importing it registers every built-in node and prior."""
from __future__ import annotations

from importlib import import_module

# One module of nodes per stage family; each registers its nodes on import.
NODE_MODULES = (
    "nodes.scene.nodes",
    "nodes.render.nodes",
    "nodes.swatch.nodes",
    "nodes.texture.nodes",
    "nodes.distill.nodes",
    "nodes.sd.nodes",
    "nodes.brdf.nodes",
    "nodes.export.nodes",
    "nodes.batch.nodes",
    "nodes.report.nodes",
)

# The built-in priors, which node packages resolve by name (`nodes.components.priors`).
PRIOR_MODULES = ("nodes.priors",)

for _module in NODE_MODULES + PRIOR_MODULES:
    import_module(_module)
