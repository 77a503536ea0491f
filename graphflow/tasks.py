"""One unit of work (a node run or one item of a mapped node) and how to execute it.

`execute_task` is what every executor calls, in-process or on a Ray worker:
it builds the `Context`, hands the node private copies of its inputs (so a
node that mutates an input cannot poison the cache), runs it, and digests
its outputs where they were produced.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import os
import resource
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from .cache.entry import value_nbytes
from .errors import ErrorInfo, UserError
from .fingerprint import NotFingerprintable, digest_bytes, fingerprint, keyed_digest
from .keyed import Keyed
from .node import Context, Node
from .progress import EventBus, ProgressReporter


@dataclass
class Task:
    node_id: str
    item: str | None
    key: str
    node_cls: type[Node]
    params: BaseModel
    seed: int
    device: str = "cpu"
    threads: int | None = None  # torch threads for this run (None: leave as is)
    show_progress: bool = True

    @property
    def where(self) -> str:
        return f"{self.node_id}[{self.item}]" if self.item is not None else self.node_id


@dataclass
class TaskResult:
    outputs: dict[str, Any] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    item_digests: dict[str, dict[str, str]] = field(default_factory=dict)
    seconds: float = 0.0
    nbytes: int = 0
    peak_rss_mb: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time over the run, all its threads
    cpu_threads: float = 0.0  # cpu_seconds per CPU second of the task's own thread: 1.0 = it ran on one thread
    error: ErrorInfo | None = None  # what went wrong, structured; str() is the one-line message
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)  # `ctx.note(...)` calls of the run, in order

    @property
    def user_error(self) -> bool:
        return self.error is not None and self.error.kind == "user"


def task_error(task: Task, text: str, *, message: str | None = None, kind: str = "bug", **fields: Any) -> ErrorInfo:
    """An error of a task that is not a `UserError` raised by its node (a bug, a lost worker):
    printed as "node 'NODE[ITEM]' TEXT", with its node, item and node type kept apart."""
    sep = "" if text.startswith(":") else " "
    return ErrorInfo(text=f"node '{task.where}'{sep}{text}", message=message or text, kind=kind,  # type: ignore[arg-type]
                     node=task.node_id, node_type=task.node_cls.name, item=task.item, **fields)


def derive_seed(base: int, item: str | None) -> int:
    """`ctx.seed`: a 63-bit seed from the node's `seed` param (`params_seed`, 0 for a node without one)
    and the item name (not the node id: a renamed node must reproduce its cached outputs). The one
    place a run's seed is made (graphflow.node's docstring: nodes use it, never `params.seed`)."""
    return int(digest_bytes(b"seed", f"{base}/{item}".encode())[:15], 16)


def private_copy(value: Any) -> Any:
    """A copy of a value whose tensors a node may modify freely."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, Keyed):
        return Keyed({k: private_copy(v) for k, v in value.items()})
    if isinstance(value, dict):
        return {k: private_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [private_copy(v) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(private_copy(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: private_copy(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, (str, int, float, bool, bytes, Path)) or value is None:
        return value
    if isinstance(value, torch.nn.Module):
        return value  # models are shared on purpose (memory_only loaders); nodes must not train them in place
    return copy.copy(value)


def task_inputs(task: Task, inputs: dict[str, Any]) -> dict[str, Any]:
    """The node's inputs: private copies, but the ports it `reads_only` as they are."""
    shared = task.node_cls.reads_only
    return {k: v if k in shared else private_copy(v) for k, v in inputs.items()}


def check_reads_only(task: Task, inputs: dict[str, Any], before: dict[str, str]) -> None:
    """With GRAPHFLOW_CHECK_READ_ONLY=1: a node that modified an input it promised to only read is a bug."""
    for port, digest in before.items():
        if fingerprint(inputs[port]) != digest:
            raise RuntimeError(f"node type '{task.node_cls.name}' modified its input '{port}' in place, but "
                               f"declares it in `reads_only`: copy it before changing it")


def read_only_digests(task: Task, inputs: dict[str, Any]) -> dict[str, str]:
    if os.environ.get("GRAPHFLOW_CHECK_READ_ONLY") != "1":
        return {}
    return {port: fingerprint(inputs[port]) for port in task.node_cls.reads_only if port in inputs}


def digest_outputs(outputs: dict[str, Any], key: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    digests: dict[str, str] = {}
    items: dict[str, dict[str, str]] = {}
    for name, value in outputs.items():
        try:
            if isinstance(value, Keyed):
                items[name] = {k: fingerprint(v) for k, v in value.items()}
                digests[name] = keyed_digest(items[name])
            else:
                digests[name] = fingerprint(value)
        except NotFingerprintable:
            # e.g. a loaded model: its identity is the run that made it
            digests[name] = digest_bytes(b"opaque", key.encode(), name.encode())
    return digests, items


def execute_task(task: Task, inputs: dict[str, Any], bus: EventBus | None = None) -> TaskResult:
    """Run one task; never raises for errors inside the node (they come back in the result)."""
    bus = bus or EventBus()
    log = logging.getLogger(f"graphflow.node.{task.node_id}")
    # The thread count can change float reduction order, so every executor runs a task with the
    # node's `resources.num_cpus` threads (the scheduler sets it) and restores the caller's count.
    threads_before = torch.get_num_threads()
    if task.threads:
        torch.set_num_threads(task.threads)
    scratch = Path(tempfile.mkdtemp(prefix=f"graphflow-{task.node_id}-"))
    ctx = Context(node_id=task.node_id, item=task.item, device=torch.device(task.device), seed=task.seed,
                  progress=ProgressReporter(bus, task.node_id, task.item, task.show_progress), log=log,
                  scratch=scratch)
    node = task.node_cls(task.params)
    start, cpu_start, thread_start = time.perf_counter(), time.process_time(), time.thread_time()
    result = TaskResult()
    try:
        before = read_only_digests(task, inputs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(task.seed)  # for ops that use the global generator
            raw = node.run(ctx, **task_inputs(task, inputs))
        check_reads_only(task, inputs, before)
        result.outputs = task.node_cls.split_outputs(raw)
        result.digests, result.item_digests = digest_outputs(result.outputs, task.key)
        result.nbytes = value_nbytes(result.outputs)
    except UserError as exc:
        exc.node = exc.node or task.node_id
        exc.item = exc.item or task.item
        result.error = ErrorInfo.from_user_error(exc, task.node_cls.name, traceback.format_exc())
    except KeyboardInterrupt:
        result.error = task_error(task, "interrupted", kind="interrupted")
        result.interrupted = True
    except Exception as exc:  # noqa: BLE001 - a bug in a node: reported, not raised, so siblings go on
        result.error = task_error(task, f"failed with {type(exc).__name__}: {exc}", message=str(exc), kind="bug",
                                  exception=type(exc).__name__, traceback=traceback.format_exc())
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
        if task.threads and torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)
    result.notes = list(ctx.notes)
    result.seconds = time.perf_counter() - start
    result.cpu_seconds = time.process_time() - cpu_start
    # Unlike cpu / wall, this ratio does not drop when other processes load the machine.
    result.cpu_threads = result.cpu_seconds / max(time.thread_time() - thread_start, 1e-6)
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return result
