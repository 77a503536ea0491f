"""Issue 22: the demo's run page (index.html, report.page) opened from file:// in headless Chromium.

No console error; the model-viewer canvas is not blank (differs from the same viewer with no model);
every image loads; clicking an instance frames it; the graph shows every node. Without a Chromium the
test fails, saying how to install one (.ci/run installs Debian's `chromium`).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from e2e_helpers import GRAPHS, SMALL, graphflow_cli, report_of
from PIL import Image

import graphflow as gf
from nodes.report.browser import INSTALL_HINT, Chromium, find_chromium

pytestmark = pytest.mark.slow
LOAD_TIMEOUT = 240  # s: software WebGL (SwiftShader) on 2 busy cores
PAGE_BUDGET = 5_000_000  # bytes of page beyond the model it carries (the limit for the demo)


def chromium_or_fail() -> str:
    exe = find_chromium()
    if exe is None:
        pytest.fail(f"the run page's browser test needs a Chromium: {INSTALL_HINT}")
    return exe


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def page_data(out: Path) -> dict:
    text = (out / "index_files" / "page_data.js").read_text()
    return json.loads(text[text.index("=") + 1:].rstrip().rstrip(";"))


def test_page_files_are_small_and_beside_the_asset(demo_small: dict[str, Path]) -> None:
    out = demo_small["out"]
    assert (out / "index.html").is_file() and (out / "report.js").is_file()
    page = [p for p in (out / "index_files").rglob("*") if p.is_file()]
    beyond_model = sum(p.stat().st_size for p in page if p.name != "asset.glb.js") + (out / "index.html").stat().st_size
    assert beyond_model < PAGE_BUDGET, beyond_model
    data = page_data(out)
    assert {i["name"] for i in data["instances"]} == {"floor", "wall_back", "wall_side", "rug", "table", "sofa", "shelf"}
    for inst in data["instances"]:  # the maps are export.materialx's PNGs, not copies
        assert all(path.startswith("asset_textures/") and (out / path).is_file() for path in inst["maps"].values())
        assert inst["swatches"] and inst["px_per_metre"] > 0 and inst["texels_per_metre"] > 0


def test_rerun_with_nothing_changed_rewrites_nothing(demo_small: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(demo_small["out"], out)  # copy2: time stamps kept
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    res = graphflow_cli("run", str(GRAPHS / "demo_room.yaml"), "--out", str(out), "--cache", str(demo_small["cache"]),
                        "-q", *SMALL, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert {(n["node"], n["status"]) for n in report_of(out) if n["node"] == "page"} == {("page", "cached")}
    changed = {p.relative_to(out).as_posix() for p, t in before.items() if p.stat().st_mtime_ns != t}
    assert changed == {"report.json", "report.js"}  # the run's own record; every output file left alone
    assert "wrote" not in res.stdout


def test_open_needs_a_page_and_hands_it_to_the_browser(demo_small: dict[str, Path], tmp_path: Path) -> None:
    res = graphflow_cli("open", str(tmp_path), cwd=tmp_path)
    assert res.returncode == 2 and "index.html" in res.stderr and "Traceback" not in res.stderr
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"  # a real command standing in for the desktop's browser ($BROWSER)
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    env = {**os.environ, "BROWSER": str(browser)}
    res = subprocess.run([sys.executable, "-m", "graphflow.cli", "open", str(demo_small["out"])], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=60)
    assert res.returncode == 0, res.stderr
    assert opened.read_text().strip() == (demo_small["out"] / "index.html").resolve().as_uri()


def _viewer_clip(browser: Chromium) -> tuple[float, float, float, float]:
    box = browser.evaluate("""(() => { const v = document.getElementById('viewer'); v.scrollIntoView();
        const r = v.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()""")
    return tuple(box)  # type: ignore[return-value]


def _check_images(browser: Chromium) -> None:
    browser.wait_for("[...document.images].every(i => i.complete)", timeout=60)
    images = browser.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert len(images) >= 7 * 5  # per instance: a swatch, albedo, normal, roughness, occlusion
    assert [src for src, width in images if not width > 0] == []


def _check_framing(browser: Chromium, out: Path) -> None:
    sofa = next(i for i in page_data(out)["instances"] if i["name"] == "sofa")
    centre = (np.array(sofa["bbox"][0]) + np.array(sofa["bbox"][1])) / 2
    target = "(() => { const t = document.getElementById('viewer').getCameraTarget(); return [t.x, t.y, t.z]; })()"
    before = np.array(browser.evaluate(target))
    browser.click('#instance-list button[data-instance="sofa"]')
    browser.wait_for(f"""(() => {{ const t = {target}; const c = {json.dumps(centre.tolist())};
        return Math.hypot(t[0] - c[0], t[1] - c[1], t[2] - c[2]) < 0.01; }})()""", timeout=60)
    assert np.abs(before - centre).max() > 0.05  # it moved: the whole room's centre is elsewhere
    assert browser.evaluate("document.querySelector('#instance-list button[data-instance=\"sofa\"]')"
                            ".getAttribute('aria-pressed')") == "true"


def _check_graph(browser: Chromium) -> None:
    expected = set(gf.Graph.from_yaml(GRAPHS / "demo_room.yaml").nodes)
    drawn = browser.evaluate("[...document.querySelectorAll('#graph g.node')].map(g => g.dataset.node)")
    assert set(drawn) == expected and len(drawn) == len(expected)
    labels = browser.evaluate("[...document.querySelectorAll('#graph g.node text')].map(t => t.textContent)")
    assert any("ran" in t for t in labels) and any(t.endswith(" s") or " s · " in t for t in labels)


def test_demo_page_in_headless_chromium(demo_small: dict[str, Path]) -> None:
    exe = chromium_or_fail()
    out = demo_small["out"]
    with Chromium(exe, width=1280, height=900, timeout=LOAD_TIMEOUT) as browser:
        browser.goto((out / "index.html").resolve().as_uri())
        browser.wait_for("window.graphflowPage && graphflowPage.ready && graphflowPage.modelLoaded"
                         " && document.getElementById('viewer').modelIsVisible", timeout=LOAD_TIMEOUT)
        _check_images(browser)
        _check_graph(browser)
        clip = _viewer_clip(browser)
        browser.evaluate("new Promise(r => setTimeout(r, 1500))")  # a few frames after the first one
        with_model = pixels(browser.screenshot(clip))
        _check_framing(browser, out)
        # the same viewer with no model in its place: what a blank canvas looks like here
        browser.evaluate("""(() => { const v = document.getElementById('viewer'), blank = v.cloneNode(false);
            blank.removeAttribute('src'); v.style.display = 'none'; v.after(blank); blank.id = 'viewer';
            v.id = 'loaded-viewer'; return new Promise(r => setTimeout(r, 3000)); })()""")
        empty = pixels(browser.screenshot(_viewer_clip(browser)))
        assert browser.log.errors == [], browser.log.errors
    differs = np.abs(with_model - empty).max(axis=2) > 24
    assert with_model.shape == empty.shape and differs.mean() > 0.05, differs.mean()
