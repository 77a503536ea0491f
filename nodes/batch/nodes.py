"""Nodes of the batch family: `io.scene_folder`, `batch.texture_scene`, `batch.archive`.

Thin shells over `jobs` (finding scenes and their references files),
`pipeline` (running a per-scene graph inside one mapped item) and `archive`.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from graphflow import Context, FileBlob, Keyed, Node, Resources, UserError, register

from .archive import zip_blobs
from .jobs import SCENE_PATTERNS, SceneJob, scan_scene_folder
from .pipeline import load_pipeline, pipeline_versions, run_pipeline


@register
class SceneFolder(Node):
    """The scenes of a folder (`*.glb`, `*.gltf`, `*.obj`; not recursive) as a keyed collection of
    jobs named by file stem, each paired with `<references>/<stem>.yaml` when a references folder
    is given. Always re-scans (cheap); a job's digest is its files' content, so only scenes
    whose files changed re-run downstream."""

    name = "io.scene_folder"
    version = 1
    cache = "never"  # jobs hold paths: never serve them from a cache made when files lived elsewhere

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        patterns: list[str] = Field(list(SCENE_PATTERNS), min_length=1, description="file globs of scenes")
        require_references: bool = Field(True, description="error when a scene has no references file "
                                         "(false: such scenes bind from their material hints)")
        limit: int | None = Field(None, ge=1, description="only the first N scenes by name (for trials)")

    def run(self, ctx: Context, folder: Path, references: Path | None = None) -> Keyed[SceneJob]:
        p = self.params
        jobs = scan_scene_folder(Path(folder), Path(references) if references is not None else None,
                                 tuple(p.patterns), p.require_references, p.limit)
        ctx.log.info("%d scenes in %s", len(jobs), folder)
        return jobs


@register
class TextureScene(Node):
    """Runs the per-scene `pipeline` graph (inputs `scene` and `references`) on each scene job: one
    mapped item, cached and distributed (one Ray task) per scene. `set` overrides the
    pipeline's params like the CLI's --set (`NODE.params.KEY=VALUE`). The pipeline's first
    file output (e.g. the .glb) is the item's result."""

    name = "batch.texture_scene"
    version = 1
    map_over = "jobs"
    resources = Resources(num_cpus=1, memory_mb=2048)

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        set: list[str] = Field(default_factory=list, description="pipeline overrides NODE.params.KEY=VALUE")
        output: str | None = Field(None, description="which pipeline output to keep (default: the first file)")

    def nested_versions(self, port: str, path: Path) -> dict[str, int]:
        """The versions of the pipeline's node types belong in each scene's key."""
        return pipeline_versions(path, list(self.params.set)) if port == "pipeline" else {}

    def run(self, ctx: Context, jobs: SceneJob, pipeline: Path) -> FileBlob:
        graph = load_pipeline(Path(pipeline), list(self.params.set))
        blobs = run_pipeline(graph, jobs, str(ctx.device), ctx.log)
        wanted = self.params.output
        if wanted is None:
            return next(iter(blobs.values()))
        if wanted not in blobs:
            raise UserError(f"pipeline has no file output '{wanted}'", param="output",
                            hint=f"file outputs: {', '.join(blobs)}")
        return blobs[wanted]


@register
class ArchiveFiles(Node):
    """All per-scene files in one deterministic .zip (`<scene><suffix>` entries, sorted)."""

    name = "batch.archive"
    version = 1

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        folder: str = Field("", description="folder prefix inside the zip, e.g. 'assets/'")

    def run(self, ctx: Context, files: Keyed[FileBlob]) -> FileBlob:
        data = zip_blobs(files, self.params.folder)
        return FileBlob(data=data, suffix=".zip",
                        summary={"files": {n: f.summary for n, f in files.items()}, "count": len(files)})
