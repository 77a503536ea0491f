"""Adds the toy nodes to the process-wide registry, for CLI runs (GRAPHFLOW_PLUGINS=helpers.toy_plugin)."""
from graphflow import registry

from helpers.toys import toys

registry.include(toys)
