"""The node contract: what a stage of the pipeline declares and implements.

A node type is a subclass of `Node` with

- `name` (dotted registry name) and `version` (bump when outputs change for
  the same inputs: it is part of every cache key);
- `Params`, a pydantic v2 model (unknown fields are errors);
- input ports from the annotations of `run`'s keyword arguments (a default
  makes the input optional) and output ports from its return annotation: a
  `typing.NamedTuple` subclass gives one output per field, any other type one
  output named `out`;
- optional `map_over`: the input name(s) of keyed collections the node runs
  once per item of. Inside `run` a mapped input is annotated, and received,
  as the *item* type; the port itself accepts `Keyed[item type]` and every
  output becomes `Keyed[...]` with the same keys. Several mapped inputs are
  zipped by key (the first one's keys drive the loop; the others must hold
  each of them);
- `cache`: `default` (memory + disk), `memory_only` (huge values such as
  model weights) or `never`;
- `resources`: hints for executors (GPU, CPUs, memory);
- optional `estimate(inputs, downstream)`: the cost of the run known before it
  starts (see `Node.estimate`); `unkeyed_params` names params left out of the
  cache key because they never change an output (a budget).

Seeds: `seed` is a reserved Params field. A node whose output depends on
random draws declares `seed: int = Field(0, ge=0, ...)`; the engine checks
at load that it is an int >= 0 (`params_seed`, for every node that has it)
and gives each run `ctx.seed = derive_seed(params.seed, item)` (a 63-bit
hash of the seed and the item name, graphflow.tasks) and `ctx.generator`
seeded with it. A node draws from `ctx.seed` / `ctx.generator` only, never
from `params.seed` itself: mixing the param in again would only repeat what
the engine did. A node without a `seed` field still gets a seed, the one of
seed 0: `derive_seed(0, item)`.

Example::

    @register
    class Blur(Node):
        name = "image.blur"
        class Params(BaseModel):
            model_config = ConfigDict(extra="forbid")
            sigma: float = Field(1.0, gt=0)
        def run(self, ctx: Context, image: torch.Tensor) -> torch.Tensor:
            return kornia.filters.gaussian_blur2d(image, ...)
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import torch
from pydantic import BaseModel, ConfigDict

from .keyed import Keyed
from .ports import resolve_hints, strip_optional
from .progress import ProgressReporter

CachePolicy = Literal["default", "memory_only", "never"]
SINGLE_OUTPUT = "out"


SEED_PARAM = "seed"


def params_seed(params: BaseModel) -> int:
    """The `seed` param of a node's validated params (0 when it has none), from which the engine derives
    `ctx.seed`. Raises ValueError when the field is there but not an int >= 0."""
    if SEED_PARAM not in type(params).model_fields:
        return 0
    seed = getattr(params, SEED_PARAM)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"must be an int >= 0, got {seed!r}")
    return seed


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Resources:
    """Hints for executors. `num_cpus` also fixes the torch thread count of a run,
    so that results are bit-identical whichever executor runs it."""

    gpu: bool = False
    num_cpus: int = 1
    memory_mb: int = 256


@dataclass(frozen=True)
class InputPort:
    name: str
    type: Any  # the port type as seen by edges (Keyed[...] for mapped inputs)
    required: bool
    mapped: bool
    default: Any = None


@dataclass
class Context:
    """What a node run gets besides its inputs."""

    node_id: str
    item: str | None
    device: torch.device
    seed: int
    progress: ProgressReporter
    log: logging.Logger
    scratch: Path
    generator: torch.Generator = field(init=False)
    notes: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.generator = torch.Generator(device="cpu").manual_seed(self.seed)

    def note(self, text: str) -> None:
        """Record a one-line note on this run's report entry (`note` in report.json), e.g. that an item
        took a fallback. It is stored with the cached result, so a cached item keeps its note; the
        node still logs its own warning when it wants one printed."""
        self.notes.append(str(text))

    @property
    def where(self) -> str:
        """'node' or 'node[item]', for messages."""
        return f"{self.node_id}[{self.item}]" if self.item else self.node_id


class Node:
    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    Params: ClassVar[type[BaseModel]] = NoParams
    map_over: ClassVar[str | tuple[str, ...] | None] = None
    cache: ClassVar[CachePolicy] = "default"
    resources: ClassVar[Resources] = Resources()
    # Inputs this node never modifies, handed to `run` as they are instead of a private copy. For large
    # values every mapped item shares (the scene, all views), whose copy per item made the per-item cost
    # grow with the scene (issue 14). GRAPHFLOW_CHECK_READ_ONLY=1 (set by the tests) verifies the promise.
    reads_only: ClassVar[tuple[str, ...]] = ()
    # Inputs `estimate` needs. The scheduler calls `estimate` as soon as their producers are done, before it
    # starts any other node, so that a run too large for its budget stops before its first expensive node.
    estimate_inputs: ClassVar[tuple[str, ...]] = ()
    # Params that only decide whether a run may start (budgets), never what it makes: not part of the key.
    unkeyed_params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: BaseModel | dict[str, Any] | None = None) -> None:
        if isinstance(params, self.Params):
            self.params = params
        else:
            self.params = self.Params.model_validate(params or {})

    def run(self, ctx: Context, **inputs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def estimate(self, inputs: dict[str, Any], downstream: dict[str, tuple[str, BaseModel]]) -> str | None:
        """What this node's run will make and cost, as one line for the log and report.json (`plan`), or None.

        `inputs`: the values of `estimate_inputs` (a mapped input as its whole keyed collection);
        `downstream`: node id -> (type name, params) of every node of the run that depends on this one,
        for estimates that cover the work that follows. Raise `UserError` to stop the run before any more
        work starts (a budget exceeded): the message says what to change."""
        return None

    def file_dependencies(self, port: str, path: Path) -> list[Path]:
        """Files that a path input names besides itself (a .gltf's buffers and images, a
        references file's images): the cache key hashes their content too. Missing ones
        may be left out: the run itself reports them."""
        return []

    def nested_versions(self, port: str, path: Path) -> dict[str, int]:
        """Versions of the node types that a path input makes this node run inside itself (a
        batch node's nested graph): part of the cache key, so bumping one of them re-runs this
        node. Default: none (the key then is exactly what it always was)."""
        return {}

    # ---- port introspection (class-level, cached) ----
    @classmethod
    def mapped_inputs(cls) -> tuple[str, ...]:
        if cls.map_over is None:
            return ()
        return (cls.map_over,) if isinstance(cls.map_over, str) else tuple(cls.map_over)

    @classmethod
    def input_ports(cls) -> dict[str, InputPort]:
        cached = cls.__dict__.get("_input_ports")
        if cached is not None:
            return cached
        hints = resolve_hints(cls.run)
        mapped = cls.mapped_inputs()
        ports: dict[str, InputPort] = {}
        for pname, param in inspect.signature(cls.run).parameters.items():
            if pname in ("self", "ctx") or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            tp, optional = strip_optional(hints.get(pname, Any))
            has_default = param.default is not inspect.Parameter.empty
            is_mapped = pname in mapped
            ports[pname] = InputPort(
                name=pname,
                type=Keyed[tp] if is_mapped else tp,
                required=not (has_default or optional),
                mapped=is_mapped,
                default=param.default if has_default else None,
            )
        for m in mapped:
            if m not in ports:
                raise TypeError(f"{cls.__name__}.map_over names '{m}', which is not an input of run()")
        cls._input_ports = ports  # type: ignore[attr-defined]
        return ports

    @classmethod
    def output_ports(cls) -> dict[str, Any]:
        cached = cls.__dict__.get("_output_ports")
        if cached is not None:
            return cached
        ret = resolve_hints(cls.run).get("return", Any)
        if isinstance(ret, type) and issubclass(ret, tuple) and hasattr(ret, "_fields"):
            outs = dict(resolve_hints(ret))
            outs = {f: outs.get(f, Any) for f in ret._fields}
        else:
            outs = {SINGLE_OUTPUT: ret}
        if cls.mapped_inputs():
            outs = {k: Keyed[v] for k, v in outs.items()}
        cls._output_ports = outs  # type: ignore[attr-defined]
        return outs

    @classmethod
    def split_outputs(cls, result: Any) -> dict[str, Any]:
        """A run's return value as {output name: value}."""
        ret = resolve_hints(cls.run).get("return", Any)
        if isinstance(ret, type) and issubclass(ret, tuple) and hasattr(ret, "_fields"):
            if not isinstance(result, tuple) or len(result) != len(ret._fields):
                raise TypeError(f"{cls.name}.run must return {ret.__name__}")
            return dict(zip(ret._fields, result, strict=True))
        return {SINGLE_OUTPUT: result}


__all__ = ["SEED_PARAM", "CachePolicy", "Context", "InputPort", "NamedTuple", "NoParams", "Node", "Resources",
           "params_seed"]
