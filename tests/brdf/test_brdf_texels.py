"""brdf's texel geometry is the atlas's one rasterization; the texture's mask flows to the PBR maps."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from graphflow.testing import make_context
from nodes.brdf.nodes import Decompose
from nodes.brdf.texels import texel_geometry
from nodes.render.uv_raster import texel_fragments
from nodes.types import Reference, TextureMap

from helpers.brdf_scenes import sphere_on_floor

SIZE = 32


@pytest.fixture(scope="module")
def scene_and_instances() -> tuple:
    return sphere_on_floor(rings=8, segments=16)


def test_texel_geometry_is_the_uv_raster_fragments_with_wrapped_uvs(scene_and_instances: tuple) -> None:
    scene, instances = scene_and_instances
    sphere = instances["sphere"].face_mask
    # Tile the sphere's UVs (whole units in u and v): the wrap rule folds them back onto the same texels.
    used = torch.unique(scene.faces[sphere])
    uvs = scene.uvs.clone()
    uvs[used] += torch.tensor([1.0, -2.0])
    tiled = dataclasses.replace(scene, uvs=uvs)
    geometry = texel_geometry(tiled, sphere, (SIZE, SIZE))
    fragments = texel_fragments(tiled, sphere, SIZE)
    assert geometry.index.numel() > 0
    assert torch.equal(geometry.mask, fragments.mask)
    assert torch.equal(geometry.mask, texel_geometry(scene, sphere, (SIZE, SIZE)).mask)
    flat = fragments.mask.reshape(-1).nonzero().flatten()
    assert torch.equal(geometry.index, flat)
    assert torch.equal(geometry.face, fragments.face_id.reshape(-1)[flat])
    assert torch.equal(geometry.barycentric, fragments.bary.reshape(-1, 3)[flat])
    assert torch.equal(geometry.position, fragments.position.reshape(-1, 3)[flat])
    assert torch.equal(geometry.normal, fragments.normal.reshape(-1, 3)[flat])
    # The tangent frame is orthonormal.
    torch.testing.assert_close((geometry.tangent * geometry.normal).sum(-1), torch.zeros(len(flat)), atol=1e-5, rtol=0)
    torch.testing.assert_close(geometry.bitangent.norm(dim=-1), torch.ones(len(flat)), atol=1e-5, rtol=0)


def _decompose(scene_and_instances: tuple, mask: torch.Tensor) -> torch.Tensor:
    scene, instances = scene_and_instances
    texture = TextureMap(image=torch.full((3, SIZE, SIZE), 0.5), mask=mask)
    node = Decompose({"steps": 0, "ao_rays": 2, "baked_shading": False})
    maps = node.run(make_context("brdf", item="sphere", seed=0), scene=scene, instances=instances["sphere"],
                    texture=texture, references=Reference(images=(torch.full((3, 8, 8), 0.5),)))
    return maps.mask


def test_pbr_mask_is_the_texture_mask(scene_and_instances: tuple) -> None:
    scene, instances = scene_and_instances
    coverage = texel_geometry(scene, instances["sphere"].face_mask, (SIZE, SIZE)).mask
    assert torch.equal(_decompose(scene_and_instances, coverage), coverage)
    # A texture that carries data on part of the islands only: the maps keep exactly that part.
    part = coverage.clone()
    part[:, : SIZE // 2] = False
    assert torch.equal(_decompose(scene_and_instances, part), part)
