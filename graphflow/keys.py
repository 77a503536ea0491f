"""Cache keys: what a node run's result depends on, as one digest, and a readable account of it.

The key strategy is separate from storage (`graphflow.cache`) and eviction:
a key is the blake3 digest of canonical JSON of the node type, its version,
its params (pydantic JSON mode, sorted keys, defaults included) and the
content digests of its inputs (never their identities or paths), plus the
item name for one item of a mapped node (nodes may seed per item), plus the
versions of node types a node runs inside itself (a batch node's nested graph).

`KeyParts` keeps those parts apart, with where each input came from and the
digest of every file behind a path input: `graphflow explain` prints them and
diffs them against the parts of the last run (stored by `cache.manifest`), the
way Hamilton's cache keys can be decoded. `KeyBuilder` computes the parts of
every node of a run as the digests of upstream outputs become known; the
scheduler and `explain` both use it, so they cannot disagree about a key.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .errors import UserError
from .fingerprint import NotFingerprintable, canonical_json, digest_bytes, fingerprint, keyed_digest
from .keyed import Keyed
from .node import SINGLE_OUTPUT, Node
from .spec import InputRef, Link, Source

KEY_SCHEMA = 1  # bump when the key recipe changes: every old entry becomes a miss


def params_json(params: BaseModel, unkeyed: tuple[str, ...] = ()) -> Any:
    """The params as keyed: JSON, without the node type's `unkeyed_params` (budgets that never change outputs)."""
    dumped = params.model_dump(mode="json")
    for name in unkeyed:
        dumped.pop(name, None)
    return dumped


def run_key(
    node_type: str,
    version: int,
    params: BaseModel | dict[str, Any],
    input_digests: dict[str, str | None],
    item: str | None = None,
    nested: dict[str, int] | None = None,
) -> str:
    payload = {
        "schema": KEY_SCHEMA,
        "type": node_type,
        "version": version,
        "params": params_json(params) if isinstance(params, BaseModel) else params,
        "inputs": input_digests,
        "item": item,
    }
    if nested:  # only nodes that run nested graphs have it: every other key is unchanged
        payload["nested"] = nested
    return digest_bytes(b"run-key", canonical_json(payload))


def file_digest(path: Path) -> str:
    """Digest of a file's bytes, or of a directory's tree (names and contents)."""
    import blake3

    if path.is_dir():
        parts = []
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            parts.append(f"{child.relative_to(path).as_posix()}:{file_digest(child)}".encode())
        return digest_bytes(b"dir", *parts)
    if not path.exists():
        return digest_bytes(b"missing", str(path).encode())
    h = blake3.blake3()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return digest_bytes(b"file", h.digest())


def file_digests(path: Path, dependencies: list[Path] = ()) -> list[tuple[str, str]]:  # type: ignore[assignment]
    """(path, digest) of a path input and of every file it names, in order."""
    return [(str(p), file_digest(Path(p))) for p in [path, *dependencies]]


def combine_file_digests(digests: list[tuple[str, str]]) -> str:
    """The input digest of a path input: its files' contents, never their locations."""
    return digest_bytes(b"path", *[d.encode() for _, d in digests])


def path_digest(path: Path, dependencies: list[Path] = ()) -> str:  # type: ignore[assignment]
    """A file input is keyed by its content and by the content of the files it names
    (a .gltf's buffers, a references file's images), never by its location."""
    return combine_file_digests(file_digests(path, list(dependencies)))


@dataclass(frozen=True)
class KeyParts:
    """What one key is made of. `inputs` and `nested` are hashed; `sources` and `files` only
    explain them (a path input's digest already covers its files' contents)."""

    node_type: str
    version: int
    params: Any
    inputs: dict[str, str | None]
    item: str | None = None
    nested: dict[str, int] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # port -> "node.output" or "$inputs.name"
    files: dict[str, list[list[str]]] = field(default_factory=dict)  # port -> [[path, digest], ...]

    @property
    def complete(self) -> bool:
        """False while an input's digest is unknown (its upstream has not run)."""
        return all(d is not None for d in self.inputs.values())

    def key(self) -> str:
        return run_key(self.node_type, self.version, self.params, self.inputs, self.item, self.nested)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyParts:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def diff_parts(old: KeyParts, new: KeyParts) -> list[str]:
    """Why two keys of one node differ, one readable line per changed part."""
    lines: list[str] = []
    if old.node_type != new.node_type:
        lines.append(f"node type: {old.node_type} -> {new.node_type}")
    if old.version != new.version:
        lines.append(f"version of {new.node_type}: {old.version} -> {new.version}")
    lines += [f"param '{path}': {a} -> {b}" for path, a, b in _json_diff(old.params, new.params)]
    for port in sorted(set(old.inputs) | set(new.inputs)):
        a, b = old.inputs.get(port), new.inputs.get(port)
        if a != b:
            lines.append(_input_change(port, a, b, old, new))
    lines += [f"nested node type '{path}': {a} -> {b}" for path, a, b in _json_diff(old.nested, new.nested)]
    if old.item != new.item:
        lines.append(f"item: {old.item} -> {new.item}")
    return lines


def _input_change(port: str, a: str | None, b: str | None, old: KeyParts, new: KeyParts) -> str:
    source = new.sources.get(port) or old.sources.get(port) or "?"
    if b is None:
        return f"input '{port}' (from {source}): not known yet, its upstream has to run first"
    line = f"input '{port}' (from {source}): digest {_short(a)} -> {_short(b)}"
    before = dict(map(tuple, old.files.get(port, [])))
    changed = [p for p, d in new.files.get(port, []) if before.get(p) != d]
    if changed:
        line += "; changed file(s): " + ", ".join(changed)
    elif old.sources.get(port) not in (None, source):
        line += f" (was from {old.sources[port]})"
    return line


def _short(digest: str | None) -> str:
    return "none" if digest is None else digest[:12]


def _json_diff(a: Any, b: Any, path: str = "") -> list[tuple[str, str, str]]:
    """(dotted path, old, new) of every leaf that differs between two JSON trees."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[tuple[str, str, str]] = []
        for k in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in a:
                out.append((sub, "(unset)", canonical_json(b[k]).decode()))
            elif k not in b:
                out.append((sub, canonical_json(a[k]).decode(), "(unset)"))
            else:
                out += _json_diff(a[k], b[k], sub)
        return out
    if a == b and type(a) is type(b):
        return []
    return [(path or "(all)", canonical_json(a).decode(), canonical_json(b).decode())]


class KeyBuilder:
    """The key parts of a run's nodes, from the graph, the graph inputs' values and the digests of
    upstream outputs as they become known (`record`, then `complete` once a node is done)."""

    def __init__(self, graph: Any, input_values: dict[str, Any]) -> None:
        self.graph = graph
        self.input_values = input_values
        self.digests: dict[str, dict[str, str]] = {}  # node -> output -> digest
        self.item_digests: dict[str, dict[str, dict[str, str]]] = {}  # node -> output -> item -> digest
        self.parts: dict[tuple[str, str | None], KeyParts] = {}
        self.outputs: dict[tuple[str, str | None], dict[str, Any]] = {}  # what `record` got, per run or item
        self._files: dict[tuple[Path, tuple[Path, ...]], list[tuple[str, str]]] = {}
        self._nested: dict[tuple[str, str, Path], dict[str, int]] = {}

    # ---- digests of finished nodes
    def record(self, node_id: str, item: str | None, digests: dict[str, str],
               item_digests: dict[str, dict[str, str]]) -> None:
        """A node run's (item None) or one item's output digests."""
        self.outputs[(node_id, item)] = {"digests": dict(digests), "item_digests": item_digests}
        if item is None:
            self.digests[node_id] = dict(digests)
            self.item_digests[node_id] = {k: dict(v) for k, v in item_digests.items()}
            return
        for name, digest in digests.items():
            self.item_digests.setdefault(node_id, {}).setdefault(name, {})[item] = digest

    def complete(self, node_id: str, cls: type[Node], items: list[str | None]) -> None:
        """A mapped node is done: each output's digest is the keyed digest of its items, in order."""
        if not cls.mapped_inputs():
            return
        per_output = self.item_digests.setdefault(node_id, {})
        for name in cls.output_ports():
            ordered = {it: per_output.get(name, {})[it] for it in items}  # type: ignore[index]
            per_output[name] = ordered
            self.digests.setdefault(node_id, {})[name] = keyed_digest(ordered)

    def known(self, node_id: str) -> bool:
        return node_id in self.digests

    # ---- items and keys
    def output_name(self, src: Link) -> str:
        return src.output or next(iter(self.graph.node_class(src.node).output_ports()), SINGLE_OUTPUT)

    def items_of(self, node_id: str) -> list[str]:
        """The items a mapped node runs over: its first mapped input's, which every other mapped
        input must hold too."""
        spec = self.graph.nodes[node_id]
        mapped = self.graph.node_class(node_id).mapped_inputs()
        first = spec.inputs.get(mapped[0])
        if first is None:
            return []
        items = list(self.source_item_digests(first))
        for port in mapped[1:]:
            src = spec.inputs.get(port)
            if src is None:
                continue
            have = self.source_item_digests(src)
            missing = [i for i in items if i not in have]
            if missing:
                raise UserError(f"input '{port}' has no item {missing[0]!r} (it has {sorted(have)[:8]})",
                                hint=f"every mapped input must hold each item of '{mapped[0]}'")
        return items

    def source_item_digests(self, src: Source) -> dict[str, str]:
        if isinstance(src, InputRef):
            value = self.input_values.get(src.name)
            if not isinstance(value, Keyed):
                raise UserError(f"graph input '{src.name}' is not a keyed collection")
            return {k: fingerprint(v) for k, v in value.items()}
        name = self.output_name(src)
        if name not in self.item_digests.get(src.node, {}):
            raise UserError(f"'{src}' is not a keyed collection")
        return self.item_digests[src.node][name]

    def key_parts(self, node_id: str, params: BaseModel, item: str | None) -> KeyParts:
        """The parts of the key of a node run (or one item); an input whose upstream has not
        finished has digest None (then `parts.complete` is False)."""
        cls = self.graph.node_class(node_id)
        node = cls(params)
        mapped = cls.mapped_inputs()
        inputs: dict[str, str | None] = {}
        files: dict[str, list[list[str]]] = {}
        nested: dict[str, int] = {}
        for port, src in sorted(self.graph.nodes[node_id].inputs.items()):
            if isinstance(src, InputRef):
                value = self.input_values.get(src.name)
                if isinstance(value, Path):
                    listed = self._file_digests(node, port, value)
                    inputs[port] = combine_file_digests(listed)
                    files[port] = [list(pair) for pair in listed]
                    nested.update(self._nested_versions(node, node_id, port, value))
                else:
                    inputs[port] = self._value_digest(src, value, item if port in mapped else None, port in mapped)
            else:
                inputs[port] = self._upstream_digest(src, item if port in mapped else None, port in mapped)
        parts = KeyParts(cls.name, cls.version, params_json(params, cls.unkeyed_params), inputs, item,
                         dict(sorted(nested.items())),
                         {p: str(s) for p, s in sorted(self.graph.nodes[node_id].inputs.items())}, files)
        self.parts[(node_id, item)] = parts
        return parts

    def _file_digests(self, node: Node, port: str, path: Path) -> list[tuple[str, str]]:
        deps = tuple(node.file_dependencies(port, path))
        memo = (path, deps)  # hash each file input once per run, not once per item
        if memo not in self._files:
            self._files[memo] = file_digests(path, list(deps))
        return self._files[memo]

    def _nested_versions(self, node: Node, node_id: str, port: str, path: Path) -> dict[str, int]:
        memo = (node_id, port, path)
        if memo not in self._nested:
            self._nested[memo] = dict(node.nested_versions(port, path))
        return self._nested[memo]

    def _value_digest(self, src: InputRef, value: Any, item: str | None, mapped: bool) -> str:
        if mapped:
            return self.source_item_digests(src)[item]  # type: ignore[index]
        try:
            return fingerprint(value)
        except NotFingerprintable:
            return digest_bytes(b"input", src.name.encode(), repr(value).encode())

    def _upstream_digest(self, src: Link, item: str | None, mapped: bool) -> str | None:
        if not self.known(src.node):
            return None
        name = self.output_name(src)
        return self.item_digests[src.node][name][item] if mapped else self.digests[src.node][name]  # type: ignore[index]
