"""Untrusted cache files (issue 8): a tampered, truncated or corrupted disk-cache entry is a miss
(and is recomputed), never an exception and never a wrong value; cache files are never pickles.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphflow import Keyed
from graphflow.cache import DiskCache, Entry

FUZZ = dict(deadline=None, derandomize=True, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
KEY = "ab" + "0123456789abcdef" * 4


def _entry() -> Entry:
    outputs = {
        "tensor": torch.arange(24, dtype=torch.float32).reshape(2, 3, 4),
        "keyed": Keyed({"a": torch.ones(3), "b": {"x": 1.5, "name": "b", "flag": True}}),
        "meta": {"shape": [2, 3], "label": "wood", "nan": float("nan")},
    }
    return Entry(KEY, outputs, {"tensor": "d1", "keyed": "d2", "meta": "d3"}, {"keyed": {"a": "ia", "b": "ib"}},
                 1.25, 96)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (dict, Keyed)):
        return type(a) is type(b) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    return type(a) is type(b) and a == b


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine")
    assert DiskCache(root).put(_entry())
    return root


def _folder(root: Path) -> Path:
    return root / "v1" / KEY[:2] / KEY


def test_cache_files_are_safetensors_and_json(pristine: Path) -> None:
    folder = _folder(pristine)
    assert sorted(p.name for p in folder.iterdir()) == ["data.safetensors", "entry.json"]
    json.loads((folder / "entry.json").read_text())
    data = (folder / "data.safetensors").read_bytes()
    assert b"\x80\x04" not in data[:2] and b"pickle" not in data  # not a pickle stream
    got = DiskCache(pristine).get(KEY)
    assert got is not None and all(_same(_entry().outputs[k], got.outputs[k]) for k in got.outputs)


mutation = st.tuples(
    st.sampled_from(["entry.json", "data.safetensors"]),
    st.one_of(
        st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, 10**5), st.integers(0, 255)), min_size=1,
                                            max_size=4)),
        st.tuples(st.just("truncate"), st.integers(0, 10**5)),
        st.tuples(st.just("insert"), st.tuples(st.integers(0, 10**5), st.binary(min_size=1, max_size=8))),
        st.tuples(st.just("json"), st.tuples(st.integers(0, 200), st.one_of(
            st.none(), st.integers(-5, 5), st.text(max_size=4), st.just([]), st.just({}), st.floats()))),
    ),
)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out += _paths(value, prefix + (i,))
    return out


def _mutate(data: bytes, how: tuple[str, Any], is_json: bool) -> bytes:
    kind, arg = how
    buf = bytearray(data)
    if kind == "flip" and buf:
        for position, value in arg:
            buf[position % len(buf)] = value
    elif kind == "truncate":
        del buf[arg % (len(buf) + 1):]
    elif kind == "insert":
        position, blob = arg
        buf[position % (len(buf) + 1):position % (len(buf) + 1)] = blob
    elif kind == "json" and is_json:
        doc = json.loads(data)
        paths = _paths(doc)
        path = paths[arg[0] % len(paths)]
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        parent[path[-1]] = arg[1]
        return json.dumps(doc).encode()
    return bytes(buf)


def _check_mutated(pristine: Path, work: Path, which: str, how: tuple[str, Any]) -> None:
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(pristine, work)
    target = _folder(work) / which
    target.write_bytes(_mutate(target.read_bytes(), how, which.endswith(".json")))
    expected = _entry()
    disk = DiskCache(work)
    meta = disk.peek(KEY)
    if meta is not None:
        assert meta["digests"] == expected.digests and meta.get("item_digests", {}) == expected.item_digests
    got = DiskCache(work).get(KEY)
    if got is None:
        assert not _folder(work).exists(), "a corrupt entry must be discarded"
        return
    assert got.digests == expected.digests and got.item_digests == expected.item_digests
    for name, value in expected.outputs.items():
        assert _same(value, got.outputs[name]), f"output '{name}' came back different"


@settings(max_examples=300, **FUZZ)
@given(case=mutation)
def test_corrupt_cache_entry_is_a_miss_never_a_wrong_value(pristine: Path, tmp_path: Path,
                                                             case: tuple[str, Any]) -> None:
    _check_mutated(pristine, tmp_path / "work", *case)
