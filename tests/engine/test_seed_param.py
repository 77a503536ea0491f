"""The reserved `seed` param (graphflow/node.py): checked at load, and the one source of ctx.seed."""
from __future__ import annotations

import pytest
from helpers.toys import NoisyParams, toys

from graphflow import Graph, GraphInvalid
from graphflow.node import NoParams, params_seed
from graphflow.tasks import derive_seed

NOISY = """
graph: g
nodes:
  c: {{type: toy.const, params: {{value: 3}}}}
  n: {{type: raytoy.noisy_matmul, params: {{seed: {seed}}}, inputs: {{xs: c}}}}
outputs: {{out: n}}
"""


@pytest.mark.parametrize("seed", ["-1", "'x'", "1.5"])
def test_a_bad_seed_is_a_load_error_naming_node_and_param(seed: str) -> None:
    with pytest.raises(GraphInvalid) as info:
        Graph.from_yaml(NOISY.format(seed=seed), registry=toys).check()
    assert any(p.node == "n" and "seed" in p.message for p in info.value.problems)


def test_params_seed_is_the_field_or_zero() -> None:
    assert params_seed(NoisyParams(seed=7)) == 7
    assert params_seed(NoParams()) == 0  # a node without a seed runs with derive_seed(0, item)
    with pytest.raises(ValueError, match="int >= 0"):
        params_seed(NoisyParams(seed=-2))
    assert derive_seed(params_seed(NoParams()), "a") == derive_seed(0, "a") != derive_seed(1, "a")
