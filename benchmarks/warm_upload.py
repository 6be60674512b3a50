"""Warm upload in a real browser: from the upload of a 768x576 photo to its heatmap drawn.

One ``python -m sensitivity serve`` server; a first upload warms it (model loaded, gradient
traced, Plotly's JavaScript cached by the browser). Then each repeat opens a new page (a new
session, as a new visitor would), waits until it has loaded, uploads a fresh variant of dog.jpg
(one pixel of the centred square the network sees nudged, so the gradient is computed anew)
and times the upload to its section, prediction and top-k mask drawn (the last of the three
maps). Median of the repeats; figures in ``test-artifacts/warm-upload.json``.

    python benchmarks/warm_upload.py --repeats 9
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.browser_support import (  # noqa: E402
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    image_variant,
    require_chromium,
    streamlit_server,
    upload_and_wait,
)
from tests.conftest import PHOTOS_DIR  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    require_chromium()
    from playwright.sync_api import sync_playwright

    photo = np.asarray(Image.open(PHOTOS_DIR / "dog.jpg").convert("RGB"))
    seconds: list[float] = []
    with streamlit_server("warm-upload") as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for repeat in range(args.repeats + 1):  # the first is the warm-up
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.goto(server.url)
            # a visitor picks a file once the page is there: its guide chart drawn, no request
            # pending
            page.get_by_text("Upload images").first.wait_for(timeout=300_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=300_000)
            page.wait_for_load_state("networkidle")
            time.sleep(1.0)
            variant = image_variant(photo, repeat, "JPEG")
            elapsed = upload_and_wait(page, f"dog-{repeat}.jpg", variant)
            page.close()
            if repeat:
                seconds.append(elapsed)
            print(f"{'warm-up' if not repeat else f'repeat {repeat}'}: {elapsed:.2f} s",
                  flush=True)
        browser.close()
    report = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python "
                   f"{platform.python_version()}",
        "photo": "dog.jpg variants, 768x576",
        "repeats_s": [round(s, 3) for s in seconds],
        "median_upload_to_heatmap_s": round(statistics.median(seconds), 3),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "warm-upload.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
