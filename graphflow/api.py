"""The Python entry point: `graphflow.run(graph, inputs, cache=..., executor=...)`."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from .cache import DiskCache, MemoryCache, TieredCache, default_cache_dir
from .executors import Executor, make_executor
from .graph import Graph
from .progress import EventBus, Listener
from .report import RunResult
from .scheduler import Scheduler


def open_cache(cache: TieredCache | Path | str | None = None, *, memory_bytes: int | None = 2 << 30,
               disk: bool = True) -> TieredCache:
    """A TieredCache on `cache` (a directory), `GRAPHFLOW_CACHE` or `~/.cache/graphflow`."""
    if isinstance(cache, TieredCache):
        return cache
    root = Path(cache) if cache is not None else default_cache_dir()
    return TieredCache(MemoryCache(memory_bytes), DiskCache(root) if disk else None)


def run(graph: Graph | str | Path, inputs: dict[str, Any] | None = None, *,
        cache: TieredCache | Path | str | None = None, executor: str | Executor = "local", device: str = "cpu",
        outputs: list[str] | None = None, listeners: list[Listener] | None = None,
        show_progress: bool = False, executor_options: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None) -> RunResult:
    """Run a graph; returns its output values and the `RunReport`.

    `executor` is a name (`local`, `ray`; built with `executor_options` and closed after the
    run) or an `Executor` you own. `listeners` get every `Event` (node_start, node_end with a
    structured `error` on failures, progress, run_end). Raises `UserError` (bad graph, inputs
    or files) or `RunFailed` (some nodes failed; finished ones are cached and a re-run resumes
    from them). `params` sets graph-level values by name, as `--set params.NAME=VALUE` does (on a
    copy: a `Graph` passed in is left as it is). This is what `graphflow run` calls.
    """
    if not isinstance(graph, Graph):
        graph = Graph.from_yaml(graph)
    if params:
        graph = Graph.from_spec(copy.deepcopy(graph.spec()), graph.registry)
        for name, value in params.items():
            graph.set_graph_param(name, value)
    tiers = open_cache(cache)
    execu = make_executor(executor, **(executor_options or {})) if isinstance(executor, str) else executor
    try:
        scheduler = Scheduler(graph, tiers, execu, device=device, bus=EventBus(listeners),
                              show_progress=show_progress)
        return scheduler.run(inputs, outputs)
    finally:
        if isinstance(executor, str):
            execu.close()
