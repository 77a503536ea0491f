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

from graphflow import FileBlob, Graph, UserError
from graphflow.api import open_cache
from graphflow.errors import GraphInvalid
from graphflow.executors import LocalExecutor
from graphflow.scheduler import RunFailed, Scheduler

from .jobs import SceneJob


def load_pipeline(path: Path, overrides: list[str]) -> Graph:
    """The per-scene graph with `NODE.params.KEY=VALUE` overrides applied, checked."""
    from graphflow.cli import apply_overrides

    if path is None or not Path(path).is_file():
        raise UserError(f"pipeline graph '{path}' does not exist", file=str(path), param="pipeline",
                        hint="pass --input pipeline=GRAPH.yaml (a graph with `scene` and `references` inputs)")
    try:
        graph = Graph.from_yaml(Path(path))
        apply_overrides(graph, overrides)
        graph.check()
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
    scheduler = Scheduler(graph, open_cache(None, disk=False), LocalExecutor(), device=device, show_progress=False)
    try:
        result = scheduler.run(inputs)
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
