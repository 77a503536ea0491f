"""docs/run_page.png: the demo's run page (index.html) as headless Chromium shows it from file://.

    graphflow run graphs/demo_room.yaml --out out/demo      # a fresh cache shows every node as 'ran'
    python docs/make_run_page_figure.py out/demo [--height 1750]

The screenshot is the page's top: the header with the links, the viewer, the graph with its timings and
the first instances' maps at real size (the page goes on with every instance).
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image

from nodes.report.browser import Chromium

DOCS = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="the --out DIR of a demo run")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1750)
    args = parser.parse_args()
    with Chromium(width=args.width, height=args.height, timeout=300) as browser:
        browser.goto((args.out / "index.html").resolve().as_uri())
        browser.wait_for("window.graphflowPage && graphflowPage.modelLoaded"
                         " && document.getElementById('viewer').modelIsVisible", timeout=300)
        browser.wait_for("[...document.images].every(i => i.complete)", timeout=60)
        browser.evaluate("new Promise(r => setTimeout(r, 2000))")
        png = browser.screenshot()
        if browser.log.errors:
            raise SystemExit(f"the page logged errors: {browser.log.errors}")
    image = Image.open(io.BytesIO(png)).convert("RGB")
    target = DOCS / "run_page.png"
    image.save(target, optimize=True)
    print(f"wrote {target} ({target.stat().st_size // 1024} KiB, {image.size[0]}x{image.size[1]})")


if __name__ == "__main__":
    main()
