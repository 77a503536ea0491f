"""Entry point of the `graphflow.nodes` group: importing it registers every built-in node and prior."""
from __future__ import annotations

from nodes import priors
from nodes.batch import nodes as batch_nodes
from nodes.brdf import nodes as brdf_nodes
from nodes.distill import nodes as distill_nodes
from nodes.export import nodes as export_nodes
from nodes.render import nodes as render_nodes
from nodes.report import nodes as report_nodes
from nodes.scene import nodes as scene_nodes
from nodes.sd import nodes as sd_nodes
from nodes.swatch import nodes as swatch_nodes
from nodes.texture import nodes as texture_nodes

# One module of nodes per stage family; each registers its nodes on import. Imported by name here
# (not through importlib) so the layout tests see the catalog on the top floor of nodes/.
NODE_MODULES = (scene_nodes, render_nodes, swatch_nodes, texture_nodes, distill_nodes, sd_nodes, brdf_nodes,
                export_nodes, batch_nodes, report_nodes)
# The built-in priors, which node packages resolve by name (`nodes.components.priors`).
PRIOR_MODULES = (priors,)
