"""Registers the toy nodes in the default registry, for CLI tests (GRAPHFLOW_PLUGINS=toy_plugin)."""
from toy_nodes import toys

from graphflow import registry

for _cls in toys.types.values():
    registry.register(_cls)
