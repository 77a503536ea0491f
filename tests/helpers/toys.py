"""The toy node package of the tests: trivial, fast nodes in their own isolated registry.

`toy.*` nodes exercise the engine (keys, early cutoff, mapping, failures, kills);
`raytoy.*` nodes exercise executors (overlap, seeds and thread counts, dying workers).
One registry, `toys`, holds both; `helpers.toy_plugin` adds them to the process-wide
registry for CLI subprocesses (`GRAPHFLOW_PLUGINS=helpers.toy_plugin`). Ray workers import
this module by name, so it must stay importable as `helpers.toys`.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field

from graphflow import Context, FileBlob, Keyed, Node, Registry, Resources, UserError

toys = Registry(plugins=False)  # an isolated registry: no entry points, no GRAPHFLOW_PLUGINS

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
        time.sleep(self.params.seconds)
        if self.params.marker:
            with open(self.params.marker, "a") as fh:
                fh.write(f"{ctx.where} {os.getpid()}\n")
        return x + 1


@toys.register
class Table(Node):
    """Reads a small text file: a path input, keyed by the file's content."""

    name = "toy.table"

    def run(self, ctx: Context, path: Path) -> torch.Tensor:
        RUNS.append(ctx.where)
        return torch.tensor([float(len(Path(path).read_bytes()))])


class StepsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: int = Field(40, ge=1)
    warn: bool = False


@toys.register
class Steps(Node):
    """Reports progress step by step, per item (a bar on a terminal); optionally logs a warning."""

    name = "toy.steps"
    map_over = "xs"
    Params = StepsParams

    def run(self, ctx: Context, xs: torch.Tensor) -> torch.Tensor:
        with ctx.progress(total=self.params.steps, desc="steps") as bar:
            for i in range(self.params.steps):
                time.sleep(0.002)
                bar.update(1, loss=float(i))
        if self.params.warn:
            ctx.log.warning("item %s: only a rough result", ctx.item)
        return xs + 1


@toys.register
class Save(Node):
    """A tensor's float32 bytes as a file output (what a batch pipeline must produce)."""

    name = "toy.save"

    def run(self, ctx: Context, x: torch.Tensor) -> FileBlob:
        RUNS.append(ctx.where)
        return FileBlob(data=x.to(torch.float32).contiguous().numpy().tobytes(), suffix=".bin")


# ---------------------------------------------------------------- executor toys (raytoy.*)
class ItemsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    names: list[str] = ["a", "b", "c", "d"]


@toys.register
class Items(Node):
    """A keyed collection of small tensors, one per name."""

    name = "raytoy.items"
    Params = ItemsParams

    def run(self, ctx: Context) -> Keyed[torch.Tensor]:
        return Keyed({n: torch.full((3,), float(sum(map(ord, n)))) for n in self.params.names})


class NapParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = 1.0


@toys.register
class SleepMap(Node):
    """Sleeps per item and returns (wall-clock start, end, pid): lets tests see overlap."""

    name = "raytoy.sleep_map"
    map_over = "xs"
    cache = "never"  # timestamps are not results worth keeping
    Params = NapParams

    def run(self, ctx: Context, xs: torch.Tensor) -> torch.Tensor:
        start = time.time()
        time.sleep(self.params.seconds)
        return torch.tensor([start, time.time(), float(os.getpid())], dtype=torch.float64)


class NoisyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = 0
    size: int = 256


@toys.register
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


@toys.register
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


class FailOneParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bad_item: str = "c"
    user: bool = True


@toys.register
class FailOne(Node):
    """A mapped node whose item `bad_item` fails (a UserError, or a bug with user=false)."""

    name = "raytoy.fail_one"
    map_over = "xs"
    Params = FailOneParams

    def run(self, ctx: Context, xs: torch.Tensor) -> torch.Tensor:
        if ctx.item == self.params.bad_item:
            if self.params.user:
                raise UserError(f"item {ctx.item} is not acceptable", hint="remove it from the inputs")
            raise ZeroDivisionError("bug")
        return xs * 2


@toys.register
class RayTotal(Node):
    name = "raytoy.total"

    def run(self, ctx: Context, xs: Keyed[torch.Tensor]) -> torch.Tensor:
        return torch.stack([v.sum() for v in xs.values()]).sum().reshape(1)


@toys.register
class Threads(Node):
    """Reports the torch thread count it ran with; asks for more CPUs than the test cluster has."""

    name = "raytoy.threads"
    resources = Resources(num_cpus=3)

    def run(self, ctx: Context, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([torch.get_num_threads()])
