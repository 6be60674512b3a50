"""Saliency metrics against values worked out by hand.

The model stub sees a 4x4 image; only the red channel of two pixels R = (x 2, y 1) and
(x 0, y 3) feeds the logit of class 0, with a weight that makes the logit ln 81 when both
are 255. The nine other logits are 0, so p(class 0) = 81 / (81 + 9) = 0.9 with both pixels,
9 / (9 + 9) = 0.5 with one of them black and 1 / 10 = 0.1 with both black.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sensitivity
from sensitivity.metrics import (
    area_under_curve,
    box_mass,
    center_box,
    center_map,
    corloc,
    counterfactual,
    deletion_curve,
    discriminates,
    edge_map,
    fill_image,
    insertion_curve,
    perturbation_curves,
    perturbed_images,
    pointing_game,
    random_map,
    randomization_check,
    rank_values,
    spearman,
    step_counts,
)
from tests.helpers import class_pattern

R = [(1, 2), (3, 0)]  # (row, column) of the two pixels the stub looks at


@pytest.fixture(scope="module")
def stub():
    import keras

    model = keras.Sequential(
        [keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(10, name="logits")]
    )
    kernel = np.zeros((48, 10), np.float32)
    for row, col in R:
        kernel[(row * 4 + col) * 3 + 0, 0] = math.log(81) / 510
    model.get_layer("logits").set_weights([kernel, np.zeros(10, np.float32)])
    return model


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    pixels = np.full((4, 4, 3), 100.0, np.float32)
    for row, col in R:
        pixels[row, col, 0] = 255.0
    return pixels


def _map(first: list[tuple[int, int]], last: list[tuple[int, int]] = ()) -> np.ndarray:
    """A 4x4 map ranking ``first`` on top (in order) and ``last`` at the bottom."""
    values = np.full((4, 4), 0.5)
    for i, (row, col) in enumerate(first):
        values[row, col] = 2.0 - 0.1 * i
    for row, col in last:
        values[row, col] = 0.0
    return values


def test_stub_probabilities(stub, image):
    assert sensitivity.predict(stub, image)[0, 0] == pytest.approx(0.9, abs=1e-6)


def test_area_under_curve_by_hand():
    assert area_under_curve([0, 1], [1, 1]) == 1.0
    assert area_under_curve([0, 0.5, 1], [0, 0.5, 1]) == 0.5
    assert area_under_curve([0, 0.25, 1], [1, 0, 0]) == 0.125
    with pytest.raises(ValueError):
        area_under_curve([0, 1], [1])


def test_steps_and_perturbed_images():
    np.testing.assert_array_equal(step_counts(16, 8), [0, 2, 4, 6, 8, 10, 12, 14, 16])
    np.testing.assert_array_equal(step_counts(10, 4), [0, 2, 5, 8, 10])  # round half to even
    image = np.arange(4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3)
    values = np.arange(16, dtype=float).reshape(4, 4)[::-1]  # bottom-right pixel is least
    fractions, deleted = perturbed_images(image, values, "deletion", steps=4, fill="black")
    np.testing.assert_allclose(fractions, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(deleted[0], image)
    np.testing.assert_array_equal(deleted[1][:1], 0)  # the top row (largest values) goes first
    np.testing.assert_array_equal(deleted[1][1:], image[1:])
    assert (deleted[4] == 0).all()
    _, inserted = perturbed_images(image, values, "insertion", steps=4, fill="mean")
    np.testing.assert_allclose(inserted[0], np.broadcast_to(image.mean(axis=(0, 1)), image.shape))
    np.testing.assert_array_equal(inserted[2][:2], image[:2])
    np.testing.assert_array_equal(inserted[4], image)


def test_fills():
    image = np.zeros((8, 8, 3), np.float32) + np.array([10, 20, 30], np.float32)
    np.testing.assert_allclose(fill_image(image, "blur"), image, atol=1e-4)  # constant stays
    image[:, :4] = 0
    blurred = fill_image(image, "blur", blur_sigma=8.0)
    assert blurred[:, 3, 0].mean() > 0 and blurred[:, 4, 0].mean() < 10
    np.testing.assert_allclose(fill_image(image, "mean")[0, 0], [5, 10, 15])
    assert (fill_image(image, "black") == 0).all()
    with pytest.raises(ValueError, match="fill"):
        fill_image(image, "white")


@pytest.mark.parametrize(
    ("first", "last", "deletion", "insertion"),
    [
        (R, [], 0.15, 0.85),  # the two pixels first: probability falls (rises) in one step
        ([], R, 0.85, 0.15),  # ... last: it holds until the last step
        ([R[0], (0, 0), R[1]], [], 0.2, 0.8),  # 0.9, 0.5, 0.1, ...: (1.4 + 0.6) / 16 + 0.6 / 8
    ],
)
def test_deletion_and_insertion_by_hand(stub, image, first, last, deletion, insertion):
    values = _map(first, last)
    down = deletion_curve(stub, image, values, 0, steps=8, fill="black")
    up = insertion_curve(stub, image, values, 0, steps=8, fill="black")
    assert down.auc == pytest.approx(deletion, abs=1e-6)
    assert up.auc == pytest.approx(insertion, abs=1e-6)
    assert down.probabilities[0] == pytest.approx(0.9, abs=1e-6)
    assert down.probabilities[-1] == pytest.approx(0.1, abs=1e-6)
    assert up.probabilities[0] == pytest.approx(0.1, abs=1e-6)
    assert down.kind == "deletion" and up.kind == "insertion" and len(down.fractions) == 9


def test_batch_curves_match_single_curves(stub, image):
    rng = np.random.default_rng(0)
    images = np.stack([image, image * 0.5, image[::-1]])
    maps = rng.random((3, 4, 4))
    for kind, single in (("deletion", deletion_curve), ("insertion", insertion_curve)):
        fractions, probabilities, aucs = perturbation_curves(
            stub, images, maps, [0, 0, 3], kind=kind, steps=4, fill="mean", batch_size=4
        )
        for i, c in enumerate([0, 0, 3]):
            curve = single(stub, images[i], maps[i], c, steps=4, fill="mean")
            np.testing.assert_allclose(probabilities[i], curve.probabilities, atol=1e-6)
            assert aucs[i] == pytest.approx(curve.auc, abs=1e-6)
        np.testing.assert_allclose(fractions, [0, 0.25, 0.5, 0.75, 1])


def test_counterfactual_top_k_and_random_control(stub, image):
    values = _map(R)
    removed = counterfactual(stub, image, values, 0, 2, mode="remove", fill="black", trials=20)
    assert removed.before == pytest.approx(0.9, abs=1e-6)
    assert removed.after == pytest.approx(0.1, abs=1e-6)
    # Two random pixels out of 16 hit 0, 1 or 2 of the stub's pixels.
    for p in removed.random_trials:
        assert min(abs(p - v) for v in (0.9, 0.5, 0.1)) < 1e-6
    assert removed.random_after > removed.after
    assert removed.random_after == pytest.approx(removed.random_trials.mean())
    kept = counterfactual(stub, image, values, 0, 2, mode="keep", fill="black", trials=4)
    assert kept.after == pytest.approx(0.9, abs=1e-6)
    again = counterfactual(stub, image, values, 0, 2, mode="keep", fill="black", trials=4)
    np.testing.assert_array_equal(kept.random_trials, again.random_trials)
    with pytest.raises(ValueError, match="k must be"):
        counterfactual(stub, image, values, 0, 17)
    with pytest.raises(ValueError, match="mode"):
        counterfactual(stub, image, values, 0, 2, mode="swap")


def test_controls():
    a, b = random_map((5, 7), seed=1), random_map((5, 7), seed=2)
    assert a.shape == (5, 7) and a.dtype == np.float32 and 0 <= a.min() and a.max() < 1
    np.testing.assert_array_equal(a, random_map((5, 7), seed=1))
    assert not np.array_equal(a, b)
    step = np.zeros((6, 6, 3), np.float32)
    step[:, 3:] = 100.0  # a vertical edge between columns 2 and 3
    edges = edge_map(step)
    expected = np.zeros((6, 6))
    expected[:, 2:4] = 400.0  # (1 + 2 + 1) * (100 - 0)
    np.testing.assert_allclose(edges, expected, atol=1e-3)
    bump = center_map((9, 9))
    assert np.unravel_index(bump.argmax(), bump.shape) == (4, 4)
    assert tuple(center_box((96, 96), (32, 32))) == (32, 32, 64, 64, 1.0)
    assert tuple(center_box((10, 20), (4, 5))[:4]) == (7, 3, 12, 7)


def test_pointing_game_and_corloc():
    values = np.zeros((10, 10))
    values[3, 5] = 1.0  # the maximum at x 5, y 3
    assert pointing_game(values, (4, 2, 7, 5))
    assert not pointing_game(values, (6, 2, 9, 5))
    assert pointing_game(values, (6, 2, 9, 5), tolerance=1)
    assert not pointing_game(np.zeros((10, 10)), (1, 1, 9, 9))  # ties: the first pixel
    truth = (0, 0, 4, 4)
    good, poor = (0, 0, 4, 3, 0.2), (2, 2, 6, 6, 0.8)  # IoU 0.75 and 4 / 28
    assert corloc([good, poor], truth)
    assert not corloc([poor, good], truth)
    assert corloc([poor, good], truth, top=None)
    assert not corloc([], truth)


def test_class_discrimination_by_mass():
    values = np.zeros((8, 16))
    values[2:4, 2:4] = 1.0  # 4 units in the left box
    values[2:4, 10:12] = 0.5  # 2 units in the right box
    values[7, 7] = 2.0  # 2 units in neither
    left, right = (0, 0, 8, 8), (8, 0, 16, 8)
    assert box_mass(values, (0, 0, 6, 6)) == pytest.approx(0.5)
    assert box_mass(values, right) == pytest.approx(0.25)
    assert discriminates(values, left, right) and not discriminates(values, right, left)
    assert not discriminates(np.zeros((8, 16)), left, right)


def test_spearman_by_hand():
    np.testing.assert_array_equal(rank_values([10, 20, 20, 30]), [1, 2.5, 2.5, 4])
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1..5) and (1, 2, 3.5, 5, 3.5): 8 / sqrt(10 * 9.5)
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95))
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0


@pytest.fixture(scope="module")
def tiny_wrn():
    import keras

    from sensitivity.wrn import build_wrn

    keras.utils.set_random_seed(0)
    return build_wrn(10, 1)


@pytest.fixture(scope="module")
def small_images() -> np.ndarray:
    rng = np.random.default_rng(0)
    images = np.stack([class_pattern(c) for c in (1, 6, 8)]).astype(np.float32)
    return np.clip(images + rng.normal(0, 20, images.shape), 0, 255).astype(np.float32)


def test_randomisation_flags_a_map_that_ignores_the_model(tiny_wrn, small_images):
    def edges(model, images, classes):
        return np.stack([edge_map(im) for im in images])

    check = randomization_check(tiny_wrn, small_images, edges)
    assert check.flagged
    np.testing.assert_allclose(check.correlations, 1.0)


def test_randomisation_passes_the_gradient_and_leaves_the_model_alone(tiny_wrn, small_images):
    before = [w.copy() for w in tiny_wrn.get_weights()]
    check = randomization_check(tiny_wrn, small_images[:2], "gradient")
    assert not check.flagged
    assert check.correlations[0] == 1.0
    assert check.correlations[check.middle_step] < 0.6
    assert check.layers[0] == "logits" and check.layers[-1] == "stem_conv"
    assert len(check.layers) == 17 and check.middle_step == 9
    assert check.per_image.shape == (18, 2)
    for old, new in zip(before, tiny_wrn.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    with pytest.raises(ValueError, match="unknown"):
        randomization_check(tiny_wrn, small_images[:1], "gradient", layers=["nope"])


_TWO_DEVICES = """
import json, sys
import numpy as np
import sensitivity
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from sensitivity.distributed import default_strategy, distributed_predict
from sensitivity.metrics import perturbation_curves
model = keras.saving.load_model(sys.argv[1], compile=False)
data = np.load(sys.argv[2])
strategy = default_strategy()
probabilities = distributed_predict(model, data["images"], batch_size=4)
_, curves, aucs = perturbation_curves(
    model, data["images"], data["maps"], data["classes"], steps=4, batch_size=6
)
np.savez(sys.argv[3], probabilities=probabilities, curves=curves, aucs=aucs)
print(json.dumps({"strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync}))
"""


def test_distributed_batch_path_gives_the_same_numbers_on_two_devices(tmp_path, tiny_wrn):
    from sensitivity.distributed import default_strategy, distributed_predict

    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    maps = rng.random((5, 32, 32))
    classes = np.array([0, 3, 3, 9, 1])
    model_path = tmp_path / "tiny.keras"
    tiny_wrn.save(model_path)
    np.savez(tmp_path / "data.npz", images=images, maps=maps, classes=classes)
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    result = subprocess.run(
        [sys.executable, "-c", _TWO_DEVICES, str(model_path), str(tmp_path / "data.npz"),
         str(tmp_path / "out.npz")],
        capture_output=True, text=True, cwd=root, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"strategy": "MirroredStrategy", "replicas": 2' in result.stdout
    two = np.load(tmp_path / "out.npz")

    assert default_strategy().num_replicas_in_sync == 1
    one = distributed_predict(tiny_wrn, images, batch_size=4)
    np.testing.assert_allclose(one, sensitivity.predict(tiny_wrn, images), atol=1e-6)
    np.testing.assert_allclose(two["probabilities"], one, atol=1e-5)
    _, curves, aucs = perturbation_curves(tiny_wrn, images, maps, classes, steps=4, batch_size=6)
    np.testing.assert_allclose(two["curves"], curves, atol=1e-5)
    np.testing.assert_allclose(two["aucs"], aucs, atol=1e-5)
