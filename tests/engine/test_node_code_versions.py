"""Keys stay true to code: a node type whose code changed has a new version, or says its outputs did not change.

A cache key holds a node's type and version, not its code. Two ways keep a key true to the code:
derive a fingerprint of the code into the key (as Hamilton does), or check here that a change of the
code comes with a version bump. This is the second, for three reasons:
- a key with the code in it changes on every refactor, so moving a helper (as splitting a module
  does) would throw away every cached result, hours of distillation, though no output changed; here
  the author of a change says which it is (bump, or `--same-outputs` for a refactor);
- `graphflow` never imports `nodes`, and what a node runs is a fact of the node layer (its imports,
  the implementations its registries resolve by name), so the engine could only hash the node's own
  module and would miss the shared helpers that issue 24 is about (`fill_atlas_gutter`, used by
  brdf, distill and export);
- the lock's diff shows a reviewer which node types a change touches.

The code of a node type is its module plus every module of `nodes/` it imports, transitively
(`helpers.node_code`); comments and docstrings do not count. After changing it: bump `version` of the
node types whose outputs can change, then `python -m tests.helpers.node_code --update`.
"""
from __future__ import annotations

from helpers.imports import import_graph
from helpers.node_code import NODES, NodeCode, code_closure, current_node_code, problems, read_lock


def test_every_node_types_code_matches_its_version_in_the_lock() -> None:
    nodes, modules = current_node_code()
    assert problems(read_lock(), nodes, modules) == []


def test_a_changed_shared_helper_without_a_bump_is_named() -> None:
    # fill_atlas_gutter (nodes.render.uv_raster) is run by export.gltf through its writer: a change to it
    # must fail the check for that node type and name the module.
    nodes, modules = current_node_code()
    assert "nodes.render.uv_raster" in nodes["export.gltf"].modules
    lock = {"nodes": {n: {"version": c.version, "fingerprint": c.fingerprint} for n, c in nodes.items()},
            "modules": dict(modules)}
    edited = dict(modules, **{"nodes.render.uv_raster": "0" * 16})
    changed = {n: NodeCode(c.version, c.modules, "f" * 16 if "nodes.render.uv_raster" in c.modules else c.fingerprint)
               for n, c in nodes.items()}
    found = problems(lock, changed, edited)
    assert any(line.startswith("export.gltf: its code changed (nodes.render.uv_raster)") for line in found)
    bumped = dict(changed, **{"export.gltf": NodeCode(changed["export.gltf"].version + 1,
                                                      changed["export.gltf"].modules, "f" * 16)})
    assert not any("export.gltf: its code changed" in line for line in problems(lock, bumped, edited))


def test_a_registry_user_runs_the_registered_implementations() -> None:
    # distill resolves priors by name: the sd prior's code is part of what its nodes run.
    graph = import_graph(NODES, "nodes")
    assert "nodes.sd.prior" in code_closure(graph, "nodes.distill.nodes")
    assert "nodes.sd.prior" not in code_closure(graph, "nodes.scene.nodes")
