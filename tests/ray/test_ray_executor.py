"""RayExecutor on a real local Ray cluster (2 CPUs), in process."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.toys import toys

import graphflow as gf
from graphflow import Graph
from graphflow.executors.ray import RayExecutor

pytestmark = pytest.mark.usefixtures("ray_cluster")


def graph(text: str) -> Graph:
    return Graph.from_yaml(text, registry=toys)


def statuses(result_or_report: gf.RunReport) -> dict[tuple[str, str | None], str]:
    return result_or_report.statuses()


def test_mapped_items_run_concurrently() -> None:
    g = graph("""
graph: sleepy
nodes:
  xs: {type: raytoy.items}
  nap: {type: raytoy.sleep_map, params: {seconds: 1.5}, inputs: {xs: xs}}
outputs: {stamps: nap}
""")
    result = gf.run(g, cache=gf.open_cache(None, disk=False), executor=RayExecutor())
    stamps = result.outputs["stamps"]
    assert list(stamps) == ["a", "b", "c", "d"]
    spans = sorted((float(v[0]), float(v[1])) for v in stamps.values())
    overlapping = sum(1 for (s1, e1), (s2, _) in zip(spans, spans[1:]) if s2 < e1)
    assert overlapping >= 2, f"4 items on 2 CPUs should overlap pairwise, got spans {spans}"
    assert len({int(v[2]) for v in stamps.values()}) >= 2, "items ran in a single worker process"


def test_same_digests_and_bytes_as_local(tmp_path: Path) -> None:
    text = """
graph: det
nodes:
  xs: {type: raytoy.items}
  mm: {type: raytoy.noisy_matmul, params: {seed: 7, size: 192}, inputs: {xs: xs}}
  total: {type: raytoy.total, inputs: {xs: mm}}
outputs: {mm: mm, total: total}
"""
    local = gf.run(graph(text), cache=tmp_path / "local", executor="local")
    on_ray = gf.run(graph(text), cache=tmp_path / "ray", executor=RayExecutor())
    for name in ("mm", "total"):
        a, b = local.outputs[name], on_ray.outputs[name]
        if isinstance(a, gf.Keyed):
            assert list(a) == list(b)
            for k in a:
                assert a[k].numpy().tobytes() == b[k].numpy().tobytes(), (name, k)
        else:
            assert a.numpy().tobytes() == b.numpy().tobytes(), name
    keys = {(e.node, e.item): e.key for e in local.report.entries}
    assert keys == {(e.node, e.item): e.key for e in on_ray.report.entries}
    # digests drive downstream keys: identical keys of `total` mean identical digests of `mm`
    assert keys[("total", None)]


def test_failing_item_reports_like_local_and_rerun_resumes(tmp_path: Path) -> None:
    text = """
graph: failing
nodes:
  xs: {type: raytoy.items}
  f: {type: raytoy.fail_one, params: {bad_item: c}, inputs: {xs: xs}}
  total: {type: raytoy.total, inputs: {xs: f}}
outputs: {total: total}
"""
    messages = {}
    for name, execu in (("local", "local"), ("ray", RayExecutor())):
        with pytest.raises(gf.RunFailed) as err:
            gf.run(graph(text), cache=tmp_path / name, executor=execu)
        exc = err.value
        assert exc.user_error
        st = statuses(exc.report)
        assert st[("f", "c")] == "failed" and st[("total", None)] == "skipped"
        assert {st[("f", i)] for i in "abd"} == {"ran"}
        messages[name] = str(exc)
    assert messages["local"] == messages["ray"]
    assert "item c is not acceptable" in messages["ray"]
    # drop the bad item from the inputs: the finished siblings come from the cache
    fixed = graph(text)
    fixed.set_param("xs", "names", ["a", "b", "d"])
    rerun = gf.run(fixed, cache=tmp_path / "ray", executor=RayExecutor())
    st = statuses(rerun.report)
    assert {st[("f", i)] for i in "abd"} == {"cached"} and ("f", "c") not in st
    assert st[("xs", None)] == "ran" and st[("total", None)] == "ran"


def test_bug_in_node_is_not_a_user_error(tmp_path: Path) -> None:
    g = graph("""
graph: buggy
nodes:
  xs: {type: raytoy.items}
  f: {type: raytoy.fail_one, params: {bad_item: a, user: false}, inputs: {xs: xs}}
outputs: {f: f}
""")
    with pytest.raises(gf.RunFailed) as err:
        gf.run(g, cache=tmp_path, executor=RayExecutor())
    assert not err.value.user_error
    assert "ZeroDivisionError" in str(err.value) and "f[a]" in str(err.value)


def test_worker_killed_once_is_retried(tmp_path: Path) -> None:
    marker = tmp_path / "attempts.txt"
    g = graph(f"""
graph: dies
nodes:
  xs: {{type: raytoy.items, params: {{names: [a]}}}}
  total: {{type: raytoy.total, inputs: {{xs: xs}}}}
  d: {{type: raytoy.die_once, params: {{marker: "{marker}"}}, inputs: {{x: total}}}}
outputs: {{d: d}}
""")
    result = gf.run(g, cache=tmp_path / "cache", executor=RayExecutor())
    assert torch.equal(result.outputs["d"], torch.tensor([3 * 97.0 + 1]))
    assert len(marker.read_text().splitlines()) == 2


def test_worker_killed_twice_is_reported(tmp_path: Path) -> None:
    marker = tmp_path / "attempts.txt"
    g = graph(f"""
graph: dies
nodes:
  xs: {{type: raytoy.items, params: {{names: [a]}}}}
  total: {{type: raytoy.total, inputs: {{xs: xs}}}}
  d: {{type: raytoy.die_once, params: {{marker: "{marker}", always: true}}, inputs: {{x: total}}}}
outputs: {{d: d}}
""")
    with pytest.raises(gf.RunFailed) as err:
        gf.run(g, cache=tmp_path / "cache", executor=RayExecutor())
    assert not err.value.user_error
    assert "'d' failed on Ray after 1 retry" in str(err.value) and "worker" in str(err.value)
    assert len(marker.read_text().splitlines()) == 2
    assert statuses(err.value.report)[("total", None)] == "ran"


def test_threads_follow_num_cpus_under_both_executors(tmp_path: Path) -> None:
    """num_cpus=3 on a 2-CPU cluster: Ray's accounting is capped (the task still runs), torch
    runs with 3 threads under both executors, and the driver's thread count is restored."""
    g_text = """
graph: threads
nodes:
  xs: {type: raytoy.items, params: {names: [a]}}
  total: {type: raytoy.total, inputs: {xs: xs}}
  t: {type: raytoy.threads, inputs: {x: total}}
outputs: {t: t}
"""
    before = torch.get_num_threads()
    for execu in ("local", RayExecutor()):
        result = gf.run(graph(g_text), cache=gf.open_cache(None, disk=False), executor=execu)
        assert int(result.outputs["t"]) == 3
    assert torch.get_num_threads() == before
