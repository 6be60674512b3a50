"""benchmark-maps: arguments, limits, faithfulness summary, outputs."""

from __future__ import annotations

import argparse
import csv
import math

import numpy as np
import pytest

from sensitivity.cli.parsers import add_benchmark_maps_parser
from sensitivity.metrics.localisation_benchmark import CONTROLS, parse_spec
from sensitivity.metrics.maps_benchmark import (
    DEFAULT_METHODS,
    format_faithfulness,
    format_find_objects,
    format_photos,
    run,
    scene_limits,
    summarise_faithfulness,
    write_csv,
)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sensitivity")
    add_benchmark_maps_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["benchmark-maps", *argv])


def test_arguments_and_defaults():
    args = _parse(["--data-dir", "d", "--methods", "gradcam", "cam:scales=0.75/1/1.5",
                   "--limit", "rise=5", "--limit", " cam = 3"])
    assert [s.label for s in args.methods] == ["gradcam", "cam:scales=0.75/1.0/1.5"]
    assert args.methods[1].options == {"scales": (0.75, 1.0, 1.5)}
    assert args.limit == [("rise", 5), ("cam", 3)]
    defaults = _parse(["--data-dir", "d"])
    assert defaults.methods == [parse_spec(m) for m in DEFAULT_METHODS]
    assert defaults.limit is None and defaults.side is None  # the model's rule's side
    assert (defaults.n, defaults.validation_n, defaults.faithfulness_n) == (300, 150, 100)


@pytest.mark.parametrize("argv", [
    ["--methods", "nope"], ["--methods", "gradcam:steps"], ["--limit", "rise"],
    ["--limit", "rise=0"], ["--limit", "rise=many"], ["--n", "0"], ["--validation-n", "-2"],
    ["--side", "0"], ["--steps", "x"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse(["--data-dir", "d", *argv])
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_data_dir_is_required():
    with pytest.raises(SystemExit) as exit_info:
        _parse(["--n", "3"])
    assert exit_info.value.code == 2


def test_scene_limits_by_label_or_name():
    specs = [parse_spec(t) for t in ("gradcam", "smoothgrad:samples=16", "cam",
                                     "cam:scales=0.75/1/1.5")]
    limits = [("smoothgrad", 100), ("cam", 7), ("cam:scales=0.75/1.0/1.5", 5), ("rise", 60)]
    assert scene_limits(specs, limits) == {
        "smoothgrad:samples=16": 100, "cam": 7, "cam:scales=0.75/1.0/1.5": 5}
    assert scene_limits(specs, []) == {}


def _faithfulness_rows() -> list[dict]:
    rows = []

    def add(method, fill, images, deletion, insertion):
        for i, d, s in zip(images, deletion, insertion, strict=True):
            rows.append({"method": method, "fill": fill, "image": i, "deletion_auc": d,
                         "insertion_auc": s})

    add("gradcam", "blur", [0, 1, 2], [0.2, 0.3, 0.1], [0.6, 0.5, 0.4])
    add("random", "blur", [0, 1, 2], [0.5, 0.4, 0.6], [0.3, 0.2, 0.4])
    # road: image 5 has no random row, so it is left out of the paired difference only.
    add("gradcam", "road", [0, 5], [0.4, 0.9], [0.3, 0.5])
    add("random", "road", [0], [0.7], [0.1])
    return rows


def test_summarise_faithfulness_pairs_with_random_by_hand():
    summary = summarise_faithfulness(_faithfulness_rows())
    assert [(e["method"], e["fill"]) for e in summary] == [
        ("gradcam", "blur"), ("random", "blur"), ("gradcam", "road"), ("random", "road")]
    blur, random_blur, road, _ = summary
    # Deletion 0.2, 0.3, 0.1 (sd 0.1); minus random 0.5, 0.4, 0.6: -0.3, -0.1, -0.5 (sd 0.2).
    assert blur["deletion_auc"] == pytest.approx(0.2)
    assert blur["deletion_auc_se"] == pytest.approx(0.1 / math.sqrt(3))
    assert blur["deletion_auc_vs_random"] == pytest.approx(-0.3)
    assert blur["deletion_auc_vs_random_se"] == pytest.approx(0.2 / math.sqrt(3))
    # Insertion minus random: 0.3, 0.3, 0.0 (sd sqrt(0.03)).
    assert blur["insertion_auc_vs_random"] == pytest.approx(0.2)
    assert blur["insertion_auc_vs_random_se"] == pytest.approx(math.sqrt(0.03) / math.sqrt(3))
    assert random_blur["deletion_auc_vs_random"] == 0.0
    assert random_blur["deletion_auc_vs_random_se"] == 0.0
    # The mean takes both road images (sd of 0.4, 0.9 is 0.3536), the difference only image 0.
    assert road["deletion_auc"] == pytest.approx(0.65)
    assert road["deletion_auc_se"] == pytest.approx(0.25)
    assert road["deletion_auc_vs_random"] == pytest.approx(-0.3)
    assert road["insertion_auc_vs_random"] == pytest.approx(0.2)
    line = format_faithfulness(summary).splitlines()[2]
    assert line == ("| gradcam | blur | 0.200 (0.058) | -0.300 (0.115) | 0.500 (0.058) | "
                    "0.200 (0.100) |")


def test_summarise_faithfulness_without_random_gives_nan_differences():
    rows = [r for r in _faithfulness_rows() if r["method"] != "random"]
    entry = summarise_faithfulness(rows)[0]
    assert entry["deletion_auc"] == pytest.approx(0.2)
    assert math.isnan(entry["deletion_auc_vs_random"])
    assert " | - | " in format_faithfulness([entry])


def test_write_csv_leaves_array_fields_out(tmp_path):
    rows = [{"method": "m", "ious": np.zeros(3), "pointing": 1.0},
            {"method": "n", "ious": np.ones(3), "pointing": 0.0, "extra": 5}]
    path = tmp_path / "rows.csv"
    write_csv(rows, path)
    with open(path, newline="") as fh:
        read = list(csv.reader(fh))
    assert read == [["method", "pointing"], ["m", "1.0"], ["n", "0.0"]]
    write_csv([], tmp_path / "none.csv")
    assert not (tmp_path / "none.csv").exists()


def test_format_find_objects_and_photos():
    rows = [{"corloc": 1.0, "boxacc": 1.0, "rule": "R"}, {"corloc": 0.0, "boxacc": 1 / 3,
                                                          "rule": "R"}]
    # CorLoc 1, 0: mean 0.5, se 0.7071 / sqrt(2); box accuracy 1, 1/3: 0.667, se 0.4714 / sqrt(2).
    assert format_find_objects(rows).splitlines()[2] == "| R | 0.500 (0.500) | 0.667 (0.333) | 2 |"
    photos = [
        {"photo": "p.jpg", "object": "dog", "method": "gradcam", "pointing": 1.0, "share": 0.75,
         "iou": math.nan},
        {"photo": "p.jpg", "object": "dog", "method": "find_objects", "pointing": math.nan,
         "share": math.nan, "iou": 0.4567},
    ]
    lines = format_photos(photos).splitlines()
    assert lines[2:] == ["| p.jpg | dog | gradcam | yes | 0.75 | - |",
                         "| p.jpg | dog | find_objects | - | - | 0.46 |"]


def test_out_must_be_a_folder(tmp_path):
    taken = tmp_path / "file"
    taken.write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        run(_parse(["--data-dir", "d", "--out", str(taken)]))


def _csv(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_run_end_to_end_on_the_shipped_model(tmp_path, cifar_dir, photos_dir, capsys,
                                            default_model_shared):
    out = tmp_path / "report"
    args = _parse(["--data-dir", str(cifar_dir), "--photos-dir", str(photos_dir), "--n", "2",
                   "--validation-n", "2", "--faithfulness-n", "3", "--steps", "4",
                   "--methods", "gradcam", "--out", str(out)])
    assert run(args) == 0
    names = ["localisation_rows.csv", "localisation_summary.csv", "localisation_by_size.csv",
             "find_objects.csv", "faithfulness.csv", "photos.csv", "report.md", "report.html"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    report = (out / "report.md").read_text()
    methods = ["gradcam", *CONTROLS]
    table = report.split("\n\n")[1].splitlines()  # the localisation table
    assert [line.split(" | ")[0] for line in table[2:]] == [f"| {m}" for m in methods]
    assert "| find_objects |" in report and report in capsys.readouterr().out
    rows = _csv(out / "localisation_rows.csv")
    assert {r["split"] for r in rows} == {"validation", "test"}
    assert {r["method"] for r in rows} == set(methods)
    assert "largest_ious" not in rows[0] and "strongest_ious" not in rows[0]
    test_objects = [r for r in rows if r["split"] == "test" and r["method"] == "gradcam"]
    assert len(_csv(out / "find_objects.csv")) == len(test_objects)
    summary = _csv(out / "localisation_summary.csv")
    assert [r["method"] for r in summary] == methods
    assert all(r["thresholds_from"] == "validation" for r in summary)
    faith = _csv(out / "faithfulness.csv")
    assert len(faith) == len(methods) * 2 * 3  # methods x fills (blur, road) x images
    assert all(0 <= float(r["deletion_auc"]) <= 1 for r in faith)
    photos = _csv(out / "photos.csv")
    assert {(r["photo"], r["object"], r["method"]) for r in photos} == {
        (p, o, m) for p, o in (("dog.jpg", "dog"), ("dog.jpg", "pickup"), ("person.jpg", "dog"),
                               ("person.jpg", "horse")) for m in ("gradcam", "find_objects")}
    page = (out / "report.html").read_text()
    # plotly.js is inlined; no script is fetched from the network.
    assert "<script src=" not in page.replace(" ", "") and "Plotly" in page
