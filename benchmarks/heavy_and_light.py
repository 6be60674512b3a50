"""A light request during the heaviest run the budget allows: does it still get its map in 2 s?

One ``python -m sensitivity serve`` server with ``SENSITIVITY_MAX_WORK`` set (default
16000000 forward-pass pixels, the Dockerfile's value). First a link asking for one step more
than the budget allows is opened and a photo uploaded: the page must refuse it with its
estimate (the seconds until the refusal is drawn are reported). Then visitor B (a new browser
context, default settings) uploads variants of dog.jpg alone (one untimed warm-up, then
``--repeats`` timed, as ``benchmarks/warm_upload.py`` times them: upload to section,
prediction, heatmap and top-k mask drawn). Then visitor A opens a link asking for the heaviest
request the budget allows (integrated gradients at the analysis size and number of steps with
the most work within it, :func:`heaviest_request`) and uploads a photo; while A's progress bar
shows, B uploads again, ``--repeats`` times. A repeat counts only if A's bar showed before and
after B's upload (its fractions are reported); when A's run has ended, A uploads anew in a new
context. Medians, the ratio and the machine's load average go to
``test-artifacts/heavy-and-light.json`` (or ``--out``).

    python benchmarks/heavy_and_light.py --repeats 5

The test suite runs it with a tiny budget (``--max-work 4e6 --repeats 1``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sensitivity.cli.args import positive_int  # noqa: E402
from sensitivity.engine.budget import MAX_WORK_VARIABLE, Work, estimate_work  # noqa: E402
from sensitivity.engine.choices import METHODS  # noqa: E402
from sensitivity.web.settings import SIZES, ViewSettings, method_options  # noqa: E402
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

HEAVY_METHOD = "integrated_gradients"
HEAVY_OPTION = "steps"
DOCKERFILE_MAX_WORK = 16_000_000
LIGHT_LIMIT_S = 2.0  # the promise for the light request
TIMEOUT_MS = 300_000
BAR_TIMEOUT_MS = 60_000  # from A's upload to its progress bar
ATTEMPTS = 4  # tries per repeat at timing B while A's run shows its progress bar
PROGRESS = "[data-testid=stProgress]"
REFUSAL = "the server allows"


def heavy_settings(size: int, value: int) -> tuple[ViewSettings, Work]:
    """The page's settings for :data:`HEAVY_METHOD` at ``size`` px with ``value`` of
    :data:`HEAVY_OPTION` (other options at their page defaults), and their work on one image."""
    settings = ViewSettings(method=HEAVY_METHOD, size=size, options={HEAVY_OPTION: value})
    return settings, estimate_work(HEAVY_METHOD, method_options(settings), size, size)


def heaviest_request(limit: float) -> tuple[ViewSettings, Work]:
    """Of the page's analysis sizes and every value of :data:`HEAVY_OPTION`, the settings whose
    work on one image is the largest within ``limit`` forward-pass pixels (a tie: the larger
    size); ValueError when none fits."""
    spec = METHODS[HEAVY_METHOD].options[HEAVY_OPTION]
    best = None
    for size in SIZES:
        for value in range(int(spec.minimum), int(spec.maximum) + 1):
            settings, work = heavy_settings(size, value)
            if work.forward_pixels <= limit and (
                    best is None or work.forward_pixels >= best[1].forward_pixels):
                best = settings, work
    if best is None:
        raise ValueError(f"no {HEAVY_METHOD} request fits {limit:.3g} forward-pass pixels")
    return best


def over_budget(heaviest: ViewSettings, limit: float) -> ViewSettings:
    """``heaviest`` with one more of :data:`HEAVY_OPTION`, or at the next larger size when it
    is at its maximum: a request just over ``limit``."""
    spec = METHODS[HEAVY_METHOD].options[HEAVY_OPTION]
    value = heaviest.option(HEAVY_OPTION)
    candidates = [(heaviest.size, value + 1)] if value < spec.maximum else []
    candidates += [(size, value) for size in SIZES if size > heaviest.size]
    for size, candidate in candidates:
        settings, work = heavy_settings(size, candidate)
        if work.forward_pixels > limit:
            return settings
    raise ValueError(f"no {HEAVY_METHOD} request near {heaviest.to_query()} exceeds the budget")


def link(url: str, settings: ViewSettings) -> str:
    return f"{url}/?{urlencode(settings.to_query())}"


def open_page(browser, url: str):
    """A new visitor (its own browser context) on ``url``, once the page has loaded."""
    context = browser.new_context(viewport={"width": 1500, "height": 1300})
    page = context.new_page()
    page.goto(url)
    page.get_by_text("Upload images").first.wait_for(timeout=TIMEOUT_MS)
    page.locator(".js-plotly-plot").first.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_load_state("networkidle")
    time.sleep(1.0)
    return page


def upload(page, name: str, data: bytes) -> None:
    page.locator("input[type=file]").first.set_input_files(
        files=[{"name": name, "mimeType": "image/jpeg", "buffer": data}])


def refusal_seconds(browser, url: str, settings: ViewSettings, photo: np.ndarray) -> tuple:
    """Seconds from the upload to the refusal drawn on a page opened with ``settings``, and the
    refusal's text; AssertionError when the page computes instead."""
    page = open_page(browser, link(url, settings))
    started = time.monotonic()
    upload(page, "refused.jpg", image_variant(photo, 0, "JPEG"))
    message = page.get_by_text(REFUSAL).first
    message.wait_for(timeout=TIMEOUT_MS)
    seconds = time.monotonic() - started
    text = message.inner_text()
    assert page.locator(PROGRESS).count() == 0, "an over-budget request started computing"
    page.context.close()
    return seconds, text


def heavy_variant(photo: np.ndarray, run: int) -> bytes:
    """``photo`` brightened by ``run`` levels (clipped at 255), as JPEG: every pixel changes, so
    the network's input at any analysis size does too, and run ``run`` is no cache hit."""
    return image_variant(np.minimum(photo.astype(np.int32) + run, 255).astype(np.uint8), 0,
                         "JPEG")


def start_heavy(browser, url: str, settings: ViewSettings, photo: np.ndarray, run: int):
    """Visitor A: a page with ``settings`` and variant ``run`` of ``photo`` uploaded, once its
    progress bar shows."""
    page = open_page(browser, link(url, settings))
    upload(page, f"heavy-{run}.jpg", heavy_variant(photo, run))
    page.locator(PROGRESS).first.wait_for(timeout=BAR_TIMEOUT_MS)
    print(f"heavy run {run} started", flush=True)
    return page


def heavy_progress(page) -> float | None:
    """The fraction A's progress bar shows (0..1), None once it is gone (the run is over)."""
    bar = page.locator(f"{PROGRESS} [role=progressbar]")
    if bar.count() == 0:
        return None
    value = bar.first.get_attribute("aria-valuenow")
    return None if value is None else float(value) / 100


def light_seconds(page, photo: np.ndarray, index: int) -> float:
    """Visitor B on an ``open_page``: seconds from the upload of variant ``index`` of ``photo``
    to its heatmap drawn (:func:`upload_and_wait`); the page is closed."""
    elapsed = upload_and_wait(page, f"light-{index}.jpg", image_variant(photo, index, "JPEG"))
    page.context.close()
    return elapsed


def measure(url: str, heaviest: ViewSettings, refused: ViewSettings, repeats: int) -> dict:
    """The refusal, then B alone, then B during A's runs (see the module's docstring)."""
    from playwright.sync_api import sync_playwright

    light_photo = np.asarray(Image.open(PHOTOS_DIR / "dog.jpg").convert("RGB"))
    heavy_photo = np.asarray(Image.open(PHOTOS_DIR / "horses.jpg").convert("RGB"))
    alone: list[float] = []
    during: list[float] = []
    progress: list[list[float]] = []  # A's bar before and after each timed upload of B
    discarded = 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        refusal_s, refusal_text = refusal_seconds(browser, url, refused, heavy_photo)
        print(f"refused in {refusal_s:.2f} s: {refusal_text}", flush=True)
        index = 0
        for repeat in range(repeats + 1):  # the first: a warm-up, not counted
            seconds = light_seconds(open_page(browser, url), light_photo, index)
            index += 1
            if repeat:
                alone.append(seconds)
            print(f"{f'alone {repeat}' if repeat else 'warm-up'}: {seconds:.2f} s", flush=True)
        runs = 0
        heavy = start_heavy(browser, url, heaviest, heavy_photo, runs)
        for repeat in range(1, repeats + 1):
            for _ in range(ATTEMPTS):
                light = open_page(browser, url)
                if heavy_progress(heavy) is None:  # A's run is over: another one
                    heavy.context.close()
                    runs += 1
                    heavy = start_heavy(browser, url, heaviest, heavy_photo, runs)
                before = heavy_progress(heavy)
                seconds = light_seconds(light, light_photo, index)
                index += 1
                after = heavy_progress(heavy)
                if before is not None and after is not None:
                    during.append(seconds)
                    progress.append([before, after])
                    print(f"during heavy run {runs} (its bar {before:.0%} -> {after:.0%}), "
                          f"{repeat}: {seconds:.2f} s", flush=True)
                    break
                discarded += 1
                print(f"(heavy run {runs} ended during B's upload: {seconds:.2f} s not "
                      "counted)", flush=True)
            else:
                raise RuntimeError(f"the heavy run ended during {ATTEMPTS} uploads in a row")
        heavy.context.close()  # closing the tab stops A's work
        browser.close()
    return {"refusal_s": round(refusal_s, 3), "refusal": refusal_text,
            "alone_s": [round(s, 3) for s in alone],
            "during_heavy_s": [round(s, 3) for s in during],
            "heavy_progress_before_after": progress,
            "heavy_runs_started": runs + 1, "discarded_uploads": discarded}


def table(report: dict) -> str:
    rows = ["| light upload (dog.jpg, default settings) | repeats | median s | max s |",
            "|---|---|---|---|"]
    for label, key in (("alone", "alone_s"), ("during the heaviest allowed run",
                                              "during_heavy_s")):
        values = report[key]
        rows.append(f"| {label} | {len(values)} | {statistics.median(values):.2f} | "
                    f"{max(values):.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--max-work", type=float, default=DOCKERFILE_MAX_WORK,
                        help=f"the server's {MAX_WORK_VARIABLE}, forward-pass pixels")
    parser.add_argument("--out", type=Path, default=ARTIFACTS / "heavy-and-light.json",
                        help="where the JSON report goes")
    args = parser.parse_args(argv)
    require_chromium()
    heaviest, work = heaviest_request(args.max_work)
    refused = over_budget(heaviest, args.max_work)
    print(f"heaviest allowed request: {heaviest.to_query()}, {work.forward_pixels / 1e6:.3g} M "
          f"forward-pass pixels (~{work.seconds:.0f} s by the budget's estimate)", flush=True)
    load_before = os.getloadavg()
    with streamlit_server("heavy-and-light",
                          environ={MAX_WORK_VARIABLE: f"{args.max_work:.0f}"}) as running:
        measured = measure(running.url, heaviest, refused, args.repeats)
    median_alone = statistics.median(measured["alone_s"])
    median_during = statistics.median(measured["during_heavy_s"])
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, python "
                   f"{platform.python_version()}",
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "max_work": args.max_work,
        "heavy_request": heaviest.to_query(),
        "heavy_forward_pixels": work.forward_pixels,
        "refused_request": refused.to_query(),
        **measured,
        "median_alone_s": round(median_alone, 3),
        "median_during_heavy_s": round(median_during, 3),
        "ratio": round(median_during / median_alone, 2),
        "within_2_s": max(measured["during_heavy_s"]) <= LIGHT_LIMIT_S,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
