"""Fuzzing untrusted inputs with hypothesis (issue 8): only the documented user errors
(`graphflow.UserError`, or its subclass `GraphInvalid`) may ever come out.

- The YAML graph loader and validator (`Graph.from_yaml(...).check()`) on text mutations of the
  shipped graphs (`graphs/*.yaml`) and of a toy graph, on structural mutations of their parsed
  documents (values swapped for other values, keys deleted or renamed, links rewired), and on
  generated YAML documents. A graph that loads and checks must also round-trip through
  `to_yaml` losslessly.
- The glTF/glb loader (`nodes.scene.loader.load_scene`) on mutations of glbs that our own
  exporter (`export.gltf`) writes. Mutations of ../shared/assets files are fuzzed by
  tests/scene/test_scene_corrupt.py (engineer A); this adds our own exports, which carry what
  the assets do not (TANGENT, several materials and embedded PNG textures).

The default run uses a few hundred examples per target; `slow` runs use 2,000 each.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from helpers.toys import toys

from graphflow import Graph, GraphInvalid, Registry, UserError
from graphflow.registry import registry as default_registry

REPO = Path(__file__).resolve().parents[2]
FUZZ = dict(deadline=None, derandomize=True, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])

TOY_GRAPH = """\
graph: toy
description: a toy graph for fuzzing
inputs:
  v: {type: float, default: 2.0}
  p: {type: path, default: null, doc: a file}
nodes:
  c: {type: toy.const, params: {value: 3, size: 8}}
  s: {type: toy.scale, params: {factor: 4}, inputs: {x: c}}
  sp: {type: toy.split, params: {values: {a: 1.0, b: 2.0}}}
  m: {type: toy.map_square, inputs: {xs: sp}, cache: memory_only}
  t: {type: toy.total, inputs: {xs: m}}
  b: {type: toy.bounds, inputs: {x: s}}
  ad: {type: toy.add, inputs: {a: b.low, b: b.high}}
outputs: {scaled: s, total: t, added: ad}
"""


def _fuzz_registry() -> Registry:
    """The real catalogue plus the toy nodes, isolated from the process-wide registry."""
    reg = Registry(plugins=False)
    reg.include(default_registry)
    reg.include(toys)
    default_registry.load_plugins()
    for cls in default_registry.types.values():
        reg.types.setdefault(cls.name, cls)
    return reg


REGISTRY = _fuzz_registry()
SEEDS: list[str] = [TOY_GRAPH] + [p.read_text() for p in sorted((REPO / "graphs").glob("*.yaml"))]
SEED_DOCS: list[Any] = [yaml.safe_load(text) for text in SEEDS]
TIME_LIMIT_S = 5.0  # one load + check must never take longer (no exponential blow-up)


def load_and_check(text: str) -> None:
    """The only allowed outcomes: a valid graph that round-trips, or a UserError/GraphInvalid with a message."""
    start = time.perf_counter()
    try:
        graph = Graph.from_yaml(text if "\n" in text else text + "\n", registry=REGISTRY)
        graph.check()
    except GraphInvalid as exc:
        assert exc.problems and str(exc).strip()
        return
    except UserError as exc:
        assert str(exc).strip()
        return
    finally:
        assert time.perf_counter() - start < TIME_LIMIT_S, "loading and checking took too long"
    again = Graph.from_yaml(graph.to_yaml(), registry=REGISTRY)
    assert again.to_dict() == graph.to_dict(), "to_yaml/from_yaml round trip is lossy"


# ---------------------------------------------------------------- text mutations

YAML_BITS = st.sampled_from([
    ":", "- ", "{", "}", "[", "]", ",", "&a ", "*a", "!!str ", "!!python/object:os.system ", "? ", "|", ">", "#",
    "'", '"', "\t", "\n", "  ", "$inputs.", ".", "null", "~", "1e309", "-1", "nan", ".inf", "\x00", "\ufeff", "%YAML 1.1\n",
    "---\n", "...\n", "<<: ", "!!binary ", "é", "💥",
])
text_mutation = st.lists(st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 10**5), st.one_of(YAML_BITS, st.text(max_size=8))),
    st.tuples(st.just("delete"), st.integers(0, 10**5), st.integers(1, 40)),
    st.tuples(st.just("flip"), st.integers(0, 10**5), st.integers(0, 0x7F)),
    st.tuples(st.just("swap_lines"), st.integers(0, 10**5), st.integers(0, 10**5)),
    st.tuples(st.just("truncate"), st.integers(0, 10**5), st.just(0)),
), min_size=1, max_size=5)


def mutate_text(text: str, mutations: list[tuple[str, int, Any]]) -> str:
    for kind, pos, arg in mutations:
        if not text:
            text = " "
        at = pos % (len(text) + 1)
        if kind == "insert":
            text = text[:at] + arg + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + arg:]
        elif kind == "flip":
            at = min(at, len(text) - 1)
            text = text[:at] + chr(arg) + text[at + 1:]
        elif kind == "swap_lines":
            lines = text.split("\n")
            i, j = pos % len(lines), arg % len(lines)
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        else:
            text = text[:at]
    return text


# ---------------------------------------------------------------- structural mutations

def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out += _paths(value, prefix + (i,))
    return out


NAMES = st.sampled_from(["scene", "segment", "bind", "views", "semantic", "c", "s", "sp", "m", "t", "b", "ad",
                         "nope", "", "scene.scene", "scene.references", "b.low", "b.high", "b.nothing",
                         "$inputs.scene", "$inputs.v", "$inputs.nope", "$inputs.", "c.out", "s.s.s", ".x", "x."])
TYPES = st.sampled_from(sorted(REGISTRY.types) + ["toy.nothing", "", "os.system", "graphflow.cli.main"])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), NAMES, TYPES,
    st.sampled_from(["path", "int", "float", "bool", "str", "any", "default", "memory_only", "never", "vsd",
                     "closed_form", "stable_diffusion", "node", "component", "auto"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=6), NAMES, st.integers(-3, 3)), inner,
                                                 max_size=4)), max_leaves=12)
doc_mutation = st.lists(st.tuples(
    st.integers(0, 10**6),
    st.one_of(st.just(("delete",)), st.tuples(st.just("set"), VALUES), st.tuples(st.just("rename"), NAMES),
              st.tuples(st.just("link"), NAMES), st.tuples(st.just("type"), TYPES)),
), min_size=1, max_size=4)


def mutate_doc(doc: Any, mutations: list[tuple[int, tuple]]) -> Any:
    doc = copy.deepcopy(doc)
    for pick, action in mutations:
        paths = [p for p in _paths(doc) if p]
        if not paths:
            return action[1] if action[0] == "set" else doc
        path = paths[pick % len(paths)]
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        kind = action[0]
        if kind == "delete":
            del parent[last]
        elif kind == "rename" and isinstance(parent, dict):
            parent[action[1]] = parent.pop(last)
        elif kind == "type" and isinstance(parent, dict):
            parent["type"] = action[1]
        else:  # set, link, or rename/type on a list element
            parent[last] = action[1]
    return doc


def dump_any(doc: Any) -> str:
    try:
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return "{}"


# ---------------------------------------------------------------- generated documents

def _node_spec() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"type": TYPES},
        optional={"params": st.dictionaries(st.sampled_from(["value", "size", "factor", "values", "steps", "lr",
                                                             "by", "seed", "prior", "unwrap", "bogus"]), VALUES,
                                            max_size=3),
                  "inputs": st.dictionaries(st.sampled_from(["x", "xs", "a", "b", "scene", "instances", "path",
                                                             "references", "views", "file", "y"]), NAMES, max_size=3),
                  "cache": st.sampled_from(["default", "memory_only", "never", "always", None, 3])})


generated_doc = st.fixed_dictionaries(
    {"nodes": st.dictionaries(NAMES, _node_spec(), max_size=6)},
    optional={"graph": SCALARS, "inputs": st.dictionaries(NAMES, st.one_of(
        st.fixed_dictionaries({"type": SCALARS}, optional={"default": SCALARS, "doc": SCALARS}), SCALARS), max_size=3),
        "outputs": st.dictionaries(NAMES, NAMES, max_size=3), "extra": SCALARS},
)


def _fuzz_yaml(seed: int, text_mut: list | None, doc_mut: list | None, generated: Any) -> None:
    if generated is not None:
        load_and_check(dump_any(generated))
        return
    source = SEEDS[seed % len(SEEDS)]
    if doc_mut is not None:
        source = dump_any(mutate_doc(SEED_DOCS[seed % len(SEEDS)], doc_mut))
    if text_mut is not None:
        source = mutate_text(source, text_mut)
    load_and_check(source)


yaml_case = st.one_of(
    st.tuples(st.integers(0, 100), text_mutation, st.none(), st.none()),
    st.tuples(st.integers(0, 100), st.none(), doc_mutation, st.none()),
    st.tuples(st.integers(0, 100), st.one_of(st.none(), text_mutation), doc_mutation, st.none()),
    st.tuples(st.just(0), st.none(), st.none(), generated_doc),
)


def test_seed_graphs_load_and_round_trip() -> None:
    assert len(SEEDS) >= 2
    for text in SEEDS:
        load_and_check(text)


@settings(max_examples=400, **FUZZ)
@given(case=yaml_case)
def test_fuzz_yaml_graph_loader(case: tuple) -> None:
    _fuzz_yaml(*case)


@pytest.mark.slow
@settings(max_examples=2500, **FUZZ)
@given(case=yaml_case)
def test_fuzz_yaml_graph_loader_2500(case: tuple) -> None:
    _fuzz_yaml(*case)


@pytest.mark.parametrize("text", [
    # a billion laughs: aliases multiply the size of the parsed document
    "nodes:\n  c:\n    type: toy.split\n    params:\n      values: &a0 {a: 1.0, b: 2.0}\n"
    + "".join(f"x{i}: &a{i + 1} [{', '.join([f'*a{i}'] * 9)}]\n" for i in range(9)),
    "nodes: &n {c: {type: toy.const}, d: *n}\n",  # a recursive alias
    "nodes:\n  c: {type: toy.const, params: {value: " + "[" * 5000 + "]" * 5000 + "}}\n",  # deep nesting
    "nodes:\n  c: {type: toy.const, params: {size: 1e400}}\n",
    "nodes:\n  c: {type: toy.const, params: {value: .nan}}\noutputs: {c: c}\n",
    "nodes:\n  c: {type: !!python/name:os.system }\n",
    "nodes:\n  ? [a, b]\n  : {type: toy.const}\n",  # a non-string node id
    "inputs: [a]\nnodes: {c: {type: toy.const}}\n",
    "nodes: {c: {type: toy.const, inputs: {x: [1, 2]}}}\n",
    "nodes: {c: {type: toy.scale, inputs: {x: c}}}\noutputs: {c: c}\n",  # a self-loop
    "\ufeffnodes: {c: {type: toy.const}}\n",
    "%YAML 1.1\n---\nnodes: {c: {type: toy.const}}\n---\nnodes: {}\n",  # two documents
])
def test_hostile_yaml(text: str) -> None:
    load_and_check(text)


# ---------------------------------------------------------------- glTF/glb: mutations of our own exports

@pytest.fixture(scope="module")
def exported_glb(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A glb written by export.gltf for the demo room with small textures (several materials,
    TANGENT, embedded PNGs)."""
    try:
        from nodes.export.nodes import ExportGltf  # noqa: F401
    except ImportError:
        pytest.skip("nodes.export is not available")
    return _export_demo_glb()


def _export_demo_glb() -> bytes:
    import torch

    from graphflow import Keyed
    from graphflow.testing import make_context
    from nodes.brdf.nodes import TextureFromScene  # noqa: F401 - registered nodes
    from nodes.export.nodes import ExportGltf
    from nodes.scene.nodes import DemoRoomNode, SegmentParts
    from nodes.types import PBRMaps

    ctx = make_context()
    room = DemoRoomNode({"reference_size": 16}).run(ctx)
    instances = SegmentParts({}).run(ctx, room.scene)
    pbr = {}
    for i, name in enumerate(instances):
        size = 8
        base = torch.linspace(0.1, 0.9, size * size).reshape(1, size, size)
        pbr[name] = _pbr_maps(PBRMaps, base, size, i)
    blob = ExportGltf({}).run(ctx, room.scene, instances, Keyed(pbr))
    return blob.data


def _pbr_maps(cls: Any, base: Any, size: int, i: int) -> Any:
    import torch

    return cls(albedo=torch.cat([base, base.flip(1), base * 0 + (i % 5) / 5]), roughness=base.clone(),
               metallic=base * 0.2, normal=torch.stack([base[0] * 0, base[0] * 0, base[0] * 0 + 1]),
               occlusion=base * 0 + 1, mask=torch.ones(size, size, dtype=torch.bool),
               material="fabric" if i % 2 else "wood")


def _fuzz_export(folder: Path, data: bytes, mutation: tuple[str, Any]) -> None:
    from nodes.scene.loader import load_scene

    kind, arg = mutation
    buf = bytearray(data)
    if kind == "flip":
        for position, value in arg:
            buf[position % len(buf)] = value
    elif kind == "truncate":
        del buf[arg % len(buf):]
    elif kind == "insert":
        position, blob = arg
        buf[position % len(buf):position % len(buf)] = blob
    elif kind == "delete":
        position, count = arg
        del buf[position % len(buf):position % len(buf) + count]
    else:  # "json": flip bytes inside the JSON chunk only (the most structured part)
        json_length = int.from_bytes(data[12:16], "little")
        for position, value in arg:
            buf[20 + position % json_length] = value
    path = folder / "export.glb"
    path.write_bytes(bytes(buf))
    try:
        scene = load_scene(path, unwrap_mode="never", max_pixels=1 << 20)
    except UserError as exc:
        assert exc.file and str(exc).strip(), f"UserError without a file: {exc}"
        return
    assert all(math.isfinite(v) for v in scene.positions.flatten().tolist()[:3000])


edits = st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 255)), min_size=1, max_size=6)
export_mutation = st.one_of(
    st.tuples(st.just("flip"), edits),
    st.tuples(st.just("json"), edits),
    st.tuples(st.just("truncate"), st.integers(0, 10**7)),
    st.tuples(st.just("insert"), st.tuples(st.integers(0, 10**7), st.binary(min_size=1, max_size=16))),
    st.tuples(st.just("delete"), st.tuples(st.integers(0, 10**7), st.integers(1, 64))),
)


@pytest.fixture(scope="module")
def quiet_scene_logs() -> Any:
    logger = logging.getLogger("graphflow")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(previous)


def test_unmutated_export_loads(exported_glb: bytes, tmp_path: Path) -> None:
    from nodes.scene.loader import load_scene

    path = tmp_path / "export.glb"
    path.write_bytes(exported_glb)
    scene = load_scene(path, unwrap_mode="never")
    assert len(scene.part_names) >= 3


@settings(max_examples=200, **FUZZ)
@given(mutation=export_mutation)
def test_fuzz_exported_glb(exported_glb: bytes, tmp_path_factory: pytest.TempPathFactory, quiet_scene_logs: None,
                           mutation: tuple[str, Any]) -> None:
    _fuzz_export(_fuzz_dir(tmp_path_factory), exported_glb, mutation)


@pytest.mark.slow
@settings(max_examples=2000, **FUZZ)
@given(mutation=export_mutation)
def test_fuzz_exported_glb_2000(exported_glb: bytes, tmp_path_factory: pytest.TempPathFactory, quiet_scene_logs: None,
                                mutation: tuple[str, Any]) -> None:
    _fuzz_export(_fuzz_dir(tmp_path_factory), exported_glb, mutation)


_DIRS: dict[int, Path] = {}


def _fuzz_dir(factory: pytest.TempPathFactory) -> Path:
    key = id(factory)
    if key not in _DIRS:
        _DIRS[key] = factory.mktemp("fuzz_export")
    return _DIRS[key]
