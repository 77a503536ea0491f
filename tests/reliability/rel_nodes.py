"""Nodes for crash, interrupt and concurrency tests: seeded random work that takes a while, a
mapped stage, and a file output (so `run --out` writes bytes that can be compared).

Registered for CLI subprocesses with `GRAPHFLOW_PLUGINS=toy_plugin,rel_nodes`.
"""
from __future__ import annotations

import os
import time

import torch
from pydantic import BaseModel, ConfigDict, Field

from graphflow import Context, Keyed, Node, register
from graphflow.values import FileBlob


def _mark(marker: str, where: str) -> None:
    """Append 'node[item] pid' to a marker file: tells a test which runs finished (O_APPEND is atomic)."""
    if marker:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, f"{where} {os.getpid()}\n".encode())
        finally:
            os.close(fd)


class NoiseParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(4096, ge=1, le=10_000_000)
    seconds: float = Field(0.0, ge=0, le=60)
    marker: str = ""
    seed: int = 0


@register
class Noise(Node):
    """Seeded Gaussian noise, after `seconds` of sleep."""

    name = "rel.noise"
    Params = NoiseParams

    def run(self, ctx: Context) -> torch.Tensor:
        time.sleep(self.params.seconds)
        out = torch.randn(self.params.size, generator=ctx.generator)
        _mark(self.params.marker, ctx.where)
        return out


class WorkParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(0.2, ge=0, le=60)
    marker: str = ""
    seed: int = 0


@register
class Work(Node):
    """A deterministic function of its input plus seeded noise, after `seconds` of sleep."""

    name = "rel.work"
    Params = WorkParams

    def run(self, ctx: Context, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        deadline = time.monotonic() + self.params.seconds
        while time.monotonic() < deadline:  # short sleeps: interrupts land promptly
            time.sleep(0.02)
        noise = torch.rand(x.shape, generator=ctx.generator)
        out = torch.tanh(x * 1.3 + noise) + (y if y is not None else 0)
        _mark(self.params.marker, ctx.where)
        return out


class SplitParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parts: int = Field(3, ge=1, le=64)


@register
class SplitEven(Node):
    """Cuts a vector into `parts` keyed chunks."""

    name = "rel.split"
    Params = SplitParams

    def run(self, ctx: Context, x: torch.Tensor) -> Keyed[torch.Tensor]:
        return Keyed({f"part{i}": chunk.clone() for i, chunk in enumerate(torch.chunk(x, self.params.parts))})


@register
class MapWork(Node):
    """`rel.work` once per item."""

    name = "rel.map_work"
    Params = WorkParams
    map_over = "xs"

    def run(self, ctx: Context, xs: torch.Tensor) -> torch.Tensor:
        return Work(self.params).run(ctx, xs)


@register
class Join(Node):
    name = "rel.join"

    def run(self, ctx: Context, xs: Keyed[torch.Tensor]) -> torch.Tensor:
        return torch.cat([xs[k] for k in xs])


@register
class Save(Node):
    """The tensor's float32 bytes as a file output."""

    name = "rel.save"

    def run(self, ctx: Context, x: torch.Tensor) -> FileBlob:
        data = x.to(torch.float32).contiguous().numpy().tobytes()
        return FileBlob(data=data, suffix=".bin", summary={"numel": int(x.numel())})
