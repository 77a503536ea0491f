"""Running a per-scene pipeline graph (a YAML graph with a `scene` and a `references` input)
inside one mapped item of a batch graph.

This is how a subgraph is mapped over scenes: the batch node is the unit the
outer scheduler caches and distributes (one Ray task per scene), and inside
it a private scheduler runs the pipeline graph with the local executor and
a memory-only cache. Limits: the inner nodes are cached only as a whole
(per scene, by the batch node's key), not node by node; inner progress is
not forwarded; inner nodes are not spread over several workers.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import graphflow as gf
from graphflow import FileBlob, Graph, RunFailed, UserError
from graphflow.errors import GraphInvalid

from .jobs import SceneJob


def load_pipeline(path: Path, overrides: list[str]) -> Graph:
    """The per-scene graph with `NODE.params.KEY=VALUE` overrides applied, checked."""
    if path is None or not Path(path).is_file():
        raise UserError(f"pipeline graph '{path}' does not exist", file=str(path), param="pipeline",
                        hint="pass --input pipeline=GRAPH.yaml (a graph with `scene` and `references` inputs)")
    try:
        graph = Graph.from_yaml(Path(path)).apply_overrides(overrides).check()
    except GraphInvalid as exc:
        raise UserError(f"pipeline graph '{path}' is invalid: {exc}", file=str(path)) from exc
    if "scene" not in graph.inputs:
        raise UserError(f"pipeline graph '{path}' has no `scene` input", file=str(path),
                        hint="declare inputs: {scene: {type: path}, references: {type: path, default: null}}")
    if not any(True for _ in graph.outputs):
        raise UserError(f"pipeline graph '{path}' has no outputs", file=str(path))
    return graph


def run_pipeline(graph: Graph, job: SceneJob, device: str, log: logging.Logger) -> dict[str, FileBlob]:
    """Run the pipeline on one scene; its FileBlob outputs by output name."""
    inputs: dict[str, Any] = {"scene": job.scene}
    if "references" in graph.inputs:
        inputs["references"] = job.references
    try:
        result = gf.run(graph, inputs, cache=gf.open_cache(None, disk=False), executor="local", device=device)
    except RunFailed as exc:
        if exc.user_error:
            raise UserError(f"scene '{job.name}': {exc}", file=str(job.scene)) from exc
        raise RuntimeError(f"scene '{job.name}': {exc}") from exc
    blobs = {name: value for name, value in result.outputs.items() if isinstance(value, FileBlob)}
    if not blobs:
        raise UserError(f"pipeline graph produced no file outputs for scene '{job.name}'",
                        hint="its outputs must include a file (e.g. export.gltf)")
    log.info("scene %s: %s", job.name, result.report.summary())
    return blobs


def pipeline_versions(path: Path, overrides: list[str]) -> dict[str, int]:
    """`{node type: version}` of every node the pipeline graph runs: part of the batch node's key,
    so bumping a node type's version re-runs the scenes (their outputs may change). An unreadable
    or invalid pipeline gives {}: the run itself then reports it, with the usual message."""
    try:
        graph = load_pipeline(path, overrides)
    except UserError:
        return {}
    return {spec.type: graph.node_class(nid).version for nid, spec in sorted(graph.nodes.items())}
