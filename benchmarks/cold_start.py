"""Cold start of the dashboard in a real browser: server start to the first heatmap drawn.

Each repeat starts a fresh server (``python -m sensitivity serve``, or plain ``streamlit run
app.py`` for comparison), opens the page in Debian's Chromium, uploads dog.jpg and waits for the
prediction and the heatmap. Launchers alternate so both see the same machine state; the median
of the repeats is reported with its phases (server healthy, uploader shown, prediction text
shown, heatmap drawn).

    python benchmarks/cold_start.py --repeats 3

The test suite runs it once, tiny (``--repeats 1 --launchers serve``), to see it reach its report.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sensitivity.cli.args import positive_int  # noqa: E402
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, require_chromium, streamlit_server  # noqa: E402
from tests.conftest import PHOTOS_DIR  # noqa: E402


def one_cold_start(launcher: str, browser) -> dict[str, float]:
    with streamlit_server(f"cold-{launcher}", launcher) as server:
        healthy = time.monotonic() - server.started
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server.url)
        page.locator("input[type=file]").first.wait_for(state="attached", timeout=300_000)
        uploader = time.monotonic() - server.started
        page.locator("input[type=file]").first.set_input_files(str(PHOTOS_DIR / "dog.jpg"))
        page.locator('table[aria-label="class probabilities"]').first.wait_for(timeout=300_000)
        prediction = time.monotonic() - server.started
        page.locator(".js-plotly-plot .heatmaplayer, .js-plotly-plot .hm").first.wait_for(
            state="attached", timeout=300_000)
        page.get_by_text("top 100 pixels").first.wait_for(timeout=300_000)
        heatmap = time.monotonic() - server.started
        page.close()
    return {"healthy_s": healthy, "uploader_s": uploader, "prediction_s": prediction,
            "first_heatmap_s": heatmap}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--launchers", nargs="+", default=["serve", "streamlit"],
                        choices=["serve", "streamlit"])
    args = parser.parse_args(argv)
    require_chromium()
    from playwright.sync_api import sync_playwright

    runs: dict[str, list[dict[str, float]]] = {name: [] for name in args.launchers}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(args.repeats):
            for launcher in args.launchers:
                runs[launcher].append(one_cold_start(launcher, browser))
                print(launcher, {k: round(v, 2) for k, v in runs[launcher][-1].items()},
                      flush=True)
        browser.close()
    report = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python "
                   f"{platform.python_version()}",
        "python": sys.executable,
        "repeats": args.repeats,
        "median": {name: {key: round(statistics.median(r[key] for r in rs), 2) for key in rs[0]}
                   for name, rs in runs.items()},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
