"""The key parts of a graph's last run, so `graphflow explain` can say why a key changed.

One small JSON file per graph (by its YAML file's resolved path, or its name when it
has none) under `ROOT/runs/`, next to the entries; written atomically after every run
that has a disk tier, merged with what earlier runs recorded for nodes this run did
not reach. It is bookkeeping, never needed to serve a cache hit: a failure to write
it (a full disk) is logged and ignored, and a missing or unreadable one reads as empty.
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from ..fingerprint import digest_bytes

log = logging.getLogger("graphflow.cache")
RECORD = 1


def graph_identity(name: str, source_path: Path | None) -> str:
    return str(Path(source_path).resolve()) if source_path is not None else f"graph:{name}"


def manifest_path(root: Path, identity: str) -> Path:
    return Path(root) / "runs" / f"{digest_bytes(b'graph', identity.encode())[:32]}.json"


def slot_name(item: str | None) -> str:
    return "" if item is None else f"[{item}]"


def load_manifest(root: Path, identity: str) -> dict[str, dict[str, Any]]:
    """`{node: {"" or "[item]": {"key", "parts", "status", "digests", "item_digests"}}}` of the last runs."""
    path = manifest_path(root, identity)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("record") != RECORD or data.get("graph") != identity:
        return {}
    nodes = data.get("nodes")
    return nodes if isinstance(nodes, dict) else {}


def save_manifest(root: Path, identity: str, records: dict[tuple[str, str | None], dict[str, Any]]) -> None:
    """Merge this run's `{(node, item): {"key", "parts", "status"}}` into the graph's manifest."""
    if not records:
        return
    nodes = load_manifest(root, identity)
    for node in {n for n, _ in records}:
        nodes[node] = {}  # a node's items are replaced as a whole: dropped items do not linger
    for (node, item), record in records.items():
        nodes[node][slot_name(item)] = record
    path = manifest_path(root, identity)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"record": RECORD, "graph": identity, "nodes": nodes}, sort_keys=True))
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        log.info("could not record the run's keys for `graphflow explain` (%s)", exc.strerror)
