"""The benchmark-maps command: arguments, outputs, and the controls' known values."""

from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest

from sensitivity.maps_benchmark import (
    CONTROLS,
    MEASURES,
    add_parser,
    benchmark,
    format_table,
    parse_methods,
    run,
    summarise,
)
from sensitivity.scenes import scene_from_pool
from tests.helpers import class_pattern


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sensitivity")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["benchmark-maps", *argv])


@pytest.fixture(scope="module")
def tiny_model():
    import keras

    from sensitivity.wrn import build_wrn

    keras.utils.set_random_seed(0)
    return build_wrn(10, 1)


def test_methods_are_validated():
    assert parse_methods("gradient, gradcam,gradient,edge") == ["gradient", "gradcam"]
    with pytest.raises(ValueError, match="unknown method 'gradients'"):
        parse_methods("gradients")
    with pytest.raises(ValueError, match="empty"):
        parse_methods(" , ")
    with pytest.raises(SystemExit):
        _parse(["--data-dir", "x", "--n", "0"])
    with pytest.raises(SystemExit):
        _parse(["--n", "3"])  # --data-dir is required


def test_controls_give_their_known_values(tiny_model):
    labels = np.arange(10)
    images = np.stack([class_pattern(c) for c in labels])
    rows = benchmark(tiny_model, images, labels, ["gradient"], n=3, seed=1, steps=2, size=72)
    assert [r["method"] for r in rows] == ["gradient"] * 3 + [m for m in CONTROLS for _ in "abc"]
    for row in rows:
        assert set(MEASURES) <= set(row) and 0 <= row["deletion_auc"] <= 1
        if row["method"] in CONTROLS:
            # A control's map does not depend on the class: one of the two objects wins.
            assert row["discrimination"] == 0.5
    for row in (r for r in rows if r["method"] == "center"):
        scene = scene_from_pool(images, labels, num_objects=1, size=72, seed=100_003 + row["scene"])
        box = scene.boxes[0]
        inside = box.x0 <= 35 < box.x1 and box.y0 <= 35 < box.y1  # first maximum of the bump
        assert row["pointing"] == float(inside)
    # Deletion and insertion are measured on the native 32x32 test image the row names.
    from sensitivity.metrics import deletion_curve, edge_map

    for row in (r for r in rows if r["method"] == "edge"):
        image = images[row["test_image"]].astype(np.float32)
        label = int(labels[row["test_image"]])
        expected = deletion_curve(tiny_model, image, edge_map(image), label, steps=2).auc
        assert row["deletion_auc"] == pytest.approx(expected, abs=1e-6)
    summary = summarise(rows)
    assert list(summary) == ["gradient", *CONTROLS]
    table = format_table(summary)
    assert "insertion_auc" in table and "center" in table


def test_run_writes_csv_and_self_contained_html(tmp_path, cifar_dir, tiny_model, capsys):
    from sensitivity.model_io import write_model_card

    model_path = tmp_path / "tiny.keras"
    tiny_model.save(model_path)
    write_model_card(model_path, {"name": "tiny"})
    out = tmp_path / "report"
    args = _parse(
        ["--data-dir", str(cifar_dir), "--n", "2", "--methods", "gradient", "--out", str(out),
         "--model", str(model_path), "--steps", "2", "--size", "72"]
    )  # fmt: skip
    assert run(args) == 0
    with open(out / "maps_benchmark.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * (1 + len(CONTROLS))
    assert {r["method"] for r in rows} == {"gradient", *CONTROLS}
    page = (out / "maps_benchmark.html").read_text()
    # plotly.js is inlined (over 3 MB); no script is fetched from the network.
    assert "<script src=" not in page.replace(" ", "") and len(page) > 3_000_000
    assert (out / "maps_benchmark_summary.csv").exists()
    printed = capsys.readouterr().out
    assert "deletion_auc" in printed and "gradient" in printed
    # The real-photo check ran on the shared photographs: two objects in each of two photos.
    with open(out / "maps_benchmark_photos.csv") as fh:
        photo_rows = list(csv.DictReader(fh))
    assert {(r["photo"], r["object"]) for r in photo_rows} == {
        ("dog.jpg", "dog"), ("dog.jpg", "pickup"), ("person.jpg", "dog"), ("person.jpg", "horse")}
    assert all(0 <= float(r["share"]) <= 1 and r["pointing"] in ("0.0", "1.0") for r in photo_rows)
    assert "| dog.jpg | pickup | gradient |" in printed
    bad = _parse(["--data-dir", str(cifar_dir), "--methods", "nope", "--out", str(out)])
    with pytest.raises(ValueError, match="unknown method"):
        run(bad)
    small = _parse(["--data-dir", str(cifar_dir), "--size", "40", "--out", str(out)])
    with pytest.raises(ValueError, match="--size"):
        run(small)
