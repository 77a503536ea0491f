"""The component registries (issue 16 item 3): names resolve, unknown names list the known ones, and the
graph-level params that name a component still fail at load, not at run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
import torch

from graphflow import Graph, GraphInvalid, UserError
from nodes.components.priors import SCORE_PRIORS, SUPERRES_PRIORS, ScorePriorConfig, SuperResPriorConfig
from nodes.components.raster import RASTERIZERS, BackendName, Rasterizer
from nodes.components.registry import ComponentRegistry
from nodes.distill.closed_form import ClosedFormPrior
from nodes.distill.nodes import PriorName, SuperResParams
from nodes.distill.superres import ClosedFormSuperResPrior
from nodes.priors import score_prior, superres_prior
from nodes.render.raster import get_rasterizer
from nodes.types import DomainAdapter, Reference

GRAPH = Path(__file__).resolve().parents[2] / "graphs" / "texture_scene.yaml"


def _swatch() -> torch.Tensor:
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))


def _score_config(**changes: object) -> ScorePriorConfig:
    image = _swatch()
    config = ScorePriorConfig(instance="rug", reference=Reference(images=(image,)), images=[image], device="cpu",
                              seed=0, bank_size=64)
    return ScorePriorConfig(**{**config.__dict__, **changes})


def test_registry_lists_known_names_on_an_unknown_one() -> None:
    registry: ComponentRegistry = ComponentRegistry("widget", param="kind")
    registry.register("b")(lambda: 1)
    registry.register("a")(lambda: 2)
    assert registry.names() == ("a", "b") and "a" in registry
    with pytest.raises(UserError) as info:
        registry.get("c")
    assert info.value.param == "kind" and info.value.hint == "use one of a, b"
    with pytest.raises(ValueError, match="twice"):
        registry.register("a")(lambda: 3)


def test_score_priors_resolve_and_refuse_what_they_cannot_do() -> None:
    assert SCORE_PRIORS.names() == ("closed_form", "stable_diffusion")
    assert set(get_args(PriorName)) == set(SCORE_PRIORS.names())  # the param's Literal validates at load
    assert isinstance(score_prior("closed_form", _score_config()), ClosedFormPrior)
    with pytest.raises(UserError) as info:
        score_prior("closed_form", _score_config(domain="real"))
    assert info.value.param == "domain" and "cannot shift domains" in info.value.message
    with pytest.raises(UserError, match="cannot shift domains"):
        score_prior("closed_form", _score_config(domain_adapter=DomainAdapter(shifter={})))
    with pytest.raises(UserError) as info:
        score_prior("stable_diffusion", _score_config())  # no weights: said before anything loads
    assert info.value.param == "weights"
    with pytest.raises(UserError) as info:
        score_prior("dreamfusion", _score_config())
    assert info.value.param == "prior" and "closed_form, stable_diffusion" in (info.value.hint or "")


def test_superres_priors_resolve() -> None:
    assert SUPERRES_PRIORS.names() == ("closed_form", "stable_diffusion")
    assert set(get_args(SuperResParams.model_fields["prior"].annotation)) == set(SUPERRES_PRIORS.names())
    config = SuperResPriorConfig(images=[_swatch()], factor=2, device="cpu", seed=0, bank_size=64)
    assert isinstance(superres_prior("closed_form", config), ClosedFormSuperResPrior)
    with pytest.raises(UserError) as info:
        superres_prior("stable_diffusion", config)
    assert info.value.param == "weights"
    with pytest.raises(UserError) as info:
        superres_prior("bicubic", config)
    assert info.value.param == "prior" and "closed_form, stable_diffusion" in (info.value.hint or "")


def test_rasterizers_resolve() -> None:
    assert RASTERIZERS.names() == ("auto", "embree", "nvdiffrast", "torch")
    assert set(get_args(BackendName)) == set(RASTERIZERS.names())  # views.sample's backend param
    for name in ("auto", "embree", "torch"):
        assert isinstance(get_rasterizer(name), Rasterizer)
    with pytest.raises(UserError) as info:
        get_rasterizer("opengl")  # type: ignore[arg-type]
    assert info.value.param == "backend" and info.value.hint == "use one of auto, embree, nvdiffrast, torch"


@pytest.mark.parametrize(("before", "after", "node"), [
    ("{prior: closed_form, method: vsd", "{prior: dreamfusion, method: vsd", "semantic"),
    ("{prior: closed_form, factor: 2", "{prior: bicubic, factor: 2", "superres"),
    ("{resolution: 128, isolate: true,", "{backend: opengl, resolution: 128, isolate: true,", "views"),
])
def test_graph_params_naming_a_component_fail_at_load(before: str, after: str, node: str) -> None:
    text = GRAPH.read_text()
    assert before in text
    Graph.from_yaml(text).check()
    with pytest.raises(GraphInvalid) as info:
        Graph.from_yaml(text.replace(before, after)).check()
    assert [p.node for p in info.value.problems] == [node]


def test_stable_diffusion_factories_build_from_their_config(tmp_path: Path) -> None:
    """The SD factories read weights, instance, seed and domain from the config (no signature probing)."""
    pytest.importorskip("diffusers")
    pytest.importorskip("peft")
    from nodes.sd.prior import StableDiffusionPrior
    from nodes.sd.tiny import build_tiny_sd, build_tiny_upscaler
    from nodes.sd.upscaler import StableDiffusionUpscalerPrior

    weights = str(build_tiny_sd(tmp_path / "sd", seed=0))
    prior = score_prior("stable_diffusion", _score_config(weights=weights))
    assert isinstance(prior, StableDiffusionPrior) and list(prior.references) == ["rug"]
    with pytest.raises(UserError, match="needs a trained domain adapter") as info:
        score_prior("stable_diffusion", _score_config(weights=weights, domain="synthetic"))
    assert info.value.param == "domain"
    config = SuperResPriorConfig(images=[_swatch()], factor=2, device="cpu", seed=0,
                                 weights=str(build_tiny_upscaler(tmp_path / "x4", seed=0)))
    assert isinstance(superres_prior("stable_diffusion", config), StableDiffusionUpscalerPrior)


def test_a_node_package_alone_resolves_a_prior_another_package_registers() -> None:
    # What a Ray worker does: it imports only the node's module (nodes.distill.nodes), never the catalog.
    # The sd prior is not imported by distill; asking for it by name loads the node plugins, which register it.
    script = ("import sys, nodes.distill.nodes\n"
              "from nodes.components.priors import SCORE_PRIORS\n"
              "before = 'stable_diffusion' in SCORE_PRIORS._factories\n"
              "factory = SCORE_PRIORS.get('stable_diffusion')\n"
              "print(before, factory.__module__, 'nodes.catalog' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["False", "nodes.sd.prior", "True"]
