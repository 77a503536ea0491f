"""graphs/texture_scene_sd.yaml on CPU with a tiny random Stable Diffusion pipeline (no download)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from e2e_helpers import GRAPHS, graphflow_cli, ran


BOX = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "Box" / "Box.glb"

TINY = [
    "--set", "views.params.count=2", "--set", "views.params.resolution=32", "--set", "views.params.texels_per_metre=0",
    "--set", "semantic.params.steps=2", "--set", "semantic.params.texture_size=32",
    "--set", "project.params.texels_per_metre=8", "--set", "project.params.min_size=16",
    "--set", "project.params.max_size=32",
    "--set", "pixel.params.steps=1", "--set", "superres.params.steps=1",
    "--set", "brdf.params.steps=1", "--set", "brdf.params.ao_rays=4", "--set", "preview.params.resolution=64",
]


@pytest.fixture(scope="module")
def box_and_refs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if not BOX.exists():
        pytest.skip(f"shared asset missing: {BOX}")
    from PIL import Image

    root = tmp_path_factory.mktemp("sd")
    g = torch.Generator().manual_seed(0)
    pixels = (torch.rand(64, 64, 3, generator=g) * 255).to(torch.uint8).numpy()
    Image.fromarray(pixels).save(root / "noise.png")
    refs = root / "refs.yaml"
    refs.write_text("instances:\n  Mesh: {images: [noise.png], material: plastic, prompt: a red plastic box}\n")
    return BOX, refs


@pytest.mark.slow
def test_sd_graph_runs_on_tiny_weights(box_and_refs: tuple[Path, Path], tmp_path: Path) -> None:
    from nodes.sd.tiny import build_tiny_sd

    weights = tmp_path / "tiny_sd"
    build_tiny_sd(weights)
    scene, refs = box_and_refs
    out = tmp_path / "out"
    res = graphflow_cli("run", str(GRAPHS / "texture_scene_sd.yaml"), "--input", f"scene={scene}",
                        "--input", f"references={refs}", "--input", f"weights={weights}", "--out", str(out),
                        "--cache", str(tmp_path / "cache"), "-q", *TINY, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (out / "asset.glb").exists() and {"semantic[Mesh]", "pixel[Mesh]"} <= ran(out)


def test_sd_graph_without_weights_is_a_clear_user_error(box_and_refs: tuple[Path, Path], tmp_path: Path) -> None:
    scene, refs = box_and_refs
    missing = tmp_path / "no_such_weights"
    res = graphflow_cli("run", str(GRAPHS / "texture_scene_sd.yaml"), "--input", f"scene={scene}",
                        "--input", f"references={refs}", "--input", f"weights={missing}",
                        "--cache", str(tmp_path / "cache"), "-q", *TINY, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "no_such_weights" in res.stderr and "semantic" in res.stderr
    res = graphflow_cli("run", str(GRAPHS / "texture_scene_sd.yaml"), "--input", f"scene={scene}",
                        "--input", f"references={refs}", "--cache", str(tmp_path / "cache"), "-q", *TINY,
                        cwd=tmp_path)
    assert res.returncode == 2 and "weights" in res.stderr and "Traceback" not in res.stderr, res.stderr
