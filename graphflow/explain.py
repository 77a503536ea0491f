"""`graphflow explain GRAPH NODE [--item I]`: what a node's cache key is made of, why it
differs from the key the node had in the last run of the graph, and where params not written
on the node came from (a graph-level `params:` value, from the file or `--set params.NAME`; a
`--set NODE.params.KEY`).

It walks the node's ancestors the way a run would, but only reads: an ancestor
whose key is on disk contributes its stored output digests; one that is never
stored on disk (`cache: never` or `memory_only`, a folder scan say) contributes
the digests the last run recorded for the same key (nodes are deterministic); any
other would have to run first, and the node's inputs from it stay unknown (the
account then names the ancestors that would run). Nothing is computed or written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from .cache import DiskCache
from .cache.manifest import graph_identity, load_manifest, slot_name
from .errors import UserError
from .fingerprint import canonical_json
from .graph import Graph, Link
from .graph_params import provenance
from .keys import KeyBuilder, KeyParts, diff_parts


@dataclass
class Explanation:
    node: str
    item: str | None
    parts: KeyParts
    key: str | None  # None while an input is unknown
    cached: bool
    waiting_on: list[str] = field(default_factory=list)
    last: KeyParts | None = None
    last_key: str | None = None
    last_status: str | None = None
    # where params not written on the node came from (graph-level values, --set): never in the key
    origins: list[str] = field(default_factory=list)

    @property
    def changes(self) -> list[str]:
        return diff_parts(self.last, self.parts) if self.last is not None else []

    def lines(self) -> list[str]:
        where = f"node '{self.node}'" + (f" item '{self.item}'" if self.item is not None else "")
        out = [f"{where} ({self.parts.node_type} v{self.parts.version})"]
        if self.key is None:
            names = ", ".join(repr(n) for n in self.waiting_on)
            out.append(f"key: unknown: it depends on {names}, whose result is not in the cache (it would run "
                       f"first; `graphflow explain GRAPH {self.waiting_on[0]}` says why)")
        else:
            out.append(f"key: {self.key} ({'in the cache' if self.cached else 'not in the cache: it would run'})")
        out += _part_lines(self.parts)
        out += [f"  from     {line}" for line in self.origins]
        out += self._last_lines()
        return out

    def _last_lines(self) -> list[str]:
        if self.last is None:
            return ["last run: none recorded for this graph in this cache"]
        head = f"last run: key {self.last_key or 'unknown'} ({self.last_status or 'not run'})"
        if self.key is not None and self.key == self.last_key:
            return [head, "  same key as the last run: nothing it depends on changed"]
        changes = self.changes
        return [head, "  differs from the last run:" if changes else "  no recorded part differs",
                *[f"  - {c}" for c in changes]]


def _part_lines(parts: KeyParts) -> list[str]:
    lines = [f"  type     {parts.node_type}", f"  version  {parts.version}",
             f"  params   {canonical_json(parts.params).decode()}"]
    for port, digest in parts.inputs.items():
        shown = digest[:16] if digest else "unknown (upstream not run)"
        lines.append(f"  input    {port} <- {parts.sources.get(port, '?')}  digest {shown}")
        for path, file_digest in parts.files.get(port, []):
            lines.append(f"    file   {path}  digest {file_digest[:16]}")
    if parts.nested:
        lines.append("  nested   " + ", ".join(f"{t} v{v}" for t, v in parts.nested.items()))
    if parts.item is not None:
        lines.append(f"  item     {parts.item}")
    return lines


def explain_key(graph: Graph, node_id: str, inputs: dict[str, Any], cache_root: Path,
                item: str | None = None) -> Explanation:
    """The key of `node_id` (its item `item`) for these graph inputs, against the cache at `cache_root`."""
    if node_id not in graph.nodes:
        raise UserError(f"no node '{node_id}' in the graph", param="NODE", hint=f"nodes: {', '.join(graph.nodes)}")
    disk = DiskCache(cache_root)
    identity = graph_identity(graph.name, graph.source_path)
    manifest = load_manifest(disk.root, identity)
    keys = KeyBuilder(graph, graph.resolve_inputs(inputs))
    ancestors = nx.ancestors(graph.to_networkx(), node_id)
    waiting = [nid for nid in graph.topological_order()
               if nid in ancestors and not _settle(graph, keys, disk, manifest.get(nid, {}), nid)]
    cls = graph.node_class(node_id)
    params = cls.Params.model_validate(graph.nodes[node_id].params)
    item = _check_item(graph, keys, node_id, item)
    parts = keys.key_parts(node_id, params, item)
    key = parts.key() if parts.complete else None
    record = manifest.get(node_id, {}).get(slot_name(item))
    last = KeyParts.from_json(record["parts"]) if record else None
    frontier = [n for n in waiting  # the first ones that would run: their own inputs are all known
                if all(keys.known(s.node) for s in graph.nodes[n].inputs.values() if isinstance(s, Link))]
    return Explanation(node_id, item, parts, key, key is not None and disk.peek(key) is not None, frontier, last,
                       record.get("key") if record else None, record.get("status") if record else None,
                       provenance(graph.nodes[node_id], graph.params))


def _settle(graph: Graph, keys: KeyBuilder, disk: DiskCache, last: dict[str, Any], nid: str) -> bool:
    """Read an ancestor's stored digests (`last`: its records in the last run); False when it (or
    one of its items) would have to run."""
    if any(isinstance(s, Link) and not keys.known(s.node) for s in graph.nodes[nid].inputs.values()):
        return False
    cls = graph.node_class(nid)
    policy = graph.nodes[nid].cache or cls.cache
    params = cls.Params.model_validate(graph.nodes[nid].params)
    try:
        items: list[str | None] = list(keys.items_of(nid)) if cls.mapped_inputs() else [None]
    except UserError:
        return False
    for item in items:
        key = keys.key_parts(nid, params, item).key()
        hit = disk.peek(key) if policy == "default" else None
        if hit is None and policy != "default":
            before = last.get(slot_name(item), {})
            hit = before if before.get("key") == key and "digests" in before else None
        if hit is None:
            return False
        keys.record(nid, item, hit["digests"], hit.get("item_digests", {}))
    keys.complete(nid, cls, items)
    return True


def _check_item(graph: Graph, keys: KeyBuilder, node_id: str, item: str | None) -> str | None:
    mapped = graph.node_class(node_id).mapped_inputs()
    if not mapped:
        if item is not None:
            raise UserError(f"node '{node_id}' is not mapped: it has no items", param="--item",
                            hint="leave --item out")
        return None
    try:
        items = keys.items_of(node_id)
    except UserError:
        items = []  # upstream unknown: any name is taken as given
    if item is None:
        raise UserError(f"node '{node_id}' runs once per item: name one", param="--item",
                        hint=f"items: {', '.join(items[:12]) or 'unknown until its upstream runs'}")
    if items and item not in items:
        raise UserError(f"node '{node_id}' has no item '{item}'", param="--item",
                        hint=f"items: {', '.join(items[:12])}")
    return item
