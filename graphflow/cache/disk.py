"""Persistent tier: a content-addressed directory shared across processes.

Layout: `ROOT/v1/<key[:2]>/<key>/{entry.json,data.safetensors}`. Tensors go to
safetensors, everything else to JSON (never pickle). An entry is written in a
private temporary directory and renamed into place in one step, so a reader
sees either nothing or a whole entry, whatever kills the writer. Reads check
the data file's blake3 digest against the JSON, and the JSON against its own
digest: a corrupt, truncated or tampered entry is a miss (with a warning) and
is removed, never a crash.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import blake3
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..codec import NotEncodable, UnknownValueType, decode, encode
from ..errors import UserError
from .entry import Entry

log = logging.getLogger("graphflow.cache")
FORMAT = 1


def default_cache_dir() -> Path:
    env = os.environ.get("GRAPHFLOW_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "graphflow"


class DiskCache:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser()
        self.entries_dir = self.root / f"v{FORMAT}"
        self._tmp = self.root / "tmp"
        self._verified: dict[str, dict[str, Any]] = {}
        try:
            self.entries_dir.mkdir(parents=True, exist_ok=True)
            self._tmp.mkdir(parents=True, exist_ok=True)
            probe = self._tmp / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"cannot write the cache directory: {exc.strerror}", file=str(self.root),
                            hint="pass a writable --cache DIR or set GRAPHFLOW_CACHE") from exc
        self._sweep_stale_tmp()

    def _sweep_stale_tmp(self, older_than_s: float = 3600.0) -> None:
        """Remove private write folders of writers killed mid-write (a live writer renames its
        folder away within seconds, so anything an hour old is an orphan)."""
        now = time.time()
        for leftover in self._tmp.iterdir():
            try:
                if now - leftover.stat().st_mtime > older_than_s:
                    shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
            except OSError:
                pass

    def _dir(self, key: str) -> Path:
        return self.entries_dir / key[:2] / key

    # ---- reading ----
    def _read_meta(self, key: str) -> tuple[dict[str, Any], bytes] | None:
        """The entry's JSON and data bytes, verified; None on a miss or a corrupt entry."""
        folder = self._dir(key)
        if not (folder / "entry.json").exists():
            return None
        try:
            meta = json.loads((folder / "entry.json").read_text())
            data = (folder / "data.safetensors").read_bytes()
            if not isinstance(meta, dict) or meta.get("meta_blake3") != _meta_digest(meta):
                raise ValueError("entry header digest mismatch")
            if meta.get("format") != FORMAT or meta.get("key") != key:
                raise ValueError("entry header does not match its key")
            if blake3.blake3(data).hexdigest() != meta["data_blake3"]:
                raise ValueError("data digest mismatch")
            return meta, data
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            log.warning("cache entry %s is corrupt (%s): discarded, it will be recomputed", key[:16], exc)
            self._quarantine(key)
            return None

    def peek(self, key: str) -> dict[str, Any] | None:
        """Digests and cost of an entry without decoding its values (verified)."""
        if key in self._verified:
            return self._verified[key]
        got = self._read_meta(key)
        if got is None:
            return None
        self._verified[key] = got[0]
        return got[0]

    def get(self, key: str) -> Entry | None:
        got = self._read_meta(key)
        if got is None:
            self._verified.pop(key, None)
            return None
        meta, data = got
        try:
            tensors = st_load(data) if data else {}
            outputs = {}
            for name, out_meta in meta["outputs"].items():
                prefix = f"{name}/"
                own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
                outputs[name] = decode(own, out_meta)
        except UnknownValueType as exc:  # not this entry's fault: keep it for processes that know the type
            log.warning("cache entry %s holds a value type this process does not know (%s): treated as a miss",
                        key[:16], exc)
            return None
        except Exception as exc:  # noqa: BLE001 - any decoding failure means a bad entry, never a crash
            log.warning("cache entry %s cannot be decoded (%s): discarded, it will be recomputed", key[:16], exc)
            self._quarantine(key)
            return None
        return Entry(key=key, outputs=outputs, digests=meta["digests"], item_digests=meta.get("item_digests", {}),
                     seconds=meta.get("seconds", 0.0), nbytes=meta.get("nbytes", 0), notes=meta.get("notes", []))

    # ---- writing ----
    def put(self, entry: Entry) -> bool:
        """Store an entry atomically; False when a value cannot be stored on disk."""
        final = self._dir(entry.key)
        if final.exists():
            return True
        try:
            tensors: dict[str, torch.Tensor] = {}
            outputs_meta = {}
            for name, value in entry.outputs.items():
                own, meta = encode(value)
                outputs_meta[name] = meta
                tensors.update({f"{name}/{k}": v.clone() for k, v in own.items()})
        except NotEncodable as exc:
            log.debug("not storing %s on disk: %s", entry.key[:16], exc)
            return False
        data = st_save(tensors) if tensors else b""
        meta = {
            "format": FORMAT, "key": entry.key, "digests": entry.digests, "item_digests": entry.item_digests,
            "seconds": entry.seconds, "nbytes": entry.nbytes, "outputs": outputs_meta,
            "data_blake3": blake3.blake3(data).hexdigest(),
        }
        if entry.notes:  # only when there are some: every other entry keeps its old bytes
            meta["notes"] = list(entry.notes)
        meta["meta_blake3"] = _meta_digest(meta)
        tmp = self._tmp / f"{entry.key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir(parents=True)
            _write_synced(tmp / "data.safetensors", data)
            _write_synced(tmp / "entry.json", json.dumps(meta).encode())
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, final)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process stored the same key first
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):  # no space, quota, or a file-size limit
                raise UserError("the disk is full while writing the cache", file=str(self.root),
                                hint="free space or pass another --cache DIR; finished work is kept") from exc
            raise UserError(f"cannot write the cache: {exc.strerror}", file=str(self.root),
                            hint="pass a writable --cache DIR") from exc
        self._verified[entry.key] = meta
        return True

    def _quarantine(self, key: str) -> None:
        folder = self._dir(key)
        trash = self._tmp / f"trash-{key}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
        except OSError:
            pass

    # ---- maintenance ----
    def info(self) -> dict[str, Any]:
        count, size = 0, 0
        for entry_json in self.entries_dir.glob("*/*/entry.json"):
            count += 1
            size += sum(f.stat().st_size for f in entry_json.parent.iterdir())
        return {"path": str(self.root), "entries": count, "bytes": size}

    def clear(self) -> int:
        removed = 0
        for folder in list(self.entries_dir.glob("*/*")):
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.root / "runs", ignore_errors=True)  # the last runs' key parts (cache/manifest.py)
        self._verified.clear()
        return removed


def _meta_digest(meta: dict[str, Any]) -> str:
    """Digest of an entry's JSON header (all but this field): a tampered or bit-flipped header
    (digests, output layout) is a corrupt entry, just like a bad data file."""
    body = {k: v for k, v in meta.items() if k != "meta_blake3"}
    return blake3.blake3(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _write_synced(path: Path, data: bytes) -> None:
    # No fsync: a process killed at any point leaves the page cache intact, and after a power
    # loss a torn file fails the digest check on read and is recomputed (verified reads).
    with open(path, "wb") as fh:
        fh.write(data)
