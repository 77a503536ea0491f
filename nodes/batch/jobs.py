"""Scene jobs: one scene file plus its references file, found in folders.

A `SceneJob` is the mapped item of a batch graph. Its digest is the content
of the scene (and the buffers/images it names) and of its references file
(and the images that names), never the paths: a catalogue that moves keeps
its cache, and editing one scene or one reference re-runs only that scene.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from graphflow import Keyed, UserError
from graphflow.fingerprint import digest_bytes, fingerprint
from graphflow.keys import path_digest
from graphflow.values import TensorData, value_type
from nodes.scene.gltf import gltf_file_dependencies
from nodes.scene.references import references_file_dependencies

SCENE_PATTERNS = ("*.glb", "*.gltf", "*.obj")
REFERENCE_SUFFIXES = (".yaml", ".yml")


@value_type
@dataclass(frozen=True)
class SceneJob(TensorData):
    name: str  # the scene file's stem: the item name everywhere downstream
    scene: Path
    references: Path | None
    content: str  # digest of every byte the job reads


@fingerprint.register
def _(job: SceneJob) -> str:
    return digest_bytes(b"scene-job", job.content.encode())


def job_content(scene: Path, references: Path | None) -> str:
    parts = [path_digest(scene, gltf_file_dependencies(scene) if scene.suffix.lower() in (".gltf", ".glb") else [])]
    if references is not None:
        parts.append(path_digest(references, references_file_dependencies(references)))
    return digest_bytes(b"job", *(p.encode() for p in parts))


def scan_scene_folder(folder: Path, references: Path | None, patterns: tuple[str, ...] = SCENE_PATTERNS,
                      require_references: bool = True, limit: int | None = None) -> Keyed[SceneJob]:
    """Scene files of `folder` matching `patterns` (not recursive), sorted by name, each paired with
    `references/<stem>.yaml` (or `.yml`). Two scenes with the same stem are an error (the stem
    is the item name)."""
    if not folder.is_dir():
        raise UserError(f"scene folder '{folder}' does not exist or is not a folder", file=str(folder),
                        param="scenes", hint="pass --input scenes=DIR with .glb/.gltf/.obj files")
    if references is not None and not references.is_dir():
        raise UserError(f"references folder '{references}' does not exist or is not a folder",
                        file=str(references), param="references",
                        hint="pass --input references=DIR holding one <scene name>.yaml per scene")
    found: dict[str, Path] = {}
    for pattern in patterns:
        for path in folder.glob(pattern):
            if not path.is_file():
                continue
            if path.stem in found and found[path.stem] != path:
                raise UserError(f"two scenes are named '{path.stem}': {found[path.stem].name} and {path.name}",
                                file=str(path), hint="rename one: the file stem names the scene's outputs")
            found[path.stem] = path
    if not found:
        raise UserError(f"no scene files matching {', '.join(patterns)} in '{folder}'", file=str(folder),
                        param="patterns", hint="put .glb/.gltf/.obj files there or change params.patterns")
    names = sorted(found)[:limit] if limit else sorted(found)
    jobs: dict[str, SceneJob] = {}
    for name in names:
        refs = _references_file(references, name) if references is not None else None
        if refs is None and references is not None and require_references:
            raise UserError(f"scene '{name}' has no references file in '{references}'",
                            file=str(references / f"{name}.yaml"), param="require_references",
                            hint=f"add {name}.yaml (see refs.bind for the format) or set "
                                 "params.require_references=false to texture it from its material hints")
        jobs[name] = SceneJob(name=name, scene=found[name].resolve(), references=refs,
                              content=job_content(found[name], refs))
    return Keyed(jobs)


def _references_file(folder: Path, name: str) -> Path | None:
    for suffix in REFERENCE_SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate.resolve()
    return None
