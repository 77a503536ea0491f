"""Where patterns meet (issue 25): a min-error cut, never a cross-fade; creases left sharp."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from nodes.scene.segment import segment_scene
from nodes.texture.charts import build_charts
from nodes.texture.cuts import choose_by_cut
from nodes.texture.project import ProjectionSettings, covered_texels, project_instance
from nodes.quality.shapes import shapes_references, shapes_scene
from nodes.texture.swatch import Swatch, sample_along_axis

SETTINGS = ProjectionSettings(texels_per_metre=96)


def test_the_cut_runs_where_the_two_patterns_agree() -> None:
    """A 12 x 30 band: left edge forced to `first`, right edge to `second`; the two agree only in column 21."""
    side, rows, cols = 64, 12, 30
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    index = (r * side + c).flatten()
    column = c.flatten()
    first = torch.zeros(len(index), 3)
    second = torch.ones(len(index), 3)
    first[column == 21] = second[column == 21] = 0.5
    forced = torch.where(column == 0, 0, torch.where(column == cols - 1, 1, -1))
    take = choose_by_cut(side, index, first, second, forced, torch.zeros(len(index), dtype=torch.long))
    assert torch.equal(take, column > 21) or torch.equal(take, column >= 21)


def test_groups_are_separate_problems() -> None:
    side = 16
    index = torch.arange(8)  # one row of 8 texels: two groups of 4
    first, second = torch.zeros(8, 3), torch.ones(8, 3)
    forced = torch.tensor([0, -1, -1, -1, 1, -1, -1, -1])
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    take = choose_by_cut(side, index, first, second, forced, group)
    assert take.tolist() == [False] * 4 + [True] * 4


def test_a_triplanar_sphere_shows_one_projection_per_texel() -> None:
    """Every texel of the dotted ball (a triplanar chart) is one axis's projection of the swatch, never a mix."""
    scene = shapes_scene()
    instance = segment_scene(scene)["ball"]
    reference = shapes_references()["ball"]
    laid = project_instance(scene, instance.face_mask, reference, SETTINGS)
    faces = scene.faces[instance.face_mask].numpy()
    charts = build_charts(scene.positions.numpy(), scene.normals.numpy(), scene.uvs.numpy(), faces)
    side = laid.image.shape[-1]
    texels, _ = covered_texels(scene, instance.face_mask, side, charts)
    swatch = Swatch.at_density(reference.images[0], reference.size, SETTINGS.texels_per_metre)
    got = laid.image.reshape(3, -1)[:, texels.index].T
    candidates = torch.stack([sample_along_axis(swatch, texels.position.float(), texels.normal.float(),
                                                torch.full((len(got),), axis)) for axis in range(3)])
    nearest = (candidates - got[None]).abs().amax(-1).min(0).values
    assert float(nearest.max()) < 1e-5
    # A cross-fade would leave many texels between two projections; a sharp dominant-axis switch, dots cut in half
    # where the axes swap. The cut keeps whole dots: far fewer texels than the band holds take the minority axis.
    assert laid.info["triplanar_charts"] == 1


def test_a_disc_keeps_its_own_pattern_at_its_rim() -> None:
    """The stool's cap meets its side at 90 degrees: the side (the lower chart) takes the cap's pattern just over
    the rim, so the cap's texels are exactly the unblended projection (no wedges); the side's wrap seam (a
    smooth seam inside one chart) and its rim change a few texels."""
    scene = shapes_scene()
    instance = segment_scene(scene)["stool"]
    reference = shapes_references()["stool"]
    cut = project_instance(scene, instance.face_mask, reference, SETTINGS)
    plain = project_instance(scene, instance.face_mask, reference, dataclasses.replace(SETTINGS, blend_width=0.0))
    faces = scene.faces[instance.face_mask].numpy()
    charts = build_charts(scene.positions.numpy(), scene.normals.numpy(), scene.uvs.numpy(), faces)
    side = cut.image.shape[-1]
    texels, mask = covered_texels(scene, instance.face_mask, side, charts)
    on_cap = np.abs(scene.normals.numpy()[faces[texels.face.numpy(), 0], 1]) > 0.9
    cap = texels.index[torch.from_numpy(on_cap)]
    assert torch.allclose(cut.image.reshape(3, -1)[:, cap], plain.image.reshape(3, -1)[:, cap], atol=1e-5)
    changed = (cut.image - plain.image).abs().amax(0)[mask]
    assert 0 < float((changed > 1e-4).float().mean()) < 0.2
