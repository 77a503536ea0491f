from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from helpers.cli import TESTS, CliRunner

RAY_CPUS = 2


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """One local Ray cluster (2 CPUs) for every test of this folder; in-process RayExecutors join
    it, CLI subprocesses connect to the address it yields (`--ray-address`)."""
    ray = pytest.importorskip("ray")
    from graphflow.executors.ray import _driver_pythonpath

    # in the raylet's environment, so workers of other drivers (CLI subprocesses) import the toys too
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    context = ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=256 * 2**20,
             runtime_env={"env_vars": {"PYTHONPATH": _driver_pythonpath()}})
    try:
        _warm_up(ray)
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


def _warm_up(ray) -> None:  # noqa: ANN001
    """Start one worker per CPU with torch and graphflow imported, so timing tests measure
    task overlap rather than worker start-up (seconds each on a loaded machine)."""

    @ray.remote(num_cpus=1)
    def ready() -> int:
        import time

        import graphflow.tasks  # noqa: F401 - the import is the point

        time.sleep(1.0)  # hold the CPU so the next call needs another worker
        return os.getpid()

    ray.get([ready.remote() for _ in range(RAY_CPUS)])


@pytest.fixture
def cli(cli_factory: Callable[..., CliRunner]) -> CliRunner:
    """The root CLI runner, with the longer timeout that Ray start-up needs on 2 loaded cores."""
    return cli_factory(timeout=240)
