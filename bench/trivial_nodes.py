"""The two trivial nodes the engine-overhead benchmark chains 1,000 times, in an isolated registry.

Kept here, not imported from tests/, so benchmarks run from a plain checkout of the package.
"""
from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from graphflow import Context, Node, Registry

trivial = Registry(plugins=False)


class ConstParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float = 1.0
    size: int = Field(4, ge=1, le=1_000_000)


@trivial.register
class Const(Node):
    name = "toy.const"
    Params = ConstParams

    def run(self, ctx: Context) -> torch.Tensor:
        return torch.full((self.params.size,), self.params.value)


class ScaleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    factor: float = 2.0


@trivial.register
class Scale(Node):
    name = "toy.scale"
    Params = ScaleParams

    def run(self, ctx: Context, x: torch.Tensor) -> torch.Tensor:
        return x * self.params.factor
