"""A real browser against a real server: Playwright drives Debian's Chromium.

Starts ``python -m sensitivity serve`` (the README's command) on a free local port, uploads the
dog photograph, waits for the prediction and the heatmap, changes the class mask, and keeps a
screenshot and the timings in ``test-artifacts/``. The cold-start figures in
benchmarks/README.md come from ``benchmarks/cold_start.py`` (median of repeats).
"""

from __future__ import annotations

import json
import time

import pytest

from tests.browser_support import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    require_chromium,
    streamlit_server,
)
from tests.conftest import PHOTOS_DIR


@pytest.fixture(scope="module")
def server():
    with streamlit_server("server") as running:
        yield running.url, running.started


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    require_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def upload_and_wait(page, path) -> float:
    """Upload a file; seconds until the prediction sentence and the heatmap are drawn."""
    start = time.monotonic()
    page.locator("input[type=file]").first.set_input_files(str(path))
    page.get_by_text("chance that there is at least one").first.wait_for(timeout=120_000)
    page.locator(".js-plotly-plot .heatmaplayer, .js-plotly-plot .hm").first.wait_for(
        state="attached", timeout=120_000)
    page.get_by_text("top 100 pixels").first.wait_for(timeout=120_000)
    return time.monotonic() - start


def test_upload_predict_heatmap_and_class_mask(server, browser):
    url, server_started = server
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1500, "height": 1300})
    page.goto(url)
    page.get_by_text("Upload images").first.wait_for(timeout=120_000)
    cold = upload_and_wait(page, PHOTOS_DIR / "dog.jpg")
    cold_start = time.monotonic() - server_started

    # The prediction table and the three maps are there, and the caption names the target.
    # (the charts are drawn one after another, so wait until all are there)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 5",
                           timeout=60_000)
    caption = page.get_by_text("gradient of logits (predicted:").first
    caption.wait_for(timeout=30_000)

    # Change the class mask in the sidebar: the caption and the heatmap follow.
    page.get_by_role("combobox", name="Class mask").click()
    page.keyboard.type("truck")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    page.get_by_text("gradient of logits (truck)").first.wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # Warm: the same photograph again, under another name, through the whole path.
    page.locator("input[type=file]").first.set_input_files([])
    warm_start = time.monotonic()
    page.locator("input[type=file]").first.set_input_files(
        files=[{"name": "dog-again.jpg", "mimeType": "image/jpeg",
                "buffer": (PHOTOS_DIR / "dog.jpg").read_bytes()}])
    page.get_by_text("dog-again.jpg").first.wait_for(timeout=60_000)
    page.get_by_text("top 100 pixels").first.wait_for(timeout=60_000)
    warm = time.monotonic() - warm_start
    timings = {"cold_upload_to_heatmap_s": round(cold, 2),
               "server_start_to_first_heatmap_s": round(cold_start, 2),
               "warm_upload_to_heatmap_s": round(warm, 2)}
    (ARTIFACTS / "browser-timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print(timings)
    errors = page.locator("[data-testid=stException]")
    assert errors.count() == 0
    page.close()
