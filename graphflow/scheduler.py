"""The scheduler: keys, cache lookups, early cutoff and task dispatch for one run.

It walks the graph as digests become known. A node whose inputs' digests
are known gets its key(s) (one per item when mapped); a key found in the
cache makes the node (or item) `cached` without loading anything; the
others become tasks for the executor, which get their input values loaded
lazily from the run's store or the cache. Outputs are digested where they
were produced, so a node that re-runs to an identical output leaves its
consumers' keys, and so their cached results, unchanged (early cutoff).
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .cache import Entry, TieredCache
from .errors import UserError
from .executors.base import Executor
from .fingerprint import NotFingerprintable, digest_bytes, fingerprint, keyed_digest
from .graph import Graph, InputRef, Link, Source
from .keyed import Keyed
from .keys import path_digest, run_key
from .node import SINGLE_OUTPUT, CachePolicy, Node
from .progress import Event, EventBus
from .report import ReportEntry, RunReport
from .tasks import Task, TaskResult, derive_seed

log = logging.getLogger("graphflow")


class RunFailed(UserError):
    """Some nodes failed; `report` says which. `user_error` is False when any failure was a bug."""

    def __init__(self, report: RunReport, messages: list[str], user_error: bool, details: list[str]) -> None:
        super().__init__("; ".join(messages) if len(messages) == 1 else
                         f"{len(messages)} node runs failed:\n" + "\n".join(f"  - {m}" for m in messages))
        self.report, self.user_error, self.details = report, user_error, details


@dataclass
class RunResult:
    outputs: dict[str, Any]
    report: RunReport


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
    digests: dict[str, str] = field(default_factory=dict)
    item_digests: dict[str, dict[str, str]] = field(default_factory=dict)
    failed_items: int = 0


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
        self.input_values = self._resolve_inputs(inputs or {})
        wanted = outputs if outputs is not None else list(self.graph.outputs)
        unknown = [o for o in wanted if o not in self.graph.outputs]
        if unknown:
            raise UserError(f"unknown graph output(s) {unknown}", hint=f"outputs: {', '.join(self.graph.outputs)}")
        self._prepare(wanted)
        self.bus.emit(Event("run_start", data={"nodes": len(self.states)}))
        try:
            self._loop()
        finally:
            self.report.total_seconds = time.perf_counter() - start
        failures = [e for e in self.report.entries if e.status == "failed"]
        if failures:
            self.bus.emit(Event("run_end", data={"failed": len(failures)}))
            raise RunFailed(self.report, [e.message or e.node for e in failures], self._all_user_errors,
                            self._error_details)
        values = {name: self._source_value(self.graph.outputs[name], None, mapped=False) for name in wanted}
        self.report.total_seconds = time.perf_counter() - start
        self.bus.emit(Event("run_end", data={"seconds": self.report.total_seconds}))
        return RunResult(values, self.report)

    # ---------------------------------------------------------------- setup
    def _resolve_inputs(self, given: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in given:
            if name not in self.graph.inputs:
                raise UserError(f"unknown graph input '{name}'", param=f"--input {name}",
                                hint=f"this graph takes: {', '.join(self.graph.inputs) or 'no inputs'}")
        for name, spec in self.graph.inputs.items():
            if name in given:
                value = given[name]
                base = Path.cwd()
            else:
                value = spec.default
                base = self.graph.source_path.parent if self.graph.source_path else Path.cwd()
            if spec.type == "path" and value is not None:
                value = Path(value).expanduser()
                value = value if value.is_absolute() else (base / value)
            elif value is not None and spec.type in ("int", "float", "bool", "str"):
                try:
                    value = {"int": int, "float": float, "str": str, "bool": _to_bool}[spec.type](value)
                except (TypeError, ValueError) as exc:
                    raise UserError(f"graph input '{name}' must be {spec.type}, got {value!r}",
                                    param=f"--input {name}") from exc
            values[name] = value
        return values

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
            for port in cls.input_ports().values():
                src = spec.inputs.get(port.name)
                if port.required and isinstance(src, InputRef) and self.input_values.get(src.name) is None:
                    raise UserError(f"graph input '{src.name}' has no value but node '{nid}' needs it",
                                    param=f"--input {src.name}", hint=f"pass --input {src.name}=VALUE")
        self.consumers: dict[str, set[str]] = {n: set() for n in self.order}
        for nid in self.order:
            for src in self.graph.nodes[nid].inputs.values():
                if isinstance(src, Link) and src.node in self.consumers:
                    self.consumers[src.node].add(nid)
        self.output_nodes = {s.node for s in self.graph.outputs.values() if isinstance(s, Link)}
        self.store: dict[tuple[str, str | None], dict[str, Any]] = {}
        self.running: dict[Future[TaskResult], tuple[str, str | None, Task]] = {}
        self._all_user_errors = True
        self._error_details: list[str] = []
        self._path_digests: dict[tuple[Path, tuple[Path, ...]], str] = {}

    # ---------------------------------------------------------------- main loop
    def _loop(self) -> None:
        while True:
            progressed = False
            for nid in self.order:
                state = self.states[nid]
                if state.status == "waiting" and self._upstream_settled(nid):
                    self._activate(state)
                    progressed = True
            if self.running:
                for future in self.executor.wait_any(list(self.running)):
                    node_id, item, task = self.running.pop(future)
                    self._finish_task(self.states[node_id], item, task, future.result())
                progressed = True
            if not progressed:
                break

    def _upstream_settled(self, nid: str) -> bool:
        for src in self.graph.nodes[nid].inputs.values():
            if isinstance(src, Link) and self.states[src.node].status not in ("done", "failed", "skipped"):
                return False
        return True

    def _activate(self, state: NodeState) -> None:
        nid = state.node_id
        spec = self.graph.nodes[nid]
        bad = [s.node for s in spec.inputs.values()
               if isinstance(s, Link) and self.states[s.node].status in ("failed", "skipped")]
        if bad:
            state.status = "skipped"
            self.report.add(ReportEntry(nid, None, "skipped", message=f"upstream '{bad[0]}' failed"))
            self._release_inputs(nid)
            return
        state.status = "active"
        try:
            state.items = self._items_of(state) if state.mapped else [None]
            for item in state.items:
                state.keys[item] = self._key(state, item)
        except UserError as exc:
            exc.node = exc.node or nid
            self._fail_node(state, str(exc))
            return
        state.open_items = set(state.items)
        if not state.items:
            self._complete(state)
            return
        for item in state.items:
            key = state.keys[item]
            hit = self.cache.peek(key, state.policy)
            if hit is not None:
                self._record_item(state, item, hit["digests"], hit.get("item_digests", {}))
                self.report.add(ReportEntry(nid, item, "cached", 0.0, 0, key))
                self._close_item(state, item)
            else:
                self._submit(state, item)

    def _submit(self, state: NodeState, item: str | None) -> None:
        nid = state.node_id
        try:
            inputs = self._task_inputs(state, item)
        except UserError as exc:
            exc.node = exc.node or nid
            self._fail_item(state, item, state.keys[item], str(exc), user=True)
            return
        task = Task(node_id=nid, item=item, key=state.keys[item], node_cls=state.cls, params=state.params,
                    seed=derive_seed(int(getattr(state.params, "seed", 0) or 0), item), device=self.device,
                    threads=state.cls.resources.num_cpus, show_progress=self.show_progress)
        self.bus.emit(Event("node_start", nid, item, {"key": task.key}))
        future = self.executor.submit(task, inputs)
        if future.done():
            # a synchronous executor (local) ran it already: store it now, not after the node's other
            # items, so that a crash or Ctrl-C during item k keeps items 1..k-1 (issue 8)
            self._finish_task(state, item, task, future.result())
            return
        self.running[future] = (nid, item, task)

    def _finish_task(self, state: NodeState, item: str | None, task: Task, result: TaskResult) -> None:
        nid = state.node_id
        if result.error is not None:
            self._fail_item(state, item, task.key, result.error, user=result.user_error, detail=result.error_detail)
            return
        self._check_outputs(state, result.outputs)
        entry = Entry(task.key, result.outputs, result.digests, result.item_digests, result.seconds, result.nbytes)
        try:
            self.cache.put(entry, state.policy)
        except UserError as exc:  # e.g. a full disk: the run stops, finished entries are kept
            self._fail_item(state, item, task.key, str(exc), user=True)
            return
        self.store[(nid, item)] = result.outputs
        self._record_item(state, item, result.digests, result.item_digests)
        self.report.add(ReportEntry(nid, item, "ran", round(result.seconds, 4), result.nbytes, task.key,
                                    round(result.peak_rss_mb, 1)))
        self.bus.emit(Event("node_end", nid, item, {"status": "ran", "seconds": result.seconds}))
        self._close_item(state, item)

    def _check_outputs(self, state: NodeState, outputs: dict[str, Any]) -> None:
        expected = set(state.cls.output_ports())
        if set(outputs) != expected:
            raise TypeError(f"node '{state.node_id}' returned outputs {sorted(outputs)}, declared {sorted(expected)}")

    # ---------------------------------------------------------------- bookkeeping
    def _record_item(self, state: NodeState, item: str | None, digests: dict[str, str],
                     item_digests: dict[str, dict[str, str]]) -> None:
        if item is None:
            state.digests = dict(digests)
            state.item_digests = {k: dict(v) for k, v in item_digests.items()}
        else:
            for name, digest in digests.items():
                state.item_digests.setdefault(name, {})[item] = digest

    def _close_item(self, state: NodeState, item: str | None) -> None:
        state.open_items.discard(item)
        if not state.open_items:
            self._complete(state)

    def _complete(self, state: NodeState) -> None:
        if state.failed_items:
            state.status = "failed"
        else:
            if state.mapped:
                for name in state.cls.output_ports():
                    ordered = {it: state.item_digests.get(name, {})[it] for it in state.items}  # type: ignore[index]
                    state.item_digests[name] = ordered
                    state.digests[name] = keyed_digest(ordered)
            state.status = "done"
        self._release_inputs(state.node_id)

    def _fail_item(self, state: NodeState, item: str | None, key: str, message: str, *, user: bool,
                   detail: str | None = None) -> None:
        self._all_user_errors &= user
        if detail:
            self._error_details.append(detail)
        state.failed_items += 1
        self.report.add(ReportEntry(state.node_id, item, "failed", key=key, message=message))
        self.bus.emit(Event("node_end", state.node_id, item, {"status": "failed", "message": message}))
        self._close_item(state, item)

    def _fail_node(self, state: NodeState, message: str) -> None:
        state.status = "failed"
        self.report.add(ReportEntry(state.node_id, None, "failed", message=message))
        self._release_inputs(state.node_id)

    def _release_inputs(self, nid: str) -> None:
        """Drop run-local values nobody will read any more (they stay in the cache tiers)."""
        for src in self.graph.nodes[nid].inputs.values():
            if isinstance(src, Link) and src.node in self.consumers:
                self.consumers[src.node].discard(nid)
                if not self.consumers[src.node] and src.node not in self.output_nodes:
                    for key in [k for k in self.store if k[0] == src.node]:
                        del self.store[key]

    # ---------------------------------------------------------------- keys
    def _items_of(self, state: NodeState) -> list[str]:
        first = self.graph.nodes[state.node_id].inputs.get(state.mapped[0])
        if first is None:
            return []
        items = list(self._source_item_digests(first))
        for port in state.mapped[1:]:
            src = self.graph.nodes[state.node_id].inputs.get(port)
            if src is None:
                continue
            have = self._source_item_digests(src)
            missing = [i for i in items if i not in have]
            if missing:
                raise UserError(f"input '{port}' has no item {missing[0]!r} (it has {sorted(have)[:8]})",
                                hint=f"every mapped input must hold each item of '{state.mapped[0]}'")
        return items

    def _source_item_digests(self, src: Source) -> dict[str, str]:
        if isinstance(src, InputRef):
            value = self.input_values.get(src.name)
            if not isinstance(value, Keyed):
                raise UserError(f"graph input '{src.name}' is not a keyed collection")
            return {k: fingerprint(v) for k, v in value.items()}
        state = self.states[src.node]
        name = self._output_name(src)
        if name not in state.item_digests:
            raise UserError(f"'{src}' is not a keyed collection")
        return state.item_digests[name]

    def _output_name(self, src: Link) -> str:
        return src.output or next(iter(self.states[src.node].cls.output_ports()), SINGLE_OUTPUT)

    def _key(self, state: NodeState, item: str | None) -> str:
        digests: dict[str, str | None] = {}
        node = state.cls(state.params)
        for port, src in sorted(self.graph.nodes[state.node_id].inputs.items()):
            mapped = port in state.mapped
            if isinstance(src, InputRef):
                value = self.input_values.get(src.name)
                if isinstance(value, Path):
                    deps = tuple(node.file_dependencies(port, value))
                    memo = (value, deps)  # hash each file input once per run, not once per item
                    if memo not in self._path_digests:
                        self._path_digests[memo] = path_digest(value, list(deps))
                    digests[port] = self._path_digests[memo]
                elif mapped:
                    digests[port] = self._source_item_digests(src)[item]  # type: ignore[index]
                else:
                    try:
                        digests[port] = fingerprint(value)
                    except NotFingerprintable:
                        digests[port] = digest_bytes(b"input", src.name.encode(), repr(value).encode())
            else:
                upstream = self.states[src.node]
                name = self._output_name(src)
                digests[port] = upstream.item_digests[name][item] if mapped else upstream.digests[name]  # type: ignore[index]
        return run_key(state.cls.name, state.cls.version, state.params, digests, item)

    # ---------------------------------------------------------------- values
    def _task_inputs(self, state: NodeState, item: str | None) -> dict[str, Any]:
        values = {}
        for port, src in self.graph.nodes[state.node_id].inputs.items():
            values[port] = self._source_value(src, item if port in state.mapped else None, port in state.mapped)
        return values

    def _source_value(self, src: Source, item: str | None, mapped: bool) -> Any:
        if isinstance(src, InputRef):
            value = self.input_values.get(src.name)
            return value[item] if mapped else value
        upstream = self.states[src.node]
        name = self._output_name(src)
        if upstream.mapped:
            if mapped:
                return self._load(upstream, item)[name]
            return Keyed({it: self._load(upstream, it)[name] for it in upstream.items})  # type: ignore[misc]
        value = self._load(upstream, None)[name]
        return value[item] if mapped else value

    def _load(self, state: NodeState, item: str | None) -> dict[str, Any]:
        """A finished run's outputs: from this run's store, else the cache, else recomputed."""
        slot = (state.node_id, item)
        if slot in self.store:
            return self.store[slot]
        entry = self.cache.get(state.keys[item], state.policy)
        if entry is None:
            # evicted from memory, or its disk entry turned out corrupt: run it again now
            log.info("recomputing %s%s (not in cache any more)", state.node_id, f"[{item}]" if item else "")
            task_inputs = self._task_inputs(state, item)
            task = Task(state.node_id, item, state.keys[item], state.cls, state.params,
                        derive_seed(int(getattr(state.params, "seed", 0) or 0), item), self.device,
                        threads=state.cls.resources.num_cpus, show_progress=self.show_progress)
            future = self.executor.submit(task, task_inputs)
            while not future.done():
                self.executor.wait_any([future])
            result = future.result()
            if result.error is not None:
                raise UserError(result.error) if result.user_error else RuntimeError(result.error)
            entry = Entry(task.key, result.outputs, result.digests, result.item_digests, result.seconds, result.nbytes)
            self.cache.put(entry, state.policy)
        self.store[slot] = entry.outputs
        return entry.outputs


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)
