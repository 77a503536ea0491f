"""The values of one run: the outputs of finished node runs and items, read lazily.

A task's inputs come from this run's store, else from the cache tiers, else (the
entry was evicted, or its disk copy turned out corrupt) from running the producer
again through the scheduler's `recompute`, which reports it like any run. A value
leaves the store once its last consumer has read it; the cache tiers keep it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .cache import TieredCache
from .errors import UserError
from .graph import Graph, InputRef, Link, Source
from .keyed import Keyed
from .keys import KeyBuilder

Slot = tuple[str, str | None]  # (node id, item or None)


class RunStore:
    """`states` are the scheduler's node states (`node_id`, `mapped`, `items`, `keys`, `policy`)."""

    def __init__(self, graph: Graph, states: dict[str, Any], keys: KeyBuilder, cache: TieredCache,
                 recompute: Callable[[Any, str | None], None]) -> None:
        self.graph, self.states, self.keys, self.cache, self.recompute = graph, states, keys, cache, recompute
        self.values: dict[Slot, dict[str, Any]] = {}
        self.consumers: dict[str, set[str]] = {n: set() for n in states}
        for nid in states:
            for src in graph.nodes[nid].inputs.values():
                if isinstance(src, Link) and src.node in self.consumers:
                    self.consumers[src.node].add(nid)
        self.keep = {s.node for s in graph.outputs.values() if isinstance(s, Link)}  # the graph's outputs

    def put(self, node_id: str, item: str | None, outputs: dict[str, Any]) -> None:
        self.values[(node_id, item)] = outputs

    def inputs_of(self, node_id: str, item: str | None) -> dict[str, Any]:
        """A task's input values, by port (a mapped port gets its item's value)."""
        mapped = self.states[node_id].mapped
        return {port: self._value(src, item if port in mapped else None, port in mapped)
                for port, src in self.graph.nodes[node_id].inputs.items()}

    def whole(self, node_id: str, port: str) -> Any:
        """The value on one input port of a node as a whole (a keyed collection, not an item of it)."""
        return self._value(self.graph.nodes[node_id].inputs[port], None, False)

    def outputs(self, wanted: list[str]) -> dict[str, Any]:
        return {name: self._value(self.graph.outputs[name], None, mapped=False) for name in wanted}

    def release_inputs(self, node_id: str) -> None:
        """`node_id` is settled: drop the values nobody will read any more."""
        for src in self.graph.nodes[node_id].inputs.values():
            if isinstance(src, Link) and src.node in self.consumers:
                self.consumers[src.node].discard(node_id)
                if not self.consumers[src.node] and src.node not in self.keep:
                    for slot in [s for s in self.values if s[0] == src.node]:
                        del self.values[slot]

    def _value(self, src: Source, item: str | None, mapped: bool) -> Any:
        if isinstance(src, InputRef):
            value = self.keys.input_values.get(src.name)
            return value[item] if mapped else value
        upstream = self.states[src.node]
        name = self.keys.output_name(src)
        if upstream.mapped:
            if mapped:
                return self._load(upstream, item)[name]
            return Keyed({it: self._load(upstream, it)[name] for it in upstream.items})
        value = self._load(upstream, None)[name]
        return value[item] if mapped else value

    def _load(self, state: Any, item: str | None) -> dict[str, Any]:
        """A finished run's outputs: from the store, else the cache, else computed again."""
        slot = (state.node_id, item)
        if slot not in self.values:
            entry = self.cache.get(state.keys[item], state.policy)
            if entry is not None:
                self.values[slot] = entry.outputs
            else:  # evicted from memory, or its disk entry turned out corrupt
                self.recompute(state, item)
        if slot not in self.values:
            where = f"{state.node_id}[{item}]" if item is not None else state.node_id
            raise UserError(f"the output of '{where}' was gone from the cache and computing it again failed",
                            hint="see that node's error above")
        return self.values[slot]
