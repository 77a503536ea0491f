"""Runs every task as a Ray task, on a local Ray cluster or an existing one.

Each task (a node run or one item of a mapped node) becomes one remote call
of `execute_task`, the same function the local executor calls in-process,
so a task computes the same bytes wherever it runs (the torch thread count
is fixed per task from the node's `resources.num_cpus`, see `Task.threads`).
Input values are put into Ray's object store once per value (several items
reading the same scene share one copy) and results come back through it.

The scheduler keeps doing everything else on the driver: keys, cache
lookups before scheduling, cache writes after, early cutoff, the report.
So the disk cache is only shared across machines when `--cache` points at a
shared file system; workers never touch it.

What a worker needs: the same Python packages as the driver (graphflow, the
node packages, torch, ...). Node classes travel by reference (module +
qualified name), so their modules must be importable on every worker. For a
local cluster started here the workers get the driver's `sys.path` as
`PYTHONPATH`, so modules found by the driver (tests, plugins) are found too.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any

from ..errors import UserError
from ..tasks import Task, TaskResult, execute_task, task_error
from .base import Executor

log = logging.getLogger("graphflow.ray")

# A worker process that dies (OOM kill, segfault, os._exit) is retried this many times by Ray.
SYSTEM_RETRIES = 1
# Fraction of a GPU a node that does not ask for one gets in a `--device cuda` run: enough for
# Ray to make the device visible to it, small enough that many such tasks share one GPU.
SHARED_GPU_FRACTION = 0.125
# How many distinct input values stay pinned in the object store for reuse by later tasks.
PUT_CACHE_SIZE = 64


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is a dependency, but an optional one in spirit
        raise UserError("the Ray executor needs the `ray` package", param="--executor",
                        hint="pip install 'ray[default]' or use --executor local") from exc
    return ray


def _run_on_worker(task: Task, **inputs: Any) -> TaskResult:
    """The body of every Ray task: the in-process executor's function, on a worker."""
    return execute_task(task, inputs)


class RayExecutor(Executor):
    """`address`: `None` starts a local cluster (with `num_cpus` CPUs, default all), `"auto"` joins
    the cluster this machine belongs to (`ray start --head` / `--address`), `"ray://host:10001"`
    connects through Ray Client."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, *,
                 log_to_driver: bool = False, object_store_memory: int | None = None) -> None:
        super().__init__()
        ray = _ray()
        self._started_here = False
        if ray.is_initialized():
            # e.g. a test session or a notebook that called ray.init() itself: use that cluster
            log.info("using the already initialised Ray cluster")
        else:
            init_kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": log_to_driver,
                                           "configure_logging": False}
            if address is None:
                init_kwargs.update(num_cpus=num_cpus, object_store_memory=object_store_memory,
                                   runtime_env={"env_vars": {"PYTHONPATH": _driver_pythonpath()}})
            else:
                init_kwargs["address"] = address
            try:
                ray.init(**init_kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UserError(f"cannot connect to the Ray cluster at '{address}': {exc}",
                                param="--ray-address",
                                hint="start one with `ray start --head` and pass --ray-address auto "
                                     "(on a cluster node) or ray://HEAD:10001, or leave it out to start "
                                     "a local cluster") from exc
            self._started_here = True
        # the largest CPU and GPU counts of one alive node: a task asking for more would wait forever
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive", True)]
        self._node_cpus = max((float(n.get("CPU", 0)) for n in nodes), default=0.0)
        self._node_gpus = max((float(n.get("GPU", 0)) for n in nodes), default=0.0)
        self._remote = ray.remote(_run_on_worker)
        self._refs: dict[Future[TaskResult], Any] = {}
        self._tasks: dict[Future[TaskResult], Task] = {}
        self._puts: OrderedDict[int, tuple[Any, Any]] = OrderedDict()  # id(value) -> (value, ObjectRef)

    # ---------------------------------------------------------------- interface
    def submit(self, task: Task, inputs: dict[str, Any]) -> Future[TaskResult]:
        res = task.node_cls.resources
        on_gpu = task.device.startswith("cuda")
        if on_gpu and self._node_gpus == 0:
            future: Future[TaskResult] = Future()
            future.set_result(TaskResult(error=task_error(
                task, f": --device {task.device} but no node of the Ray cluster has a GPU", kind="user",
                message=f"--device {task.device} but no node of the Ray cluster has a GPU", param="--device")))
            return future
        options: dict[str, Any] = {
            # Ray only accounts with num_cpus (the torch thread count stays `resources.num_cpus`, for
            # identical results); capped at the biggest node so small clusters still run every node
            "num_cpus": min(float(res.num_cpus), self._node_cpus) if self._node_cpus else res.num_cpus,
            "num_gpus": (1 if res.gpu else SHARED_GPU_FRACTION) if on_gpu else 0,
            "max_retries": SYSTEM_RETRIES,
            "retry_exceptions": False,  # node errors come back in the TaskResult, never as exceptions
            "name": f"graphflow:{task.where}",
        }
        # progress bars would print from the worker; listeners on the driver get node_start/node_end
        remote_task = dataclasses.replace(task, show_progress=False)
        refs = {name: self._put(value) for name, value in inputs.items()}
        future = Future()
        future.set_running_or_notify_cancel()
        self._refs[future] = self._remote.options(**options).remote(remote_task, **refs)
        self._tasks[future] = task
        return future

    def wait_any(self, futures: list[Future[TaskResult]]) -> list[Future[TaskResult]]:
        ray = _ray()
        done = [f for f in futures if f.done()]
        if done:
            return done
        pending = {self._refs[f]: f for f in futures if f in self._refs}
        if not pending:
            return []
        ready, _ = ray.wait(list(pending), num_returns=1)
        # collect whatever else finished meanwhile, so the scheduler handles it in one pass
        more, _ = ray.wait([r for r in pending if r not in ready], num_returns=len(pending) - len(ready),
                           timeout=0) if len(pending) > len(ready) else ([], [])
        for ref in [*ready, *more]:
            future = pending[ref]
            future.set_result(self._collect(ref, self._tasks[future]))
            del self._refs[future], self._tasks[future]
        return [f for f in futures if f.done()]

    def close(self) -> None:
        ray = _ray()
        for ref in self._refs.values():
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass
        self._refs.clear()
        self._tasks.clear()
        self._puts.clear()
        if self._started_here and ray.is_initialized():
            ray.shutdown()

    # ---------------------------------------------------------------- helpers
    def _put(self, value: Any) -> Any:
        """One object-store copy per input value: the scheduler hands the same object to every
        item that reads it (a scene, a prior), so identity is the right reuse test. The value is
        kept alive with its ref, so its id cannot be recycled while the entry exists."""
        ray = _ray()
        slot = self._puts.get(id(value))
        if slot is not None and slot[0] is value:
            self._puts.move_to_end(id(value))
            return slot[1]
        ref = ray.put(value)
        self._puts[id(value)] = (value, ref)
        while len(self._puts) > PUT_CACHE_SIZE:
            self._puts.popitem(last=False)
        return ref

    def _collect(self, ref: Any, task: Task) -> TaskResult:
        ray = _ray()
        try:
            result: TaskResult = ray.get(ref)
        except ray.exceptions.RayError as exc:
            # the worker died (and its retry too), or Ray could not run/unpickle the task at all
            reason = _one_line(exc)
            if "ModuleNotFoundError" in str(exc) or "No module named" in str(exc):
                message = f"a Ray worker cannot import its node class ({task.node_cls.__module__}): {reason}"
                return TaskResult(error=task_error(task, f": {message}", message=message, kind="user",
                                                   hint="install the node package on every worker",
                                                   traceback=str(exc)))
            return TaskResult(error=task_error(task, f"failed on Ray after {SYSTEM_RETRIES} retry: {reason}",
                                               message=reason, exception=type(exc).__name__, traceback=str(exc)))
        if result.interrupted:
            raise KeyboardInterrupt
        return result


def _one_line(exc: BaseException) -> str:
    ray = _ray()
    if isinstance(exc, ray.exceptions.WorkerCrashedError):
        return "the worker process died (killed, out of memory, or crashed)"
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        return "the worker was killed by Ray's memory monitor (out of memory)"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _driver_pythonpath() -> str:
    """The driver's import path, for workers of a local cluster (so test and plugin modules import)."""
    entries = [os.path.abspath(p) for p in sys.path if p and os.path.isdir(p)]
    cwd = os.getcwd()
    if "" in sys.path and cwd not in entries:
        entries.insert(0, cwd)
    seen: dict[str, None] = dict.fromkeys(entries)
    return os.pathsep.join(seen)
