"""Where two triplanar projections meet (issue 25): a min-error cut, never a half-and-half mix."""
from __future__ import annotations

import torch

from nodes.quality.shapes import shapes_references, shapes_scene
from nodes.scene.segment import segment_scene
from nodes.texture.charts import build_charts
from nodes.texture.cuts import choose_by_cut
from nodes.texture.project import ProjectionSettings, covered_texels, project_instance
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
