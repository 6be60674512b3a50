"""The cost model (sensitivity.engine.budget, formulas in sensitivity.engine.choices.METHODS)
and the operator's budget on the page, counted by hand and against the passes the methods
really run."""

from __future__ import annotations

import importlib
import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from sensitivity.engine import gradients as engine
from sensitivity.engine.budget import (
    MAX_WORK_VARIABLE,
    SCORECAM_CHANNELS,
    check_budget,
    estimate_work,
    max_work,
    target_channels,
)
from sensitivity.engine.choices import METHODS
from sensitivity.methods import attribute
from tests.web.test_app import APP, charts, png_bytes, predictions


def test_every_method_declares_its_cost():
    for method, info in METHODS.items():
        assert info.cost is not None, f"{method} declares no cost formula"
        work = estimate_work(method, {}, 32, 32)
        assert work.forward >= 1 and work.forward_pixels >= 1024, method


# (method, options, forward passes, backward passes) of one 32x32 image, counted by hand.
BY_HAND = [
    ("gradient", {}, 1, 1),
    ("gradient_x_input", {}, 1, 1),
    ("guided_backprop", {}, 1, 1),
    ("gradcam", {}, 2, 1),  # the predicted class's forward pass, then one gradient
    ("layercam", {}, 2, 1),
    ("cam", {}, 1, 0),
    ("smoothgrad", {"samples": 3}, 1 + 3, 3),  # the scores, then 3 gradients
    # the scores, the baseline, 6 gradients, the 2 inner ends of 6 // 2 = 3 segments
    ("integrated_gradients", {"steps": 6}, 2 + 6 + 2, 6),
    ("integrated_gradients", {"steps": 6, "path_sampling": "uniform"}, 2 + 6, 6),
    ("integrated_gradients", {"steps": 3}, 2 + 3 + 0, 3),  # 3 // 2 = 1 segment: no inner end
    # patch 8, stride 8: starts 0, 8, 16, 24 on each side: 16 positions, and the scores
    ("occlusion", {"patch": 8, "stride": 8}, 1 + 16, 0),
    # patch 3, stride 2: starts 0, 2, ..., 28 and the flush 29: 16 per side
    ("occlusion", {"patch": 3, "stride": 2}, 1 + 16 * 16, 0),
    # the scores, the features, the fill, one per channel
    ("scorecam", {"max_channels": 4}, 3 + 4, 0),
    ("rise", {"masks": 10}, 1 + 10, 0),
]


@pytest.mark.parametrize(("method", "options", "forward", "backward"), BY_HAND)
def test_cost_formulas_by_hand(method, options, forward, backward):
    work = estimate_work(method, options, 32, 32, images=2)
    assert (work.forward, work.backward) == (2 * forward, 2 * backward)
    assert work.passes == 2 * (forward + 2 * backward)  # a backward pass = 2 forward passes
    assert work.forward_pixels == 2 * (forward + 2 * backward) * 32 * 32


def test_cost_formulas_cover_every_method():
    assert {case[0] for case in BY_HAND} == set(METHODS)


@pytest.fixture()
def counted(monkeypatch) -> dict[str, int]:
    """Images the engine's forward and gradient functions receive, as forward and backward
    passes (a gradient is one of each)."""
    tally = {"forward": 0, "backward": 0}
    for name, backward in [("forward", False), ("feature_forward", False), ("gradients", True),
                           ("feature_gradients", True), ("predicted_class_gradients", True)]:
        original = getattr(engine, name)

        def counting(*args, _original=original, _backward=backward, **kwargs):
            images = next(a for a in args if isinstance(a, np.ndarray) and a.ndim == 4)
            tally["forward"] += len(images)
            tally["backward"] += len(images) * _backward
            return _original(*args, **kwargs)

        monkeypatch.setattr(engine, name, counting)
    return tally


@pytest.mark.parametrize(("method", "options", "forward", "backward"), BY_HAND)
def test_cost_formulas_match_the_passes_the_methods_run(default_model, counted, method,
                                                        options, forward, backward):
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    attribute(default_model, images, method=method, **options)
    # Grad-CAM and LayerCAM find the predicted class in a forward pass of their own.
    assert counted == {"forward": 2 * forward, "backward": 2 * backward}


def test_scales_count_each_scale_at_its_own_size():
    # sides 16, 32 and 64; one gradient (3 forward-pass equivalents) each
    work = estimate_work("gradient", {"scales": (0.5, 1, 2)}, 32, 32)
    assert work.forward_pixels == 3 * (16 * 16 + 32 * 32 + 64 * 64)
    assert (work.forward, work.backward) == (3, 3)
    # never below 8 pixels a side; occlusion's positions follow the scaled size
    assert estimate_work("gradient", {"scales": (0.1,)}, 32, 32).forward_pixels == 3 * 8 * 8
    # patch 8 at 64x64: 16 pixels, stride 8: starts 0, 8, ..., 48: 7 per side
    work = estimate_work("occlusion", {"patch": 8, "scales": (2,)}, 32, 32)
    assert work.forward == 1 + 7 * 7 and work.forward_pixels == (1 + 49) * 64 * 64


def test_mirror_counts_every_pass_twice():
    plain = estimate_work("smoothgrad", {"samples": 4, "scales": (0.5, 1)}, 32, 32)
    mirrored = estimate_work("smoothgrad", {"samples": 4, "scales": (0.5, 1), "mirror": True},
                             32, 32)
    assert (mirrored.forward, mirrored.backward, mirrored.forward_pixels) == (
        2 * plain.forward, 2 * plain.backward, 2 * plain.forward_pixels)


def test_non_square_occlusion():
    # 32 high: patch 4, stride 2, 15 starts; 64 wide: patch 8, stride 4, 15 starts
    assert estimate_work("occlusion", {}, 32, 64).forward == 1 + 15 * 15
    # 32 high: patch 8, stride 4: 7 starts; 64 wide: patch 16, stride 8: 7 starts
    assert estimate_work("occlusion", {"patch": 8}, 32, 64).forward == 1 + 7 * 7


def test_scorecam_channels_from_the_model_or_the_default(default_model):
    assert SCORECAM_CHANNELS == 192
    assert estimate_work("scorecam", {}, 32, 32).forward == 3 + 192
    assert target_channels(default_model, {}) == 192  # final_relu of WRN-16-3
    work = estimate_work("scorecam", {"target_layer": "group2"}, 32, 32, model=default_model)
    assert work.forward == 3 + 96  # the second group is 32 x 3 = 96 channels wide
    assert estimate_work("scorecam", {"max_channels": 500}, 32, 32).forward == 3 + 192


def test_max_work_reads_the_operators_variable():
    assert max_work({}) is None
    assert max_work({MAX_WORK_VARIABLE: " "}) is None
    assert max_work({MAX_WORK_VARIABLE: "16e6"}) == 16e6
    for bad in ("lots", "-1", "0", "nan", "inf"):
        with pytest.raises(ValueError, match=MAX_WORK_VARIABLE):
            max_work({MAX_WORK_VARIABLE: bad})


def test_serve_refuses_to_start_on_a_budget_that_is_no_number(monkeypatch, capsys):
    from sensitivity.__main__ import main

    monkeypatch.setenv(MAX_WORK_VARIABLE, "16 M")
    assert main(["serve", "--server.port", "1"]) == 2  # stops before Streamlit starts
    assert "SENSITIVITY_MAX_WORK must be a positive number" in capsys.readouterr().err


def test_budget_passes_what_fits():
    work = estimate_work("gradcam", {}, 32, 32)
    assert check_budget(work, None) is None
    assert check_budget(work, 4 * 1024) is None  # exactly the limit: 2 forward + 1 backward


def test_the_refusal_names_settings_that_fit():
    limit = 16e6
    work = estimate_work("integrated_gradients", {"steps": 256}, 224, 224, images=6)
    # by hand: 2 + 256 + 127 forward and 256 backward per image, 897 x 224 x 224 x 6
    assert work.forward_pixels == 897 * 224 * 224 * 6
    message = check_budget(work, limit)
    assert "needs 270 M forward-pass pixels; the server allows 16 M per request" in message
    # 15 steps: 2 + 15 + 6 forward, 15 backward: 53 x 224^2 x 6 = 15.96 M; 16 steps: 17.2 M
    steps = int(re.search(r"at most (\d+) steps at 224 px", message).group(1))
    assert steps == 15
    assert estimate_work("integrated_gradients", {"steps": steps}, 224, 224, 6).forward_pixels \
        <= limit
    assert estimate_work("integrated_gradients", {"steps": steps + 1}, 224, 224,
                         6).forward_pixels > limit
    side = int(re.search(r"the same settings at (\d+) px", message).group(1))
    assert side == 32  # 897 x 32^2 x 6 = 5.5 M; at 64 px 22 M
    assert estimate_work("integrated_gradients", {"steps": 256}, side, side, 6).forward_pixels \
        <= limit
    assert "image" not in message.split(":", 1)[1]  # one image alone needs 45 M: no advice


def test_the_refusal_names_a_larger_patch_and_fewer_images():
    limit = 16e6
    work = estimate_work("occlusion", {}, 224, 224, images=3)  # 3 x 226 x 224^2 = 34 M
    message = check_budget(work, limit)
    patch = int(re.search(r"patch at least (\d+) at 224 px", message).group(1))
    assert estimate_work("occlusion", {"patch": patch}, 224, 224, 3).forward_pixels <= limit
    assert estimate_work("occlusion", {"patch": patch - 1}, 224, 224, 3).forward_pixels > limit
    assert "or 1 image at a time" in message  # one image: 11.3 M, two: 22.7 M


def test_the_refusal_says_when_nothing_near_fits():
    work = estimate_work("integrated_gradients", {"steps": 256}, 224, 224, images=6)
    assert "nothing near these settings fits" in check_budget(work, 1000)


# --- The page ---------------------------------------------------------------------------------


def heavy_page(monkeypatch, limit: str | None, **query) -> AppTest:
    """The page with ``query`` in its link, ``$SENSITIVITY_MAX_WORK`` at ``limit`` (None:
    unset) and a 40x40 grey upload, after its run."""
    if limit is None:
        monkeypatch.delenv(MAX_WORK_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(MAX_WORK_VARIABLE, limit)
    at = AppTest.from_file(APP, default_timeout=300)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    at.file_uploader[0].set_value([("grey.png", png_bytes(np.full((40, 40, 3), 120, np.uint8)),
                                    "image/png")]).run()
    assert not at.exception
    return at


@pytest.fixture()
def attributions(monkeypatch) -> list[str]:
    """The methods the page asks the library for, in order."""
    page = importlib.import_module("ui.compute")  # where the page calls the library
    asked: list[str] = []
    original = page.attribute

    def recording(model, x, *, method, **options):
        asked.append(method)
        return original(model, x, method=method, **options)

    monkeypatch.setattr(page, "attribute", recording)
    return asked


# integrated gradients, 8 steps at 32 px: (2 + 8 + 3) + 2 x 8 = 29 forward-pass equivalents,
# 29 x 32 x 32 = 29,696 forward-pass pixels; 2 steps (8 x 1024 = 8,192) fit in 10,000.
LIGHT_IG = {"method": "integrated_gradients", "steps": "8", "size": "32"}


def test_over_the_budget_the_page_refuses_at_once_and_computes_no_map(monkeypatch,
                                                                      attributions):
    at = heavy_page(monkeypatch, "10000", **LIGHT_IG)
    errors = [e.value for e in at.error]
    assert any("needs 0.0297 M forward-pass pixels; the server allows 0.01 M per request: "
               "use at most 2 steps at 32 px" in e for e in errors), errors
    assert attributions == []
    assert "sensitivity" not in charts(at)  # no heatmap
    assert len(predictions(at)) == 1  # the image and its prediction are still shown


def test_without_a_budget_the_same_settings_compute(monkeypatch, attributions):
    at = heavy_page(monkeypatch, None, **LIGHT_IG)
    assert not at.error
    assert attributions == ["integrated_gradients"]
    assert "sensitivity" in charts(at)


def test_side_by_side_panels_count_towards_the_budget(monkeypatch, attributions):
    # CAM with its pixel detail and mirror image (the page's default) at 32 px: a forward pass
    # and a gradient (2 + 2 x 1 backward) on the image and on its mirror image, 8 x 1,024
    # pixels; the panels: RISE with 500 masks (501 x 1024) and occlusion (226 x 1024) on the
    # first image: 752,640 in all
    at = heavy_page(monkeypatch, "100000", compare="methods", compare_items="rise,occlusion")
    assert any("side-by-side panels bring this request to 0.753 M forward-pass pixels" in e.value
               for e in at.error), [e.value for e in at.error]
    assert attributions == []


def test_a_heavy_run_shows_its_estimate_first(monkeypatch):
    page = importlib.import_module("ui.compute")  # where the page calls the library

    def refuse(*_args, **_kwargs):
        raise ValueError("not computed in this test")

    monkeypatch.setattr(page, "attribute", refuse)
    at = heavy_page(monkeypatch, None, method="integrated_gradients", steps="256", size="224")
    # 2 + 256 + 127 forward and 256 backward: 897 forward-pass equivalents at 224 x 224
    assert any("about 897 forward passes (45 M forward-pass pixels)" in i.value
               for i in at.info), [i.value for i in at.info]
    assert any("not computed in this test" in e.value for e in at.error)
