"""Trivial nodes for engine tests, in their own registry (the real catalogue is not needed)."""
from __future__ import annotations

import os
from typing import NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field

from graphflow import Context, Keyed, Node, Registry, UserError

toys = Registry()
toys._plugins_loaded = True  # an isolated registry: no entry points

RUNS: list[str] = []  # which (node, item) ran in this process, for in-process assertions


class ConstParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float = 1.0
    size: int = Field(4, ge=1, le=1_000_000)


@toys.register
class Const(Node):
    name = "toy.const"
    Params = ConstParams

    def run(self, ctx: Context) -> torch.Tensor:
        RUNS.append(ctx.where)
        return torch.full((self.params.size,), self.params.value)


class ScaleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    factor: float = 2.0


@toys.register
class Scale(Node):
    name = "toy.scale"
    Params = ScaleParams

    def run(self, ctx: Context, x: torch.Tensor) -> torch.Tensor:
        RUNS.append(ctx.where)
        return x * self.params.factor


class RoundParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@toys.register
class Sign(Node):
    """Output depends only on the sign of the input: re-runs often produce identical outputs."""

    name = "toy.sign"

    def run(self, ctx: Context, x: torch.Tensor) -> torch.Tensor:
        RUNS.append(ctx.where)
        return torch.sign(x)


@toys.register
class Add(Node):
    name = "toy.add"

    def run(self, ctx: Context, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        RUNS.append(ctx.where)
        return a + (b if b is not None else 0)


class SplitParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    values: dict[str, float] = {"a": 1.0, "b": 2.0, "c": 3.0}


@toys.register
class Split(Node):
    name = "toy.split"
    Params = SplitParams

    def run(self, ctx: Context) -> Keyed[torch.Tensor]:
        RUNS.append(ctx.where)
        return Keyed({k: torch.full((3,), v) for k, v in self.params.values.items()})


@toys.register
class MapSquare(Node):
    name = "toy.map_square"
    map_over = "xs"

    def run(self, ctx: Context, xs: torch.Tensor) -> torch.Tensor:
        RUNS.append(ctx.where)
        return xs * xs


@toys.register
class Total(Node):
    name = "toy.total"

    def run(self, ctx: Context, xs: Keyed[torch.Tensor]) -> torch.Tensor:
        RUNS.append(ctx.where)
        return torch.stack([v.sum() for v in xs.values()]).sum().reshape(1)


@toys.register
class MutateInPlace(Node):
    name = "toy.mutate"

    def run(self, ctx: Context, x: torch.Tensor) -> torch.Tensor:
        RUNS.append(ctx.where)
        x.mul_(100)  # a badly behaved node
        return x


class Pair(NamedTuple):
    low: torch.Tensor
    high: torch.Tensor


@toys.register
class Bounds(Node):
    name = "toy.bounds"

    def run(self, ctx: Context, x: torch.Tensor) -> Pair:
        RUNS.append(ctx.where)
        return Pair(x.min().reshape(1), x.max().reshape(1))


class FailParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: bool = True


@toys.register
class Fail(Node):
    name = "toy.fail"
    Params = FailParams

    def run(self, ctx: Context, x: torch.Tensor) -> torch.Tensor:
        if self.params.user:
            raise UserError("this input is not acceptable", hint="use another one")
        raise ZeroDivisionError("bug")


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = 0.0
    marker: str = ""


@toys.register
class Slow(Node):
    """Sleeps, then writes a marker file (lets kill tests know a node finished)."""

    name = "toy.slow"
    Params = SleepParams

    def run(self, ctx: Context, x: torch.Tensor) -> torch.Tensor:
        import time

        time.sleep(self.params.seconds)
        if self.params.marker:
            with open(self.params.marker, "a") as fh:
                fh.write(f"{ctx.where} {os.getpid()}\n")
        return x + 1
