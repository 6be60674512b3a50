"""Warm upload in a real browser: from the upload of a 768x576 photo to its heatmap drawn.

One ``python -m sensitivity serve`` server; a first upload warms it (model loaded, gradient
traced, Plotly's JavaScript cached by the browser). Then each repeat opens a new page (a new
session, as a new visitor would), waits until it has loaded, uploads a fresh variant of dog.jpg
(one pixel of the centred square the network sees nudged, so the gradient is computed anew)
and times the upload to its section, prediction and top-k mask drawn (the last of the three
maps). Median of the repeats; figures in ``test-artifacts/warm-upload.json`` (or ``--out``).

    python benchmarks/warm_upload.py --repeats 9

The test suite runs it with ``--repeats 1 --warm-ups 0`` on the server its browser test has
started and warmed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sensitivity.cli.args import positive_int  # noqa: E402
from tests.browser_support import (  # noqa: E402
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    Server,
    image_variant,
    require_chromium,
    streamlit_server,
    upload_and_wait,
)
from tests.conftest import PHOTOS_DIR  # noqa: E402


def upload_seconds(url: str, repeats: int, warm_ups: int = 1) -> list[float]:
    """Seconds from each upload to its heatmap drawn, ``repeats`` of them, on the dashboard at
    ``url``, after ``warm_ups`` uploads (not counted)."""
    from playwright.sync_api import sync_playwright

    photo = np.asarray(Image.open(PHOTOS_DIR / "dog.jpg").convert("RGB"))
    seconds: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for upload in range(warm_ups + repeats):
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.goto(url)
            # a visitor picks a file once the page is there: its guide chart drawn, no request
            # pending
            page.get_by_text("Upload images").first.wait_for(timeout=300_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=300_000)
            page.wait_for_load_state("networkidle")
            time.sleep(1.0)
            variant = image_variant(photo, upload, "JPEG")
            elapsed = upload_and_wait(page, f"dog-{upload}.jpg", variant)
            page.close()
            repeat = upload - warm_ups + 1
            if repeat > 0:
                seconds.append(elapsed)
            print(f"{f'repeat {repeat}' if repeat > 0 else 'warm-up'}: {elapsed:.2f} s",
                  flush=True)
        browser.close()
    return seconds


def main(argv: list[str] | None = None, server: Server | None = None) -> int:
    """Run the benchmark; ``server``: a dashboard already running (the tests share theirs),
    else one ``python -m sensitivity serve`` is started for it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=7)
    parser.add_argument("--warm-ups", type=int, default=1, choices=[0, 1],
                        help="untimed uploads first (0: the server is warm already)")
    parser.add_argument("--out", type=Path, default=ARTIFACTS / "warm-upload.json",
                        help="where the JSON report goes")
    args = parser.parse_args(argv)
    require_chromium()
    with contextlib.nullcontext(server) if server else streamlit_server("warm-upload") as running:
        seconds = upload_seconds(running.url, args.repeats, args.warm_ups)
    report = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python "
                   f"{platform.python_version()}",
        "photo": "dog.jpg variants, 768x576",
        "repeats_s": [round(s, 3) for s in seconds],
        "median_upload_to_heatmap_s": round(statistics.median(seconds), 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
