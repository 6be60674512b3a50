"""The explain command: the four files per image, skipped files, bad arguments, class names,
method options."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from sensitivity.__main__ import main
from sensitivity.cli.explain import method_option_values, output_stems, parse_classes
from sensitivity.cli.parsers import build_parser
from sensitivity.engine.choices import METHODS, method_option_specs
from sensitivity.model.labels import CLASS_NAMES
from tests.helpers import CIFAR_CARD

SIZE = 16
TOP_K = 10


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny random WRN-10-1 saved with its card; returns the path."""
    import keras

    from sensitivity.model.io import write_model_card
    from sensitivity.model.wrn import build_wrn

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    build_wrn(10, 1).save(path)
    write_model_card(path, {"name": "tiny", "depth": 10, "width": 1, **CIFAR_CARD})
    return path


@pytest.fixture(scope="module")
def tiny_model(model_file):
    """``model_file`` loaded, once for the module."""
    from sensitivity.model.io import load_model

    return load_model(model_file)


@pytest.fixture(autouse=True)
def model_file_loaded_once(model_file, tiny_model, monkeypatch):
    """``explain`` gets ``tiny_model`` for ``model_file``: one model object, whose traced
    gradient functions are kept from test to test (a fresh load would trace them again, about
    a second a test); any other path loads as usual."""
    from pathlib import Path

    from sensitivity.model import io as model_io

    original = model_io.load_model

    def load_model(path=None):
        return tiny_model if path is not None and Path(path) == model_file else original(path)

    monkeypatch.setattr(model_io, "load_model", load_model)


def _image(path, width: int = 40, height: int = 30, seed: int = 0):
    """Write a random RGB image with Pillow (format from the suffix); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _explain(model_file, out, *args: str) -> int:
    return main(
        [
            "explain",
            *args,
            "--model",
            str(model_file),
            "--out",
            str(out),
            "--size",
            str(SIZE),
            "--top-k",
            str(TOP_K),
        ]
    )


def test_writes_four_files_per_image_with_unique_names(tmp_path, model_file, capsys):
    # Two inputs with the same base name in different folders must not overwrite each other.
    first = _image(tmp_path / "one" / "photo.png", seed=1)
    second = _image(tmp_path / "two" / "photo.jpg", width=32, height=32, seed=2)
    out = tmp_path / "out"
    code = _explain(model_file, out, str(first), str(second), "--method", "integrated_gradients")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "2/2" in captured.err  # the progress bar
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}{suffix}"
        for stem in ("photo", "photo-2")
        for suffix in ("_heatmap.png", "_mask.png", "_map.npy", ".json")
    )
    for stem, source in (("photo", first), ("photo-2", second)):
        saliency_map = np.load(out / f"{stem}_map.npy", allow_pickle=False)
        assert saliency_map.shape == (SIZE, SIZE) and saliency_map.dtype == np.float32
        assert np.isfinite(saliency_map).all()
        with Image.open(out / f"{stem}_heatmap.png") as heatmap:
            assert heatmap.size == (8 * SIZE, 8 * SIZE)
        with Image.open(out / f"{stem}_mask.png") as mask_image:
            mask = np.asarray(mask_image)
        assert mask.shape == (SIZE, SIZE)
        assert int((mask == 0).sum()) == TOP_K and int((mask == 255).sum()) == SIZE * SIZE - TOP_K
        record = json.loads((out / f"{stem}.json").read_text())
        assert list(record["probabilities"]) == list(CLASS_NAMES)
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert record["predicted_class"] == max(
            record["probabilities"], key=record["probabilities"].get
        )
        assert record["explained_classes"] == [record["predicted_class"]]
        assert record["image"] == str(source)
        assert record["settings"]["method"] == "integrated_gradients"
        assert record["settings"]["top_k"] == TOP_K and record["settings"]["size"] == SIZE
        assert np.isfinite(record["completeness_gap"]) and record["completeness_gap"] >= 0


def test_unreadable_files_are_skipped_and_listed(tmp_path, model_file, capsys):
    good = _image(tmp_path / "good.png")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 this is not really a JPEG")
    missing = tmp_path / "missing.png"
    out = tmp_path / "out"
    code = _explain(model_file, out, str(corrupt), str(good), str(missing))
    captured = capsys.readouterr()
    assert code == 1
    assert "skipped 2 file(s)" in captured.err
    assert str(corrupt) in captured.err and str(missing) in captured.err
    assert "Traceback" not in captured.err
    assert sorted(p.name for p in out.iterdir()) == [
        "good.json",
        "good_heatmap.png",
        "good_map.npy",
        "good_mask.png",
    ]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--method", "magic", "unknown method 'magic'"),
        ("--class", "unicorn", "unknown class 'unicorn'"),
        ("--sign", "both", "unknown sign 'both'"),
        ("--layer", "no_such_layer", "no_such_layer"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(tmp_path, model_file, capsys, flag, value, message):
    image = _image(tmp_path / "a.png")
    out = tmp_path / "out"
    assert _explain(model_file, out, str(image), flag, value) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not out.exists() or not any(out.iterdir())


def test_class_by_name_or_index(tmp_path, model_file, tiny_model, capsys):
    from sensitivity import load_image, preprocess
    from sensitivity.engine.saliency import saliency

    image = _image(tmp_path / "a.png")
    by_name, by_index = tmp_path / "by_name", tmp_path / "by_index"
    assert _explain(model_file, by_name, str(image), "--class", "Cat,dog") == 0
    assert _explain(model_file, by_index, str(image), "--class", "3", "--class", "5") == 0
    capsys.readouterr()
    record = json.loads((by_name / "a.json").read_text())
    assert record["explained_classes"] == ["cat", "dog"]
    assert record["settings"]["classes"] == ["cat", "dog"]
    named = np.load(by_name / "a_map.npy", allow_pickle=False)
    np.testing.assert_array_equal(named, np.load(by_index / "a_map.npy", allow_pickle=False))
    expected = saliency(tiny_model, preprocess(load_image(image), SIZE), class_mask=[3, 5])[0]
    np.testing.assert_allclose(named, expected, rtol=1e-5, atol=1e-7)


def test_output_stems_are_safe_and_unique():
    paths = [
        "../../etc/passwd",
        "a/x.png",
        "b/x.png",
        "B/X.jpg",
        "..",
        "we ird:name!.png",
        ".hidden.png",
        "C:\\photos\\cat.jpg",
    ]
    assert output_stems(paths) == [
        "passwd",
        "x",
        "x-2",
        "X-3",
        "image",
        "we_ird_name_",
        "hidden",
        "cat",
    ]
    assert parse_classes(None, CLASS_NAMES) is None
    assert parse_classes(["cat, 5", "CAT"], CLASS_NAMES) == [3, 5]
    with pytest.raises(ValueError, match="unknown class '10'"):
        parse_classes(["10"], CLASS_NAMES)
    assert parse_classes(["Lynx,0"], ["tiger", "lynx"]) == [1, 0]
    with pytest.raises(ValueError, match="unknown class 'cat'.*index 0..1"):
        parse_classes(["cat"], ["tiger", "lynx"])


def test_method_options_reach_the_method_and_the_record(tmp_path, model_file, tiny_model, capsys):
    from sensitivity import load_image, preprocess, saliency

    image = _image(tmp_path / "a.png")
    out = tmp_path / "out"
    code = _explain(model_file, out, str(image), "--method", "integrated_gradients",
                    "--option", "steps=6", "--option", "baseline=blurred",
                    "--option=path_sampling=uniform")
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "a.json").read_text())
    options = record["settings"]["method_options"]
    assert options["steps"] == 6 and options["baseline"] == "blurred"
    assert options["path_sampling"] == "uniform" and options["blur_sigma"] == 4.0
    expected = saliency(tiny_model, preprocess(load_image(image), SIZE),
                        method="integrated_gradients", steps=6, baseline="blurred",
                        path_sampling="uniform")[0]
    np.testing.assert_allclose(np.load(out / "a_map.npy"), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--option", "steps=999"], "out of range: expected a whole number from 2 to 256"),
        (["--option", "steps=many"], "expected a whole number from 2 to 256"),
        (["--option", "wobble=1"], "no method has an option 'wobble'"),
        (["--option", "steps"], "expected NAME=VALUE"),
        (["--option", "baseline=grey"], "one of black, blurred, noise"),
    ],
)
def test_bad_method_options_are_argparse_errors(options, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", "a.png", "--method", "integrated_gradients", *options])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --option: " in err and message in err and "Traceback" not in err


def test_an_option_of_another_method_exits_2(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", "a.png", "--option", "steps=8", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: method 'gradient' has no option 'steps'")
    assert not out.exists()


OPTION_NAMES = sorted({n for m in METHODS for n in method_option_specs(m)} | {"wobble", ""})


@settings(max_examples=300, deadline=None)
@given(method=st.sampled_from(sorted(METHODS)), name=st.sampled_from(OPTION_NAMES),
       value=st.one_of(st.integers(-10**5, 10**5).map(str), st.floats().map(str),
                       st.sampled_from(["none", "true", "0", "adaptive", "group3", "mean", ""]),
                       st.text(max_size=10)),
       equals=st.sampled_from(["=", " = ", ":"]))
def test_any_option_is_a_clean_error_or_a_value_within_its_declaration(method, name, value,
                                                                        equals):
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = build_parser().parse_args(
                ["explain", "a.png", "--method", method, f"--option={name}{equals}{value}"])
    except SystemExit as exc:
        assert exc.code == 2 and "error: argument --option: " in stderr.getvalue()
        return
    try:
        values = method_option_values(args.method, args.options)
    except ValueError as exc:
        assert str(exc)
        return
    (given_name,) = values
    option = method_option_specs(method)[given_name]
    assert option.kind is not None and option.check(values[given_name]) == values[given_name]
    if option.kind in ("int", "float") and values[given_name] is not None:
        assert option.minimum <= values[given_name] <= option.maximum


SMALL_OPTIONS = {"smoothgrad": {"samples": 4}, "integrated_gradients": {"steps": 4},
                 "rise": {"masks": 10}}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_the_files_hold_the_library_map_its_top_k_and_the_probabilities(method, tmp_path,
                                                                         model_file, tiny_model,
                                                                         capsys):
    """The .npy map equals ``saliency``, the mask PNG ``top_k_mask`` of it, the JSON's
    probabilities ``predict``, each called on its own."""
    from sensitivity import load_image, predict, preprocess, saliency, top_k_mask

    options = SMALL_OPTIONS.get(method, {})
    image = _image(tmp_path / "a.png")
    out = tmp_path / "out"
    code = _explain(model_file, out, str(image), "--method", method,
                    *[f"--option={name}={value}" for name, value in options.items()])
    assert code == 0, capsys.readouterr().err
    model = tiny_model  # the object explain used (the weights of model_file)
    x = preprocess(load_image(image), SIZE)
    expected = saliency(model, x, method=method, **options)[0]
    saved = np.load(out / "a_map.npy", allow_pickle=False)
    np.testing.assert_allclose(saved, expected, rtol=1e-5,
                               atol=1e-6 * float(np.abs(expected).max()))
    with Image.open(out / "a_mask.png") as mask_image:
        mask = np.asarray(mask_image) == 0
    np.testing.assert_array_equal(mask, top_k_mask(expected, TOP_K))
    record = json.loads((out / "a.json").read_text())
    assert list(record["probabilities"]) == list(CLASS_NAMES)
    np.testing.assert_allclose(list(record["probabilities"].values()),
                               predict(model, x[None])[0], rtol=1e-5, atol=1e-7)


def test_the_record_carries_the_out_of_distribution_score_flag_and_threshold(tmp_path,
                                                                           model_file, capsys):
    """Without a detector the three facts are None; with one in the card (max logit plus
    energy, standardised) they are the score computed by hand from the model's logits, and the
    flag says whether it is above the threshold."""
    import shutil

    import keras
    from scipy.special import logsumexp

    from sensitivity import load_image, preprocess
    from sensitivity.model.io import read_model_card, sha256_of, write_model_card
    from sensitivity.trust.ood import Detector, detector_card, save_statistics

    images = [_image(tmp_path / f"{name}.png", seed=seed) for name, seed in (("a", 3), ("b", 4))]
    assert _explain(model_file, tmp_path / "plain", *map(str, images)) == 0
    for stem in ("a", "b"):
        record = json.loads((tmp_path / "plain" / f"{stem}.json").read_text())
        assert record["out_of_distribution_score"] is None
        assert record["out_of_distribution"] is None
        assert record["out_of_distribution_threshold"] is None

    raw = keras.saving.load_model(model_file, compile=False)
    x = np.stack([preprocess(load_image(path), SIZE) for path in images])
    logits = np.asarray(raw(x), np.float64)
    centre, scale = (-3.0, -2.0), (0.5, 2.0)
    expected = ((-logits.max(axis=1) - centre[0]) / scale[0]
                + (-logsumexp(logits, axis=1) - centre[1]) / scale[1])
    assert abs(expected[0] - expected[1]) > 1e-3
    threshold = float(expected.mean())  # one image above it, the other below

    fitted = tmp_path / "fitted" / "tiny.keras"
    fitted.parent.mkdir()
    shutil.copy(model_file, fitted)
    detector = Detector(("max_logit", "energy"), centre, scale, threshold)
    save_statistics(detector, fitted.with_name("tiny.ood.npz"))
    card = read_model_card(model_file)
    card["out_of_distribution"] = {**detector_card(detector), "statistics": "tiny.ood.npz",
                                   "statistics_sha256": sha256_of(
                                       fitted.with_name("tiny.ood.npz"))}
    write_model_card(fitted, card)
    assert _explain(fitted, tmp_path / "out", *map(str, images)) == 0
    capsys.readouterr()
    for stem, value in zip(("a", "b"), expected, strict=True):
        record = json.loads((tmp_path / "out" / f"{stem}.json").read_text())
        assert record["out_of_distribution_score"] == pytest.approx(value, rel=1e-4, abs=1e-4)
        assert record["out_of_distribution"] is bool(value > threshold)
        assert record["out_of_distribution_threshold"] == pytest.approx(threshold)


def test_a_map_comes_with_the_notes_the_page_would_show(tmp_path, model_file, capsys):
    """The vanilla gradient above the model's native size: its caveat is recorded in the JSON
    and printed; at the native size, and for Grad-CAM above it, there is none."""
    from sensitivity.engine.choices import METHODS

    image = _image(tmp_path / "a.png")
    native = CIFAR_CARD["input_size"]
    runs = {"native": ("--size", str(native)), "above": ("--size", str(2 * native)),
            "gradcam": ("--size", str(2 * native), "--method", "gradcam")}
    for name, extra in runs.items():  # not _explain, which sets the size
        assert main(["explain", str(image), "--model", str(model_file), "--out",
                     str(tmp_path / name), *extra]) == 0
    printed = capsys.readouterr().out
    notes = {name: json.loads((tmp_path / name / "a.json").read_text())["notes"] for name in runs}
    above = f"gradient at {2 * native} px: {METHODS['gradient'].caveat}"  # as the page says it
    assert notes == {"native": [], "above": [above], "gradcam": []}
    assert printed.count("note: ") == 1 and METHODS["gradient"].caveat in printed


@pytest.mark.parametrize("size", [None, 32])
def test_a_flat_map_names_the_rule_side_only_where_the_model_takes_it(size):
    """A model whose logits ignore the image gives a map that is zero everywhere; the note names
    the side of its find_objects rule for a fully convolutional model, never for one whose
    input is fixed at 32 px (explain's --size could not take that side)."""
    import keras

    from sensitivity.cli.explain import explain_image
    from sensitivity.imaging.objects import rule_for
    from sensitivity.render.report import flat_map_note

    inputs = keras.Input((size, size, 3))
    features = keras.layers.Conv2D(2, 3, padding="same", kernel_initializer="zeros")(inputs)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(features))
    model = keras.Model(inputs, outputs)
    image = np.full((32, 32, 3), 100.0, np.float32)
    saliency_map, facts = explain_image(model, image, method="gradient", layer="logits",
                                        classes=[1], sign="abs", reduce_channels="max")
    side = rule_for(model).side
    assert side != 32 and not saliency_map.any()
    expected = flat_map_note(saliency_map, None if size else side)
    assert facts["notes"] == [expected]
    assert (f"boxes at {side} px" in expected) is (size is None)
