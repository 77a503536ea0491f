"""The scheduler: one run of a graph, node by node, item by item, as digests become known.

A node whose upstream nodes are settled gets its key(s) from `keys.KeyBuilder`
(one per item when mapped). A key found in the cache makes the node (or item)
`cached` without loading anything; the others become tasks for the executor,
whose input values `store.RunStore` loads lazily (this run's values, else the
cache, else the producer computed again through `_recompute`). Outputs
are digested where they were produced, so a node that re-runs to an identical
output leaves its consumers' keys, and so their cached results, unchanged (early
cutoff). A recompute goes through the same task path as a first run, so it is
reported and raises events like any other. Failures are collected as structured
`ErrorInfo`s and raised together as `RunFailed` at the end.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
from pydantic import BaseModel

from .cache import Entry, TieredCache
from .cache.manifest import graph_identity, save_manifest
from .errors import ErrorInfo, RunFailed, UserError
from .executors.base import Executor
from .graph import Graph, InputRef, Link
from .keys import KeyBuilder
from .node import CachePolicy, Node, params_seed
from .progress import Event, EventBus, collect_warnings
from .report import ReportEntry, RunReport, RunResult
from .store import RunStore
from .tasks import Task, TaskResult, derive_seed

log = logging.getLogger("graphflow")

__all__ = ["RunFailed", "RunResult", "Scheduler"]  # RunFailed lives in errors.py; re-exported for old imports


@dataclass
class NodeState:
    node_id: str
    cls: type[Node]
    params: BaseModel
    policy: CachePolicy
    mapped: tuple[str, ...]
    status: str = "waiting"  # waiting | active | done | failed | skipped
    items: list[str | None] = field(default_factory=list)
    keys: dict[str | None, str] = field(default_factory=dict)
    open_items: set[str | None] = field(default_factory=set)
    failed_items: int = 0
    estimated: bool = False  # its `estimate` hook ran (or will never run: no hook, an upstream failed)


def _joined(notes: list[str] | None) -> str | None:
    """A report entry's `note`: the run's notes on one line, or None when it made none."""
    return "; ".join(notes) if notes else None


class Scheduler:
    def __init__(self, graph: Graph, cache: TieredCache, executor: Executor, *, device: str = "cpu",
                 bus: EventBus | None = None, show_progress: bool = True) -> None:
        self.graph = graph.check()
        self.cache = cache
        self.executor = executor
        self.device = device
        self.bus = bus or EventBus()
        self.show_progress = show_progress
        self.executor.bind(self.bus)

    # ---------------------------------------------------------------- public
    def run(self, inputs: dict[str, Any] | None = None, outputs: list[str] | None = None) -> RunResult:
        start = time.perf_counter()
        self.report = RunReport(executor=self.executor.name)
        wanted = outputs if outputs is not None else list(self.graph.outputs)
        unknown = [o for o in wanted if o not in self.graph.outputs]
        if unknown:
            raise UserError(f"unknown graph output(s) {unknown}", hint=f"outputs: {', '.join(self.graph.outputs)}")
        self.keys = KeyBuilder(self.graph, self.graph.resolve_inputs(inputs or {}))
        self._prepare(wanted)
        self.bus.emit(Event("run_start", data={"nodes": len(self.states)}))
        values: dict[str, Any] = {}
        with collect_warnings(self.report.warnings):
            try:
                self._loop()
                values = {} if self.errors else self._outputs(wanted)
            finally:
                self.report.total_seconds = time.perf_counter() - start
                self._save_manifest()
        if self.errors:
            self.bus.emit(Event("run_end", data={"failed": len(self.errors),
                                                 "errors": [e.to_dict() for e in self.errors]}))
            raise RunFailed(self.report, self.errors)
        self.bus.emit(Event("run_end", data={"seconds": self.report.total_seconds}))
        return RunResult(values, self.report)

    # ---------------------------------------------------------------- setup
    def _prepare(self, wanted: list[str]) -> None:
        import networkx as nx

        dag = self.graph.to_networkx()
        needed: set[str] = set()
        for name in wanted:
            src = self.graph.outputs[name]
            if isinstance(src, Link):
                needed |= nx.ancestors(dag, src.node) | {src.node}
        if not wanted:
            needed = set(self.graph.nodes)
        self.order = [n for n in self.graph.topological_order() if n in needed]
        self.states: dict[str, NodeState] = {}
        for nid in self.order:
            spec = self.graph.nodes[nid]
            cls = self.graph.node_class(nid)
            self.states[nid] = NodeState(nid, cls, cls.Params.model_validate(spec.params), spec.cache or cls.cache,
                                         cls.mapped_inputs())
            self._check_graph_inputs(nid, cls)
        self.store = RunStore(self.graph, self.states, self.keys, self.cache, self._recompute)
        self.running: dict[Future[TaskResult], tuple[str, str | None, Task]] = {}
        self.errors: list[ErrorInfo] = []

    def _check_graph_inputs(self, nid: str, cls: type[Node]) -> None:
        spec = self.graph.nodes[nid]
        for port in cls.input_ports().values():
            src = spec.inputs.get(port.name)
            if port.required and isinstance(src, InputRef) and self.keys.input_values.get(src.name) is None:
                raise UserError(f"graph input '{src.name}' has no value but node '{nid}' needs it",
                                param=f"--input {src.name}", hint=f"pass --input {src.name}=VALUE")

    # ---------------------------------------------------------------- main loop
    def _loop(self) -> None:
        while True:
            progressed = False
            for nid in self.order:
                state = self.states[nid]
                if state.status == "waiting" and self._upstream_settled(nid):
                    stopper = self._estimate_ready()
                    if stopper is not None:  # a budget stopped the run
                        self._skip_waiting(stopper)
                        break
                    self._activate(state)
                    progressed = True
            if self.running:
                for future in self.executor.wait_any(list(self.running)):
                    node_id, item, task = self.running.pop(future)
                    self._finish_task(self.states[node_id], item, task, future.result())
                progressed = True
            if not progressed:
                break

    def _estimate_ready(self) -> str | None:
        """Run the `estimate` hook of every node whose estimate inputs are ready, before starting any other
        node; its line goes to the log (an `estimate` event) and report.json's `plan`. Returns the node whose
        hook raised (a budget exceeded; the run stops there), else None."""
        for nid in self.order:
            state = self.states[nid]
            if state.estimated or not state.cls.estimate_inputs or state.status != "waiting":
                continue
            sources = [s for p, s in self.graph.nodes[nid].inputs.items() if p in state.cls.estimate_inputs]
            upstream = [self.states[s.node].status for s in sources if isinstance(s, Link)]
            if any(status != "done" for status in upstream):
                state.estimated = any(status in ("failed", "skipped") for status in upstream)
                continue
            state.estimated = True
            ports = [p for p in state.cls.estimate_inputs if p in self.graph.nodes[nid].inputs]
            try:
                line = state.cls(state.params).estimate({p: self.store.whole(nid, p) for p in ports},
                                                        self._downstream(nid))
            except UserError as exc:
                exc.node = exc.node or nid
                self._fail_node(state, ErrorInfo.from_user_error(exc, state.cls.name))
                return nid
            if line:
                self.report.plan.append(f"{nid}: {line}")
                self.bus.emit(Event("estimate", nid, None, {"line": line}))
        return None

    def _downstream(self, nid: str) -> dict[str, tuple[str, BaseModel]]:
        after = nx.descendants(self.graph.to_networkx(), nid)
        return {d: (self.graph.nodes[d].type, self.states[d].params) for d in self.order if d in after}

    def _skip_waiting(self, stopper: str) -> None:
        """A budget stopped the run: every node not started yet is skipped (finished work stays cached)."""
        for state in self.states.values():
            if state.status == "waiting":
                state.status = "skipped"
                self.report.add(ReportEntry(state.node_id, None, "skipped", message=f"run stopped by '{stopper}'"))

    def _upstream_settled(self, nid: str) -> bool:
        return all(self.states[s.node].status in ("done", "failed", "skipped")
                   for s in self.graph.nodes[nid].inputs.values() if isinstance(s, Link))

    def _activate(self, state: NodeState) -> None:
        nid = state.node_id
        bad = [s.node for s in self.graph.nodes[nid].inputs.values()
               if isinstance(s, Link) and self.states[s.node].status in ("failed", "skipped")]
        if bad:
            state.status = "skipped"
            self.report.add(ReportEntry(nid, None, "skipped", message=f"upstream '{bad[0]}' failed"))
            self.store.release_inputs(nid)
            return
        state.status = "active"
        try:
            state.items = self.keys.items_of(nid) if state.mapped else [None]
            for item in state.items:
                state.keys[item] = self.keys.key_parts(nid, state.params, item).key()
        except UserError as exc:
            exc.node = exc.node or nid
            self._fail_node(state, ErrorInfo.from_user_error(exc, state.cls.name))
            return
        state.open_items = set(state.items)
        if not state.items:
            self._complete(state)
            return
        for item in state.items:
            hit = self.cache.peek(state.keys[item], state.policy)
            if hit is not None:
                self._cached(state, item, hit)
            else:
                self._submit(state, item)

    def _cached(self, state: NodeState, item: str | None, hit: dict[str, Any]) -> None:
        self.keys.record(state.node_id, item, hit["digests"], hit.get("item_digests", {}))
        self.report.add(ReportEntry(state.node_id, item, "cached", 0.0, 0, state.keys[item],
                                    note=_joined(hit.get("notes"))))
        self.bus.emit(Event("node_end", state.node_id, item, {"status": "cached", "seconds": 0.0}))
        self._close_item(state, item)

    def _task(self, state: NodeState, item: str | None) -> Task:
        return Task(node_id=state.node_id, item=item, key=state.keys[item], node_cls=state.cls, params=state.params,
                    seed=derive_seed(params_seed(state.params), item), device=self.device,
                    threads=state.cls.resources.num_cpus, show_progress=self.show_progress)

    def _submit(self, state: NodeState, item: str | None) -> None:
        try:
            inputs = self.store.inputs_of(state.node_id, item)
        except UserError as exc:
            exc.node = exc.node or state.node_id
            self._fail_item(state, item, state.keys[item], ErrorInfo.from_user_error(exc, state.cls.name))
            return
        task = self._task(state, item)
        self.bus.emit(Event("node_start", state.node_id, item, {"key": task.key}))
        future = self.executor.submit(task, inputs)
        if future.done():
            # a synchronous executor (local) ran it already: store it now, not after the node's other
            # items, so that a crash or Ctrl-C during item k keeps items 1..k-1 (issue 8)
            self._finish_task(state, item, task, future.result())
            return
        self.running[future] = (state.node_id, item, task)

    def _recompute(self, state: NodeState, item: str | None) -> None:
        """Run a finished node (or item) again because its value is gone from the cache: the
        same task, events and report entry as its first run, waited for here."""
        log.info("recomputing %s%s (not in cache any more)", state.node_id, f"[{item}]" if item else "")
        inputs = self.store.inputs_of(state.node_id, item)
        task = self._task(state, item)
        self.bus.emit(Event("node_start", state.node_id, item, {"key": task.key, "recompute": True}))
        future = self.executor.submit(task, inputs)
        while not future.done():
            self.executor.wait_any([future])
        self._finish_task(state, item, task, future.result(), recompute=True)

    def _finish_task(self, state: NodeState, item: str | None, task: Task, result: TaskResult,
                     recompute: bool = False) -> None:
        if result.error is not None:
            self._fail_item(state, item, task.key, result.error, recompute=recompute)
            return
        self._check_outputs(state, result.outputs)
        entry = Entry(task.key, result.outputs, result.digests, result.item_digests, result.seconds, result.nbytes,
                      list(result.notes))
        try:
            self.cache.put(entry, state.policy)
        except UserError as exc:  # e.g. a full disk: the run stops, finished entries are kept
            self._fail_item(state, item, task.key, ErrorInfo.from_user_error(exc, state.cls.name), recompute=recompute)
            return
        self.store.put(state.node_id, item, result.outputs)
        report = ReportEntry(state.node_id, item, "ran", round(result.seconds, 4), result.nbytes, task.key,
                             round(result.peak_rss_mb, 1), note=_joined(result.notes),
                             cpu_seconds=round(result.cpu_seconds, 4), cpu_threads=round(result.cpu_threads, 2))
        self.bus.emit(Event("node_end", state.node_id, item,
                            {"status": "ran", "seconds": result.seconds, "recompute": recompute}))
        if recompute:  # its digests are known already; only the report changes (cached -> ran)
            report.message = "recomputed: its cache entry was gone when its value was needed"
            self.report.replace(report)
            return
        self.keys.record(state.node_id, item, result.digests, result.item_digests)
        self.report.add(report)
        self._close_item(state, item)

    def _check_outputs(self, state: NodeState, outputs: dict[str, Any]) -> None:
        expected = set(state.cls.output_ports())
        if set(outputs) != expected:
            raise TypeError(f"node '{state.node_id}' returned outputs {sorted(outputs)}, declared {sorted(expected)}")

    # ---------------------------------------------------------------- bookkeeping
    def _close_item(self, state: NodeState, item: str | None) -> None:
        state.open_items.discard(item)
        if not state.open_items:
            self._complete(state)

    def _complete(self, state: NodeState) -> None:
        if state.failed_items:
            state.status = "failed"
        else:
            self.keys.complete(state.node_id, state.cls, state.items)
            state.status = "done"
        self.store.release_inputs(state.node_id)

    def _fail_item(self, state: NodeState, item: str | None, key: str, error: ErrorInfo, *,
                   recompute: bool = False) -> None:
        self.errors.append(error)
        entry = ReportEntry(state.node_id, item, "failed", key=key, message=str(error), error=error.to_dict())
        self.bus.emit(Event("node_end", state.node_id, item,
                            {"status": "failed", "message": str(error), "error": error.to_dict()}))
        if recompute:
            self.report.replace(entry)
            return
        state.failed_items += 1
        self.report.add(entry)
        self._close_item(state, item)

    def _fail_node(self, state: NodeState, error: ErrorInfo) -> None:
        self.errors.append(error)
        state.status = "failed"
        self.report.add(ReportEntry(state.node_id, None, "failed", message=str(error), error=error.to_dict()))
        self.bus.emit(Event("node_end", state.node_id, None,
                            {"status": "failed", "message": str(error), "error": error.to_dict()}))
        self.store.release_inputs(state.node_id)

    def _outputs(self, wanted: list[str]) -> dict[str, Any]:
        try:
            return self.store.outputs(wanted)
        except UserError as exc:  # an output's value was gone and could not be computed again
            self.errors.append(ErrorInfo.from_user_error(exc))
            return {}

    def _save_manifest(self) -> None:
        """Record this run's key parts for `graphflow explain` (only with a disk tier)."""
        if self.cache.disk is None:
            return
        statuses = self.report.statuses()
        records = {slot: {"key": parts.key() if parts.complete else None, "parts": parts.to_json(),
                          "status": statuses.get(slot), **self.keys.outputs.get(slot, {})}
                   for slot, parts in self.keys.parts.items()}
        save_manifest(self.cache.disk.root, graph_identity(self.graph.name, self.graph.source_path), records)
