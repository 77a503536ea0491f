"""Toy nodes for the Ray executor tests, in their own registry (no real catalogue needed)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict

from graphflow import Context, Keyed, Node, Registry, UserError
from graphflow.node import Resources

raytoys = Registry()
raytoys._plugins_loaded = True  # an isolated registry: no entry points


class ItemsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    names: list[str] = ["a", "b", "c", "d"]


@raytoys.register
class Items(Node):
    """A keyed collection of small tensors, one per name."""

    name = "raytoy.items"
    Params = ItemsParams

    def run(self, ctx: Context) -> Keyed[torch.Tensor]:
        return Keyed({n: torch.full((3,), float(sum(map(ord, n)))) for n in self.params.names})


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = 1.0


@raytoys.register
class SleepMap(Node):
    """Sleeps per item and returns (wall-clock start, end, pid): lets tests see overlap."""

    name = "raytoy.sleep_map"
    map_over = "xs"
    cache = "never"  # timestamps are not results worth keeping
    Params = SleepParams

    def run(self, ctx: Context, xs: torch.Tensor) -> torch.Tensor:
        start = time.time()
        time.sleep(self.params.seconds)
        return torch.tensor([start, time.time(), float(os.getpid())], dtype=torch.float64)


class NoisyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = 0
    size: int = 256


@raytoys.register
class NoisyMatmul(Node):
    """Random matrices from ctx.generator, a matmul and big reductions: bytes depend on seed
    handling and on the torch thread count, so it checks both across executors."""

    name = "raytoy.noisy_matmul"
    map_over = "xs"
    Params = NoisyParams
    resources = Resources(num_cpus=2)

    def run(self, ctx: Context, xs: torch.Tensor) -> torch.Tensor:
        n = self.params.size
        a = torch.randn(n, n, generator=ctx.generator) + xs.sum()
        b = torch.rand(n, n)  # global RNG: seeded per task by the engine
        prod = a @ b
        return torch.stack([prod.sum(), prod.std(), (prod * prod).mean(), torch.linalg.norm(prod)])


class DieParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    marker: str
    always: bool = False


@raytoys.register
class DieOnce(Node):
    """Kills its own worker process the first time (or every time with always=true), like an
    OOM kill or a segfault would; the marker file remembers the first attempt."""

    name = "raytoy.die_once"
    Params = DieParams

    def run(self, ctx: Context, x: torch.Tensor) -> torch.Tensor:
        marker = Path(self.params.marker)
        with marker.open("a") as fh:
            fh.write(f"attempt {os.getpid()}\n")
        if self.params.always or len(marker.read_text().splitlines()) == 1:
            os._exit(1)
        return x + 1


class FailParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bad_item: str = "c"
    user: bool = True


@raytoys.register
class FailOne(Node):
    """A mapped node whose item `bad_item` fails (a UserError, or a bug with user=false)."""

    name = "raytoy.fail_one"
    map_over = "xs"
    Params = FailParams

    def run(self, ctx: Context, xs: torch.Tensor) -> torch.Tensor:
        if ctx.item == self.params.bad_item:
            if self.params.user:
                raise UserError(f"item {ctx.item} is not acceptable", hint="remove it from the inputs")
            raise ZeroDivisionError("bug")
        return xs * 2


@raytoys.register
class Total(Node):
    name = "raytoy.total"

    def run(self, ctx: Context, xs: Keyed[torch.Tensor]) -> torch.Tensor:
        return torch.stack([v.sum() for v in xs.values()]).sum().reshape(1)


@raytoys.register
class Threads(Node):
    """Reports the torch thread count it ran with; asks for more CPUs than the test cluster has."""

    name = "raytoy.threads"
    resources = Resources(num_cpus=3)

    def run(self, ctx: Context, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([torch.get_num_threads()])
