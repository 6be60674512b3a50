"""Smoke runs of the benchmark scripts with tiny settings: each runs to its end and reports.

The three that need a running dashboard (warm_upload, load_test, heavy_and_light) run in
tests/web/test_browser.py, the first two on the server it has started.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers import benchmark_script


def kind_script_table(module, tmp_path, capsys, cifar_dir, photos_dir, *options: str) -> str:
    """Run a scene-kind script's ``main`` on one validation scene per kind with ``options``;
    check that it printed and wrote the same table under its header, and return it."""
    out = tmp_path / "table.md"
    assert module.main(["--data-dir", str(cifar_dir), "--photos-dir", str(photos_dir),
                        "--n", "1", *options, "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("### validation scenes, 1 per kind, the default model")
    assert text.strip() in capsys.readouterr().out
    return text


def test_tune_localisation_runs_to_the_end(tmp_path, cifar_dir, photos_dir, capsys,
                                           default_model_shared):
    module = benchmark_script("tune_localisation")
    out = tmp_path / "tune.md"
    assert module.main(["--data-dir", str(cifar_dir), "--photos-dir", str(photos_dir),
                        "--n", "2", "--sides", "64", "--methods", "gradcam", "center",
                        "--class-thresholds", "0.5,1", "--evidence-sides", "48,64",
                        "--evidence-activations", "softmax,sigmoid", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("### side 64 (2 validation scenes")
    assert "| gradcam |" in text and "| center |" in text
    assert "| 0.5 | " in text and "| 1.0 | " in text  # the class thresholds' rows
    for side in (48, 64):
        for activation in ("softmax", "sigmoid"):
            assert f"no class mask (side {side}, {activation} activation, 2 validation" in text
    assert text.strip() in capsys.readouterr().out
    # Found {1, 2}, {3}, {} against true {1}, {3, 4}, {5}: 2 hits of 3 found and of 4 true.
    assert module.class_scores([{1, 2}, {3}, set()], [{1}, {3, 4}, {5}]) == pytest.approx(
        (2 / 3, 1 / 2, 4 / 7))
    assert module.class_scores([{1}], [{2}]) == (0.0, 0.0, 0.0)


def test_tune_sides_runs_to_the_end_and_picks_sides_as_find_objects_does(
        tmp_path, cifar_dir, photos_dir, capsys, default_model):
    module = benchmark_script("tune_sides")
    text = kind_script_table(module, tmp_path, capsys, cifar_dir, photos_dir,
                             "--sides", "32,96", "--candidates", "96", "96/32")
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| 96")}
    assert set(rows) == {"| 96", "| 96/32"}
    assert all(len(re.findall(r"\d\.\d{3} \(", row)) == len(module.KINDS) + 1
               for row in rows.values())
    # The script's choice of side is find_objects' own: the same first box for each object.
    import dataclasses

    from sensitivity.imaging.discovery import iou
    from sensitivity.imaging.objects import find_objects, rule_for
    from sensitivity.metrics.scenes import photo_like_scene, scene_pool

    images, labels, _ = scene_pool("validation", cifar_dir)
    scenes = [("big", photo_like_scene(images, labels, seed=(5, k), canvas=(96, 112),
                                       object_size=(72, 96), num_objects=1)) for k in range(3)]
    scenes.append(("benchmark", photo_like_scene(images, labels, seed=9, num_objects=3)))
    measured = module.measure_sides(default_model, scenes, [32, 96])
    rule = dataclasses.replace(rule_for(default_model), side=96, sides=(32,))

    def hit(image, box, label) -> float:
        found = find_objects(default_model, image, classes=[label], max_objects=1, rule=rule)
        return float(bool(found) and iou(found[0].box, box) >= 0.5)

    expected = [hit(scene.image, box, label) for _, scene in scenes
                for box, label in zip(scene.boxes, scene.labels, strict=True)]
    assert list(module.corloc(measured, (96, 32))) == expected


def test_tune_box_floor_runs_to_the_end_and_floors_as_find_objects_does(
        tmp_path, cifar_dir, photos_dir, capsys, default_model):
    import dataclasses

    from sensitivity.imaging.objects import find_objects, rule_for
    from sensitivity.metrics.scenes import photo_like_scene, scene_pool

    module = benchmark_script("tune_box_floor")
    text = kind_script_table(module, tmp_path, capsys, cifar_dir, photos_dir,
                             "--floors", "0,1")
    rows = [line for line in text.splitlines() if line.startswith(("| 0 |", "| 1 |"))]
    assert len(rows) == 2 and all(row.count("F1") == len(module.KINDS) + 1 for row in rows)
    # The script's floor keeps the boxes find_objects keeps with that floor.
    images, labels, _ = scene_pool("validation", cifar_dir)
    scenes = [("two", photo_like_scene(images, labels, seed=(3, k), num_objects=2,
                                       same_class=True)) for k in range(3)]
    found = module.class_boxes(default_model, scenes, 3)
    for floor in (0.0, 0.3, 1.0):
        rule = dataclasses.replace(rule_for(default_model), box_floor=floor)
        for (_, scene), row in zip(scenes, found, strict=True):
            kept = find_objects(default_model, scene.image, classes=[scene.labels[0]], rule=rule)
            assert [f.box[:4] for f in kept] == [
                b[:4] for b in module.strong_boxes_of(row, floor)]
    # Counting by hand: one object; a hit, then a box on nothing.
    from sensitivity.imaging.discovery import Box

    row = {"kind": "k", "truth": [Box(0, 0, 10, 10)],
           "found": [Box(0, 0, 10, 10, 0.8), Box(20, 20, 30, 30, 0.2)]}
    assert module.counts([row], 0.0) == (1, 2, 1) and module.counts([row], 0.5) == (1, 1, 1)


def test_tune_classes_runs_to_the_end_and_looks_for_find_objects_classes(
        tmp_path, cifar_dir, photos_dir, capsys, default_model, monkeypatch):
    import dataclasses

    from sensitivity.imaging import objects
    from sensitivity.metrics.scenes import photo_like_scene, scene_pool

    module = benchmark_script("tune_classes")
    text = kind_script_table(module, tmp_path, capsys, cifar_dir, photos_dir,
                             "--thresholds", "0.5,0.9999999")
    rule = objects.rule_for(default_model)
    first = rule.evidence_side or rule.side
    rows = [line for line in text.splitlines() if line.startswith((f"| at {first} alone",
                                                                   "| highest"))]
    # Two thresholds, read at the first side alone and, for a rule with sides, over all.
    assert len(rows) == 2 * (1 + bool(rule.sides)) and all(r.count("F1") == 6 for r in rows)
    assert "| 0.9999999 |" in text
    # Read over all sides, the script's classes are those find_objects looks for.
    images, labels, _ = scene_pool("validation", cifar_dir)
    scenes = [("k", photo_like_scene(images, labels, seed=(4, k))) for k in range(3)]
    evidence = module.scene_evidence(default_model, scenes, list(rule.evidence_sides))
    candidates, looked_for = objects.candidate_classes, []
    monkeypatch.setattr(objects, "candidate_classes",
                        lambda *a: looked_for.append(candidates(*a)) or looked_for[-1])
    for threshold in (0.5, 0.9999999):
        strict = dataclasses.replace(rule, min_probability=threshold)
        for (_, scene), row in zip(scenes, evidence, strict=True):
            objects.find_objects(default_model, scene.image, rule=strict)
            expected = candidates(row["evidence"], 3, threshold)
            assert looked_for[-1] == expected
            hits, looked, held = module.class_counts([row], slice(None), threshold, 3)
            assert (hits, looked, held) == (len(set(expected) & set(scene.labels)),
                                            len(expected), len(set(scene.labels)))


def test_find_objects_speed_runs_to_the_end(photos_dir, capsys):
    module = benchmark_script("find_objects_speed")
    assert module.main(["--photos-dir", str(photos_dir), "--photos", "dog.jpg",
                        "--repeats", "1", "--masks", "5", "5,9"]) == 0
    out = capsys.readouterr().out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| dog.jpg |")]
    assert [row[1] for row in rows] == ["card's rule", "baseline", "card's rule at its side alone",
                                        "card's rule, classes 5", "card's rule, classes 5,9"]
    assert all(float(row[2]) > 0 for row in rows)
    assert rows[1][3:] == ["1.00", "baseline |"] and rows[3][3] == "1.00"
    assert rows[4][4] == "card's rule, classes 5 |"
    assert "card's rule: ObjectRule(method='cam'" in out


def test_position_head_cost_runs_to_the_end(photos_dir, capsys):
    module = benchmark_script("position_head_cost")
    assert module.main(["--photo", str(photos_dir / "dog.jpg"), "--sides", "32",
                        "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| 32 (")]
    assert len(rows) == 1 and rows[0][0] == "| 32 (6x8 positions)"  # 768x576 -> 32x24 px
    seconds = [float(cell.split()[0]) for cell in rows[0][1:3] + rows[0][4:6]]
    assert all(value > 0 for value in seconds)
    assert "shipped head (3, 7) against (3,)" in out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| 32 | ")]
    targets = [row for row in rows if row[1] in ("gradient", "layercam")]
    assert [row[1] for row in targets] == ["gradient", "layercam"]
    assert all(float(cell.split()[0]) > 0 for row in targets for cell in row[2:4])
    steps = [row for row in rows if row[1].endswith(" ms")]  # the page's map as it grew
    assert len(steps) == 1 and all(float(cell.split()[0]) > 0 for cell in steps[0][1:4])
    assert steps[0][4].startswith("1.00 / ")
    threads = [row for row in rows if row[1] in ("cubed", "detail", "detail and mirror")]
    assert [row[1] for row in threads] == ["cubed", "detail", "detail and mirror"]
    assert all(float(cell.split()[0]) > 0 for row in threads for cell in row[2:4])
    from sensitivity.model import position_head

    assert position_head.one_blas_thread.__name__ == "one_blas_thread"  # put back


def test_rise_masks_runs_to_the_end(cifar_dir, capsys, default_model_shared):
    module = benchmark_script("rise_masks")
    assert module.main(["--data-dir", str(cifar_dir), "--n", "2", "--counts", "10,20",
                        "--reference", "40"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| 10 |") or line.startswith("| 20 |")]
    assert len(rows) == 4  # each printed as measured, then in the final table
    # Each row holds two correlations in -1..1, each with its quartiles.
    for row in rows:
        numbers = [float(v) for v in re.findall(r"-?\d+\.\d+", row)]
        assert len(numbers) == 6 and all(-1.0 <= v <= 1.0 for v in numbers)


def test_bench_saliency_quick_runs_to_the_end(tmp_path, cifar_dir, capsys):
    module = benchmark_script("bench_saliency")
    out = tmp_path / "bench.md"
    assert module.main(["--quick", "--repeats", "1", "--batches", "1", "--methods", "gradient",
                        "--implementations", "engine", "--matmul-size", "64",
                        "--data-dir", str(cifar_dir), "--out", str(out)]) == 0
    report = out.read_text()
    assert "tiny random WRN-10-1 (--quick)" in report
    assert report.startswith("# Saliency benchmark results")
    lines = report.splitlines()
    (floor,) = [line for line in lines if line.startswith("| gradient | 1 | 1 |")]
    (timed,) = [line for line in lines if line.startswith("| gradient | 1 | engine |")]
    assert float(floor.split("|")[4]) > 0 and float(timed.split("|")[4]) > 0  # ms / image
    printed = capsys.readouterr().out
    assert report in printed and printed.rstrip().endswith(f"wrote {out}")


def test_ig_completeness_runs_to_the_end(cifar_dir, capsys, default_model_shared):
    module = benchmark_script("ig_completeness")
    module.main(["--data-dir", str(cifar_dir), "--n", "14", "--skip", "10", "--steps", "4"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "4 images, 4 steps, black baseline, predicted class"
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert sorted(rows) == ["adaptive", "uniform"]
    for images, *numbers in rows.values():
        assert 1 <= int(images) <= 4  # the images whose score changes by 1 logit or more
        mean, median, p90, largest, seconds = (float(v) for v in numbers)
        assert 0 <= median <= p90 <= largest and 0 <= mean <= largest and seconds > 0


def test_gradient_cost_runs_to_the_end(capsys):
    module = benchmark_script("gradient_cost")
    assert module.main(["--repeats", "1", "--samples", "1", "--size", "16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-8] == "| implementation | median ms / image | fastest | x engine | x floor |"
    names = [line.split("|")[1].strip() for line in lines[-6:]]
    assert names == ["engine", "graph", "xla", "no_bn", "forward", "smoothgrad"]
    assert lines[-6].startswith("| engine |") and "| 1.00 |" in lines[-6]
    assert "XLA's largest relative difference" in lines[-9]


def test_load_test_picks_each_class_by_rank(default_model, cifar_dir):
    """The load test's images: one per class, of its class, predicted as it, each the most
    probable of its class among the first 400 test images (no probability threshold: the
    shipped model's likeliest frog there has p < 0.9)."""
    from sensitivity import predict
    from sensitivity.model.data import load_split

    module = benchmark_script("load_test")
    chosen = module.likeliest_images(default_model, cifar_dir)
    assert [cls for cls, _ in chosen] == list(range(module.CONTEXTS))
    images, labels = load_split(cifar_dir, "test", limit=400)
    probabilities = predict(default_model, images.astype("float32"))
    for cls, image in chosen:
        (index,) = [i for i in range(len(images)) if (images[i] == image).all()]
        assert labels[index] == cls and probabilities[index].argmax() == cls
        # (the script predicts only the classes it needs: batched otherwise, hence approx)
        assert probabilities[index, cls] == pytest.approx(probabilities[labels == cls, cls].max(),
                                                          rel=1e-5)


def test_cold_start_runs_to_the_end(capsys):
    """One cold start of ``serve`` in Chromium: a report with each phase's seconds, in the order
    the phases happen (each is read from the same clock after the one before)."""
    module = benchmark_script("cold_start")
    assert module.main(["--repeats", "1", "--launchers", "serve"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed[printed.index("\n{") + 1 :])
    assert report["repeats"] == 1 and list(report["median"]) == ["serve"]
    phases = report["median"]["serve"]
    assert list(phases) == ["healthy_s", "uploader_s", "prediction_s", "first_heatmap_s"]
    seconds = list(phases.values())
    assert seconds[0] > 0 and seconds == sorted(seconds)
    assert printed.startswith("serve {'healthy_s': ")  # each run printed as it ends


def test_load_test_names_each_check_that_fails():
    module = benchmark_script("load_test")
    passed = {"page_errors": [], "analyses_after_warm_up": 5, "resident_mb_after_warm_up": 100.0,
              "resident_mb_at_end": 109.0, "peak_resident_mb": 1536.0}
    assert module.failures(passed, 5) == []
    assert module.MAX_MEMORY_MB == 1536 and module.failures(passed, 5, 1536) == []
    failed = passed | {"page_errors": ["TypeError: x is undefined"], "resident_mb_at_end": 110.0}
    assert module.failures(failed, 6, max_memory_mb=1000) == [
        "page error: TypeError: x is undefined",
        "5 analyses after the warm-up, fewer than 6",
        "resident memory grew 10.0% over the run",
        "peak resident memory 1536.0 MB, above 1000 MB",
    ]
    assert module.failures(passed | {"peak_resident_mb": 1536.1}, 5) == [
        "peak resident memory 1536.1 MB, above 1536 MB"]


def test_load_test_models_folder_holds_the_shipped_models_and_an_untrained_densenet(tmp_path):
    """``--extra-model densenet-121``'s folder: the shipped models (each file linked, so each
    loads checked against its card) and DenseNet121 with random weights and a card the loader
    accepts: CIFAR-10's class names, 32 px, its fixed input and softmax head read from it."""
    import sensitivity
    from sensitivity.model.io import MODELS_DIR, list_models, verify_model_file
    from sensitivity.model.labels import CLASS_NAMES

    module = benchmark_script("load_test")
    folder = module.models_folder(tmp_path, ["densenet-121"])
    entries = list_models(folder)
    shipped = [p.stem for p in sorted(MODELS_DIR.glob("*.keras"))]  # list_models order
    assert {"wrn-16-2", "wrn-16-3"} <= set(shipped)
    assert [(e.name, e.problem) for e in entries] == [
        (name, "") for name in ["densenet-121", *shipped]]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [p.name for p in MODELS_DIR.iterdir()] + ["densenet-121.json", "densenet-121.keras"])
    for name in ("wrn-16-2", "wrn-16-3"):
        assert verify_model_file(folder / f"{name}.keras") == verify_model_file(
            MODELS_DIR / f"{name}.keras")
    card = entries[0].card
    assert card.class_names == tuple(CLASS_NAMES) and card.native_size == 32
    assert card.fixed_size and card.head == "softmax"
    model = sensitivity.load_model(folder / "densenet-121.keras")  # checksum and card checked
    assert model.name == "densenet121" and model.count_params() > 7_000_000
    assert model.output_shape == (None, 10) and model.input_shape == (None, 32, 32, 3)
    assert module.model_files(folder) == {
        "densenet-121": folder / "densenet-121.keras",
        **{name: folder / f"{name}.keras" for name in shipped},
        "wrn-16-3": MODELS_DIR / "wrn-16-3.keras"}
