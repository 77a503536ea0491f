"""A node for the end-to-end failure test of issue 14: passes per-instance textures through unchanged, except
for the instances named in `items`, whose texture becomes NaN (a fault that persists: the next node's restart
with a lower learning rate cannot clear it). Registered for CLI subprocesses with
`GRAPHFLOW_PLUGINS=poison_nodes` (tests/e2e on PYTHONPATH)."""
from __future__ import annotations

import dataclasses

import torch
from pydantic import BaseModel, ConfigDict

from graphflow import Context, Node, register
from nodes.types import TextureMap


@register
class PoisonTexture(Node):
    name = "e2e.poison_texture"
    map_over = "texture"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        items: list[str] = []

    def run(self, ctx: Context, texture: TextureMap) -> TextureMap:
        if ctx.item not in self.params.items:
            return texture  # identical value, identical digest: everything after it stays cached
        return dataclasses.replace(texture, image=torch.full_like(texture.image, float("nan")))
