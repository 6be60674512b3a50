"""A real browser against a real server: Playwright drives Debian's Chromium.

Starts ``python -m sensitivity serve`` (the README's command) on a free local port, uploads the
dog photograph, waits for the prediction and the heatmap, changes the class mask, uploads a picture
of plain text (the out-of-distribution notice), and keeps screenshots and the timings in
``test-artifacts/``. The cold-start figures in benchmarks/README.md come from
``benchmarks/cold_start.py`` (median of repeats).

Then the benchmark scripts that need a running dashboard, ``warm_upload`` and ``load_test``, run
tiny on the same (by then warm) server, to see them reach their reports; ``heavy_and_light``
starts a server of its own, with a budget (``SENSITIVITY_MAX_WORK``).
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

import sensitivity
from sensitivity.engine.choices import DEFAULT_METHOD
from sensitivity.model.io import MODELS_DIR
from sensitivity.model.labels import CLASS_NAMES
from sensitivity.render.report import out_of_distribution_notice
from sensitivity.web.settings import ViewSettings
from tests.browser_support import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    require_chromium,
    streamlit_server,
    upload_and_wait,
)
from tests.conftest import PHOTOS_DIR
from tests.helpers import benchmark_script, probability_bars_rows, text_picture
from tests.web.test_app import array, page_options


@pytest.fixture(scope="module")
def server():
    with streamlit_server("server") as running:
        yield running


@pytest.fixture
def browser():
    """Chromium for one test: the benchmark scripts start Playwright themselves, which they
    cannot while another Playwright is running in this thread."""
    from playwright.sync_api import sync_playwright

    require_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    """A fresh page; on failure its screenshot and HTML are kept in test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1500, "height": 1300})
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
        (ARTIFACTS / "failure.html").write_text(page.content())
    page.close()


def test_upload_predict_heatmap_and_class_mask(server, page):
    url, server_started = server.url, server.started
    page.goto(url)
    page.get_by_text("Upload images").first.wait_for(timeout=120_000)
    photo = (PHOTOS_DIR / "dog.jpg").read_bytes()  # 768x576
    cold = upload_and_wait(page, "dog.jpg", photo)
    cold_start = time.monotonic() - server_started

    # The probability table with its ten bars, the heatmap and four pictures (photo, network
    # input, overlay, mask) are there, and the caption names the target.
    page.wait_for_function(
        "document.querySelectorAll('table[aria-label=\"class probabilities\"] tr').length "
        "=== 10 && document.querySelectorAll('.js-plotly-plot').length >= 1 && "
        "document.querySelectorAll('[data-testid=stImage] img').length >= 4", timeout=60_000)
    caption = page.get_by_text(f"{DEFAULT_METHOD} of logits (predicted:").first
    caption.wait_for(timeout=30_000)

    # Change the class mask in the sidebar: the caption and the heatmap follow.
    page.get_by_role("combobox", name="Class mask").click()
    page.keyboard.type("truck")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    page.get_by_text(f"{DEFAULT_METHOD} of logits (truck)").first.wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # Warm: a second visitor (a new session on the now warm server) uploads the same photograph
    # under another name, through the whole path (its gradient comes from the result cache;
    # benchmarks/warm_upload.py times fresh images).
    second = page.context.browser.new_page(viewport={"width": 1500, "height": 1300})
    second.goto(url)
    second.get_by_text("Upload images").first.wait_for(timeout=120_000)
    warm = upload_and_wait(second, "dog-again.jpg", photo)
    assert second.get_by_role("heading").filter(has_text=".jpg").count() == 1
    assert second.locator("[data-testid=stException]").count() == 0
    second.close()
    timings = {"cold_upload_to_heatmap_s": round(cold, 2),
               "server_start_to_first_heatmap_s": round(cold_start, 2),
               "warm_upload_to_heatmap_s": round(warm, 2)}
    (ARTIFACTS / "browser-timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print(timings)
    errors = page.locator("[data-testid=stException]")
    assert errors.count() == 0

    # A picture of plain text (the detector flags it): the notice above its maps, the sentence
    # softened, the score on the sentence's hover. Last, so that loading the model here to
    # choose the picture slows no timing above.
    text, _ = text_picture(sensitivity.load_model())
    notices = page.get_by_text(out_of_distribution_notice(len(CLASS_NAMES)))
    before = notices.count()
    softened = "If this picture shows any of the ten classes"
    upload_and_wait(page, "text.png", text, "image/png")
    page.get_by_text(softened).last.wait_for(timeout=10_000)
    assert notices.count() == before + 1
    page.locator("[data-testid=stMarkdown]", has_text=softened).last.locator(
        "[data-testid=stTooltipIcon]").hover()
    page.get_by_text("Out-of-distribution score").first.wait_for(timeout=10_000)
    page.get_by_role("heading", name="text.png").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "out-of-distribution.png"), full_page=True)
    assert errors.count() == 0


# The section "Side by side" once the page has settled: each Plotly figure after its heading
# (its title as drawn, and the heatmap's values: nested lists, or Plotly's typed-array spec as
# sent) and each probability table's HTML.
_SIDE_BY_SIDE = """() => {
  const heading = [...document.querySelectorAll('h3')].find(
    h => h.textContent.trim() === 'Side by side');
  if (!heading || document.querySelector('[data-testid=stStatusWidgetRunningIcon]')) return null;
  const after = node => heading.compareDocumentPosition(node) & Node.DOCUMENT_POSITION_FOLLOWING;
  const maps = [...document.querySelectorAll('.js-plotly-plot')].filter(after).map(plot => {
    const z = plot.data[0].z;
    return {title: plot.querySelector('.gtitle')?.textContent ?? '',
            z: Array.isArray(z) ? z.map(row => Array.from(row)) : z};
  });
  const tables = [...document.querySelectorAll('table[aria-label="class probabilities"]')]
    .filter(after).map(table => table.outerHTML);
  return {maps, tables};
}"""


def test_the_shipped_models_side_by_side(server, page, default_model, tmp_path):
    """A link that compares the two shipped models, and a photo: two maps and two prediction
    tables side by side, each model's, with the numbers the library computes with that model
    on the same photo (the default method, for each model's own predicted class)."""
    names = ("wrn-16-3", "wrn-16-2")
    query = ViewSettings(size=32, compare="models", compare_items=names).to_query(native_size=32)
    assert query == {"compare": "models", "compare_items": "wrn-16-3,wrn-16-2"}
    page.goto(f"{server.url}/?{urllib.parse.urlencode(query)}")
    page.get_by_text("Upload images").first.wait_for(timeout=120_000)
    photo = PHOTOS_DIR / "dog.jpg"
    upload_and_wait(page, photo.name, photo.read_bytes())
    shown = page.wait_for_function(
        f"(() => {{ const s = ({_SIDE_BY_SIDE})(); "
        "return s && s.maps.length >= 2 && s.tables.length >= 2 ? s : null; })()",
        polling=200, timeout=180_000).json_value()
    page.get_by_role("heading", name="Side by side").evaluate(
        "heading => heading.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(tmp_path / "compare-models.png"), full_page=True)
    assert page.locator("[data-testid=stException]").count() == 0
    assert len(shown["maps"]) == 2 and len(shown["tables"]) == 2

    x = sensitivity.preprocess(sensitivity.load_image(photo), 32)
    for name, panel, table in zip(names, shown["maps"], shown["tables"], strict=True):
        model = default_model if name == "wrn-16-3" else sensitivity.load_model(
            MODELS_DIR / f"{name}.keras")
        probabilities = sensitivity.predict(model, x[None])[0]
        order = np.argsort(-probabilities, kind="stable")
        top = int(order[0])
        assert panel["title"] == f"{name}: {CLASS_NAMES[top]} {100 * probabilities[top]:.1f}%"
        rows = probability_bars_rows(table)
        assert [r["class"] for r in rows] == [CLASS_NAMES[i] for i in order]
        np.testing.assert_allclose([r["percent"] for r in rows], 100 * probabilities[order],
                                   atol=0.051)
        np.testing.assert_allclose([r["bar"] for r in rows], 100 * probabilities[order],
                                   atol=0.0051)
        expected = sensitivity.saliency(model, x, method=DEFAULT_METHOD, class_mask=top,
                                        **page_options(DEFAULT_METHOD))[0]
        np.testing.assert_allclose(array(panel["z"]).astype(float), expected, rtol=1e-4,
                                   atol=1e-5 * float(np.abs(expected).max()))
    # Each model's own numbers: the two tables differ.
    assert shown["tables"][0] != shown["tables"][1]


def test_serve_writes_every_thread_stack_on_request_and_goes_on(server):
    """``kill -USR1`` (what benchmarks/load_test.py sends when a user waits in vain) writes the
    stack of every thread of ``serve`` to its log, and the server goes on answering."""
    log = ARTIFACTS / "server.log"
    before = log.read_text().count("(most recent call first)")
    server.dump_stacks()
    text = log.read_text()
    assert text.count("(most recent call first)") - before >= 2  # the main thread and others
    assert 'File "' in text.rsplit("(most recent call first)", 1)[1]
    with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=10) as response:
        assert response.status == 200


def test_warm_upload_script_runs_to_the_end(server, tmp_path, capsys):
    module = benchmark_script("warm_upload")
    out = tmp_path / "warm-upload.json"
    # The server is warm (the test above has used it): no warm-up upload
    assert module.main(["--repeats", "1", "--warm-ups", "0", "--out", str(out)],
                       server=server) == 0
    report = json.loads(out.read_text())
    assert report["photo"] == "dog.jpg variants, 768x576"
    [seconds] = report["repeats_s"]
    assert seconds > 0 and report["median_upload_to_heatmap_s"] == seconds
    printed = capsys.readouterr().out
    first, _ = printed.split("\n", 1)  # "repeat 1: 0.51 s": the time before the report rounds it
    assert first.startswith("repeat 1: ") and first.endswith(" s")
    assert abs(float(first.removeprefix("repeat 1: ").removesuffix(" s")) - seconds) <= 0.0051
    assert json.dumps(report, indent=2) in printed


def test_load_test_script_runs_to_the_end(server, default_model, cifar_dir, tmp_path, capsys):
    """One user on the server, through the two shipped models in turn, a round on each to
    warm up, then until two analyses: its steps are each upload and each sign flip, all
    checked on the page (the round's model picked, the prediction the library makes with it),
    and the report holds their figures, the server's peak memory among them."""
    module = benchmark_script("load_test")
    out = tmp_path / "load-test.json"
    assert module.main(["--users", "1", "--seconds", "0", "--analyses", "2", "--warm-up-rounds",
                        "1", "--models", "wrn-16-3,wrn-16-2", "--data-dir", str(cifar_dir),
                        "--out", str(out)], server=server, model=default_model) == 0
    report = json.loads(out.read_text())
    assert report["contexts"] == 1 and report["page_errors"] == []
    # Whole rounds of an upload and a sign flip: a round per analysis, the models in turn (the
    # user may start one more round before it is told to stop); the warm-up's are not counted.
    assert report["models"] == ["wrn-16-3", "wrn-16-2"]
    by_model = report["analyses_after_warm_up_by_model"]
    assert sum(by_model.values()) == report["analyses_after_warm_up"] >= 2
    assert by_model["wrn-16-3"] - 1 <= by_model["wrn-16-2"] <= by_model["wrn-16-3"]
    assert report["steps"] == 2 * (report["analyses_after_warm_up"] + 2)
    assert 0 < report["latency_p50_s"] <= report["latency_p95_s"]
    assert report["seconds_after_warm_up"] >= 0
    assert report["resident_mb_after_warm_up"] > 100 and report["resident_mb_at_end"] > 100
    assert report["resident_mb_at_end"] <= report["peak_resident_mb"] <= module.MAX_MEMORY_MB
    assert json.dumps(report, indent=2) in capsys.readouterr().out


def test_heavy_and_light_script_runs_to_the_end(tmp_path, capsys):
    """On a server of its own with a tiny budget (4 M forward-pass pixels: a heavy run of a few
    seconds), the over-budget link is refused with its estimate, and a light upload is timed
    alone and during the heaviest allowed run."""
    module = benchmark_script("heavy_and_light")
    out = tmp_path / "heavy-and-light.json"
    assert module.main(["--max-work", "4e6", "--repeats", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    # Integrated gradients (adaptive sampling) per image: 2 + s + (s // 2 - 1) forward passes
    # and s backward passes (2 forward passes each). At 96 px, s = 123 costs 431 passes of
    # 9216 pixels = 3.97 M; s = 124 costs 435 (4.01 M). Every other size's best is lower:
    # 128 px s = 69 (242 x 16384 = 3.96 M), 160 px s = 44 (155 x 25600 = 3.968 M).
    assert report["heavy_request"] == {"method": "integrated_gradients", "size": "96",
                                       "steps": "123"}
    assert report["heavy_forward_pixels"] == 431 * 96 * 96
    assert report["refused_request"] == {"method": "integrated_gradients", "size": "96",
                                         "steps": "124"}
    assert "needs 4.01 M forward-pass pixels" in report["refusal"]
    assert "the server allows 4 M per request" in report["refusal"]
    assert len(report["alone_s"]) == len(report["during_heavy_s"]) == 1
    assert report["heavy_runs_started"] >= 1 and report["refusal_s"] > 0
    assert report["median_during_heavy_s"] == report["during_heavy_s"][0] > 0
    printed = capsys.readouterr().out
    assert "| during the heaviest allowed run | 1 |" in printed
    assert json.dumps(report, indent=2) in printed
