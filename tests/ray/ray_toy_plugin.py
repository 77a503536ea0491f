"""Registers the Ray toy nodes in the default registry, for CLI tests (GRAPHFLOW_PLUGINS=ray_toy_plugin)."""
from ray_toy_nodes import raytoys

from graphflow import registry

for _cls in raytoys.types.values():
    registry.register(_cls)
