"""Saliency metrics against values worked out by hand.

The model stub sees a 4x4 image; only the red channel of two pixels R = (x 2, y 1) and
(x 0, y 3) feeds the logit of class 0, with a weight that makes the logit ln 81 when both
are 255. The nine other logits are 0, so p(class 0) = 81 / (81 + 9) = 0.9 with both pixels,
9 / (9 + 9) = 0.5 with one of them black and 1 / 10 = 0.1 with both black.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import sensitivity
from sensitivity.imaging.discovery import Box
from sensitivity.metrics import sanity
from sensitivity.metrics.controls import center_box, center_map, edge_map, random_map
from sensitivity.metrics.fills import fill_image, road_impute
from sensitivity.metrics.localisation import (
    box_accuracy,
    corloc,
    discriminates,
    mass_in_box,
    max_box_accuracy,
    max_box_accuracy_same_set,
    pointing_game,
    threshold_box,
)
from sensitivity.metrics.perturbation import (
    area_under_curve,
    counterfactual,
    deletion_curve,
    insertion_curve,
    perturbation_curves,
    perturbed_images,
    step_counts,
)
from sensitivity.metrics.sanity import randomization_check, rank_values, spearman
from sensitivity.model.data import load_split
from tests.helpers import PythonProcess, class_pattern

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


def test_default_blur_fill_of_an_impulse_is_a_gaussian_of_the_documented_size():
    # 80 x 120 image: the default blur_sigma 4 scales to 4 * min(80, 120) / 32 = 10 pixels,
    # kernel radius ceil(3 * 10) = 30 < 40, so the borders never reach the impulse's response.
    height, width, sigma = 80, 120, 4.0 * 80 / 32
    image = np.zeros((height, width, 3), np.float32)
    image[40, 60, 1] = 255.0  # green only: the red and blue fills stay black
    response = fill_image(image)[:, :, 1].astype(np.float64)
    assert np.abs(fill_image(image)[:, :, [0, 2]]).max() == 0
    assert response.sum() == pytest.approx(255.0, rel=1e-5)
    window = response[40 - 39 : 40 + 40, 60 - 39 : 60 + 40]  # centred on the impulse
    np.testing.assert_allclose(window, window[::-1], atol=1e-4)
    np.testing.assert_allclose(window, window[:, ::-1], atol=1e-4)
    rows, cols = np.indices(response.shape)
    weights = response / response.sum()
    assert (weights * rows).sum() == pytest.approx(40.0, abs=1e-4)
    assert (weights * cols).sum() == pytest.approx(60.0, abs=1e-4)
    row_variance = (weights * (rows - 40.0) ** 2).sum()
    col_variance = (weights * (cols - 60.0) ** 2).sum()
    # A Gaussian sampled on the integers k = -30..30 and renormalised (the documented kernel):
    k = np.arange(-30, 31)
    kernel = np.exp(-(k**2) / (2 * sigma**2))
    sampled_variance = (kernel * k**2).sum() / kernel.sum()
    assert sampled_variance == pytest.approx(sigma**2, rel=0.03)  # truncation at 3 sigma
    assert row_variance == pytest.approx(sampled_variance, rel=1e-4)
    assert col_variance == pytest.approx(sampled_variance, rel=1e-4)


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
    assert mass_in_box(values, (0, 0, 6, 6)) == pytest.approx(0.5)
    assert mass_in_box(values, right) == pytest.approx(0.25)
    assert discriminates(values, left, right) and not discriminates(values, right, left)
    assert not discriminates(np.zeros((8, 16)), left, right)
    values[2:4, 2:4] = -1.0  # negative evidence counts as nothing: 2 of 4 units in the right box
    assert mass_in_box(values, right) == pytest.approx(0.5)
    assert mass_in_box(values, (0, 0, 6, 6)) == 0.0  # the left blob without the 2 units
    assert mass_in_box(-np.ones((4, 4)), (0, 0, 2, 2)) == 0.0


# --------------------------------------------------------------------------------------------
# MaxBoxAcc.


def test_threshold_box_keeps_the_largest_component():
    values = np.full((10, 10), 0.1)
    values[1:3, 1:4] = 0.6  # 6 pixels, normalised 5 / 9
    values[6, 6] = values[7, 7] = 1.0  # 2 pixels touching diagonally: one component
    assert threshold_box(values, 0.5) == Box(1, 1, 4, 3)
    assert threshold_box(values, 0.6) == Box(6, 6, 8, 8)
    assert threshold_box(values, 0.0) == Box(0, 0, 10, 10)
    assert threshold_box(np.full((4, 4), 3.0), 0.0) == Box(0, 0, 4, 4)
    assert threshold_box(np.full((4, 4), 3.0), 0.5) is None  # a constant map normalises to 0
    values[6, 6] = 0.1
    values[9, 9] = 1.0  # now 1 + 1 pixels apart: a tie, the first in raster order wins
    assert threshold_box(values, 0.6) == Box(7, 7, 8, 8)
    with pytest.raises(ValueError, match="fraction"):
        threshold_box(values, 1.5)


def _strip_map() -> np.ndarray:
    """10x10 map of full-height strips: columns 0-3 at 1, 4-7 at 0.5, 8-9 at 0, so fraction
    0 keeps columns 0-9, 0.4 columns 0-7 and 0.8 columns 0-3."""
    values = np.zeros((10, 10))
    values[:, :4] = 1.0
    values[:, 4:8] = 0.5
    return values


def _strips(widths) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    # Truth box of width w from column 0: IoU with a strip of width a is min(a, w) / max(a, w).
    return np.stack([_strip_map()] * len(widths)), [(0, 0, w, 10) for w in widths]


FRACTIONS = (0.0, 0.4, 0.8)


def test_box_accuracy_by_hand():
    maps, boxes = _strips([10, 6, 4, 8, 2])
    # IoUs at fractions 0 / 0.4 / 0.8: w 10: 1, .8, .4; w 6: .6, .75, 4/6; w 4: .4, .5, 1;
    # w 8: .8, 1, .5; w 2: .2, .25, .5.
    np.testing.assert_allclose(box_accuracy(maps, boxes, FRACTIONS, 0.5), [0.6, 0.8, 0.8])
    np.testing.assert_allclose(box_accuracy(maps, boxes, FRACTIONS, 0.7), [0.4, 0.6, 0.2])
    with pytest.raises(ValueError, match="one truth box"):
        box_accuracy(maps, boxes[:2], FRACTIONS)


def test_max_box_accuracy_chooses_on_validation_and_scores_on_test():
    validation_maps, validation_boxes = _strips([4, 4, 8])
    # Validation accuracies: IoU 0.3: 1, 1, 1 -> fraction 0 (first); 0.5: 1/3, 1, 1 -> 0.4;
    # 0.7: 1/3, 1/3, 2/3 -> 0.8.
    test_maps, test_boxes = _strips([10, 6, 4, 8, 2])
    result = max_box_accuracy(
        validation_maps, validation_boxes, test_maps, test_boxes, fractions=FRACTIONS
    )
    np.testing.assert_allclose(result.iou_thresholds, [0.3, 0.5, 0.7])
    np.testing.assert_allclose(result.fractions, [0.0, 0.4, 0.8])
    np.testing.assert_allclose(result.accuracies, [0.8, 0.8, 0.2])
    np.testing.assert_allclose(result.standard_errors, math.sqrt(0.8 * 0.2 / 5))
    assert result.mean == pytest.approx(0.6) and result.count == 5
    # Levels hit per test image: 2/3, 2/3, 1, 2/3, 0.
    hits = np.array([2 / 3, 2 / 3, 1, 2 / 3, 0])
    assert result.mean_standard_error == pytest.approx(hits.std() / math.sqrt(5))
    # The paper's variant tunes the fraction on the test maps themselves: never lower.
    same = max_box_accuracy_same_set(test_maps, test_boxes, fractions=FRACTIONS)
    np.testing.assert_allclose(same.fractions, [0.8, 0.4, 0.4])  # ties: the smaller fraction
    np.testing.assert_allclose(same.accuracies, [1.0, 0.8, 0.6])
    assert same.mean == pytest.approx(0.8)
    assert (same.accuracies >= result.accuracies).all()


# --------------------------------------------------------------------------------------------
# ROAD imputation.


def test_road_imputation_is_exact_on_a_ramp_inside_the_image():
    y, x = np.mgrid[0:12, 0:12]
    ramp = np.stack([3 * x + 5 * y + 10, 2 * x + 1, 100 - 4 * y], axis=-1).astype(np.float32)
    removed = np.zeros((12, 12), bool)
    removed[2:9, 3:10] = True
    removed[5, 1] = True  # a lone pixel apart from the block
    out = road_impute(ramp, removed, noise_std=0)
    assert out.dtype == np.float32 and out.shape == ramp.shape
    np.testing.assert_allclose(out, ramp, atol=1e-3)


def test_road_imputation_by_hand_at_a_corner_and_for_a_constant_image():
    image = np.zeros((3, 3, 3), np.float32)
    image[..., 0] = [[0, 10, 20], [30, 40, 50], [60, 70, 80]]
    removed = np.zeros((3, 3), bool)
    removed[0, 0] = True
    # Corner: two direct neighbours (weight 2) and one diagonal (1), renormalised by 5.
    out = road_impute(image, removed, noise_std=0)
    assert out[0, 0, 0] == pytest.approx((2 * 10 + 2 * 30 + 40) / 5)
    removed[0, 0], removed[1, 1] = False, True
    centre = road_impute(image, removed, noise_std=0)[1, 1, 0]
    assert centre == pytest.approx((2 * (10 + 30 + 50 + 70) + (0 + 20 + 60 + 80)) / 12)
    constant = np.ones((8, 8, 3), np.float32) * np.array([10, 200, 90], np.float32)
    edge = np.zeros((8, 8), bool)
    edge[:3, :5] = edge[7, :] = True  # regions on the border
    np.testing.assert_allclose(road_impute(constant, edge, noise_std=0), constant, rtol=1e-5)
    everything = road_impute(image, np.ones((3, 3), bool), noise_std=0)  # nothing kept
    np.testing.assert_allclose(everything, np.broadcast_to(image.mean(axis=(0, 1)), image.shape))


def test_road_noise_only_on_removed_pixels_deterministic_and_clipped():
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (40, 40, 3)).astype(np.float32)
    image[:20] = 255.0
    removed = rng.random((40, 40)) < 0.5
    first = road_impute(image, removed, noise_std=5.0, seed=7)
    np.testing.assert_array_equal(first[~removed], image[~removed])
    np.testing.assert_array_equal(first, road_impute(image, removed, noise_std=5.0, seed=7))
    assert not np.array_equal(first, road_impute(image, removed, noise_std=5.0, seed=8))
    assert first.min() >= 0 and first.max() <= 255
    noise = first - road_impute(image, removed, noise_std=0)
    assert (noise[:20][~removed[:20]] == 0).all()
    assert noise[20:][removed[20:]].std() == pytest.approx(5.0, rel=0.1)
    np.testing.assert_array_equal(road_impute(image, np.zeros((40, 40), bool)), image)
    with pytest.raises(ValueError, match="removed"):
        road_impute(image, removed[:4])
    with pytest.raises(ValueError, match="road_impute"):
        fill_image(image, "road")


def test_road_deletion_of_a_ramp_reveals_nothing_until_the_border_goes():
    y, x = np.mgrid[0:8, 0:8]
    ramp = np.repeat((10 * x + 3 * y + 20)[..., None], 3, axis=-1).astype(np.float32)
    values = np.zeros((8, 8))
    values[2:6, 2:6] = 1.0  # the 16 inner pixels first
    _, deleted = perturbed_images(ramp, values, "deletion", steps=4, fill="road", road_noise=0)
    np.testing.assert_allclose(deleted[1], ramp, atol=1e-3)  # 16 inner pixels removed
    np.testing.assert_allclose(deleted[4], np.broadcast_to(ramp.mean(axis=(0, 1)), ramp.shape))
    _, inserted = perturbed_images(ramp, values, "insertion", steps=4, fill="road", road_noise=0)
    np.testing.assert_allclose(inserted[0], deleted[4])
    np.testing.assert_array_equal(inserted[4], ramp)
    np.testing.assert_array_equal(inserted[1][2:6, 2:6], ramp[2:6, 2:6])  # inserted pixels
    # The rest is imputed from the inner block: weighted means of their neighbours, so (the
    # maximum principle) within the inner block's range, and not the ramp itself.
    inner = ramp[2:6, 2:6]
    assert inserted[1].min() >= inner.min() - 1e-3 and inserted[1].max() <= inner.max() + 1e-3
    assert np.abs(inserted[1] - ramp).max() > 10


def test_road_counterfactual_by_hand(stub, image):
    removed = counterfactual(
        stub, image, _map(R), 0, 2, fill="road", road_noise=0, trials=2
    )
    # The two red pixels become the mean of their neighbours, all 100: the logit is
    # 200 ln 81 / 510 and the nine others 0.
    logit = 200 * math.log(81) / 510
    assert removed.after == pytest.approx(math.exp(logit) / (math.exp(logit) + 9), abs=1e-6)


def test_road_batch_curves_match_single_curves(stub, image):
    rng = np.random.default_rng(2)
    images = np.stack([image, image * 0.5, image[::-1]])
    maps = rng.random((3, 4, 4))
    for kind, single in (("deletion", deletion_curve), ("insertion", insertion_curve)):
        _, probabilities, aucs = perturbation_curves(
            stub, images, maps, [0, 0, 3], kind=kind, steps=4, fill="road", seed=5, batch_size=4
        )
        for i, c in enumerate([0, 0, 3]):
            curve = single(stub, images[i], maps[i], c, steps=4, fill="road", seed=5 + i)
            np.testing.assert_allclose(probabilities[i], curve.probabilities, atol=1e-6)
            assert aucs[i] == pytest.approx(curve.auc, abs=1e-6)


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

    from sensitivity.model.wrn import build_wrn

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
from sensitivity.model.distributed import default_strategy, distributed_predict
from sensitivity.metrics.perturbation import perturbation_curves
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


@pytest.fixture(scope="module", autouse=True)
def two_devices(tiny_wrn, tmp_path_factory):
    """The run on two devices that the last test checks, started with this module's first
    test: a fresh interpreter (TensorFlow fixes its devices when it starts) that works beside
    the other tests. Yields the inputs, the process and the file it writes its numbers to."""
    rng = np.random.default_rng(1)
    inputs = {"images": rng.uniform(0, 255, (5, 32, 32, 3)).astype(np.float32),
              "maps": rng.random((5, 32, 32)), "classes": np.array([0, 3, 3, 9, 1])}
    folder = tmp_path_factory.mktemp("two-devices")
    tiny_wrn.save(folder / "tiny.keras")
    np.savez(folder / "data.npz", **inputs)
    run = PythonProcess(_TWO_DEVICES, folder, "run", (str(folder / "tiny.keras"),
                                                      str(folder / "data.npz"),
                                                      str(folder / "out.npz")))
    yield inputs, run, folder / "out.npz"
    run.stop()


def test_distributed_batch_path_gives_the_same_numbers_on_two_devices(tiny_wrn, two_devices):
    from sensitivity.model.distributed import default_strategy, distributed_predict

    inputs, run, out = two_devices
    images, maps, classes = inputs["images"], inputs["maps"], inputs["classes"]
    result = run.result()
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"strategy": "MirroredStrategy", "replicas": 2' in result.stdout
    two = np.load(out)

    assert default_strategy().num_replicas_in_sync == 1
    one = distributed_predict(tiny_wrn, images, batch_size=4)
    np.testing.assert_allclose(one, sensitivity.predict(tiny_wrn, images), atol=1e-6)
    np.testing.assert_allclose(two["probabilities"], one, atol=1e-5)
    _, curves, aucs = perturbation_curves(tiny_wrn, images, maps, classes, steps=4, batch_size=6)
    np.testing.assert_allclose(two["curves"], curves, atol=1e-5)
    np.testing.assert_allclose(two["aucs"], aucs, atol=1e-5)


def test_randomised_copy_reinitialises_the_top_layers_only_and_leaves_the_model():
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="low")(inputs)
    x = keras.layers.Conv2D(4, 3, name="mid")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="top")(x))
    before = [w.copy() for w in model.get_weights()]
    copy = sanity.randomised_copy(model, 2, seed=1)
    for name, changed in (("top", True), ("mid", True), ("low", False)):
        kernel = copy.get_layer(name).get_weights()[0]
        assert (not np.array_equal(kernel, model.get_layer(name).get_weights()[0])) == changed
    for w, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(w, b)  # the original is untouched
    # He-normal: the top kernel's spread is sqrt(2 / fan_in) (fan_in 4), its bias reset to 0.
    top = sanity.randomised_copy(model, 1, seed=2).get_layer("top").get_weights()
    assert np.allclose(top[1], 0.0) and 0.3 < top[0].std() < 1.2
    again = sanity.randomised_copy(model, 2, seed=1)
    np.testing.assert_array_equal(again.get_layer("mid").get_weights()[0],
                                  copy.get_layer("mid").get_weights()[0])
    with pytest.raises(ValueError, match="count"):
        sanity.randomised_copy(model, 4)


def test_randomised_default_model_separates_the_gradient_from_guided_backprop(
        default_model, cifar_dir):
    from sensitivity.engine.saliency import saliency

    x, _ = load_split(cifar_dir, "test", limit=20)
    x = x[:4].astype(np.float32)
    classes = sensitivity.predict(default_model, x).argmax(axis=1)
    random_model = sanity.randomised_copy(default_model)
    correlation = {}
    for method in ("gradient", "guided_backprop"):
        trained, randomised = (
            [saliency(m, x[i:i + 1], method=method, class_mask=int(c))[0]
             for i, c in enumerate(classes)] for m in (default_model, random_model))
        correlation[method] = np.mean([sanity.spearman(a, b)
                                       for a, b in zip(trained, randomised, strict=True)])
    assert correlation["gradient"] < 0.3 < correlation["guided_backprop"], correlation
