"""The position head: its inputs, logits and targets by hand, its file, fitting on a problem
whose answer is known, and its use by CAM's per-position probability and the class evidence,
checked against a Keras sub-model's features."""

from __future__ import annotations

import sensitivity  # noqa: F401  (sets the TensorFlow environment before TF is imported)

# isort: split
import dataclasses

import keras
import numpy as np
import pytest
from scipy.special import softmax

from sensitivity.engine.saliency import attribute
from sensitivity.imaging.objects import class_evidence
from sensitivity.model import position_head as ph
from tests.helpers import colour_model, two_squares


def _head(channels: int = 1, hidden: int = 2, classes: int = 2, seed: int = 0,
          neighbourhoods: tuple[int, ...] = ph.NEIGHBOURHOODS) -> ph.PositionHead:
    """A random head: ``classes`` classes and "none"."""
    rng = np.random.default_rng(seed)
    inputs = ph.input_parts(neighbourhoods) * channels
    return ph.PositionHead(*(rng.normal(0, 1, shape).astype(np.float32) for shape in
                             ((inputs, hidden), (hidden,), (hidden, classes + 1),
                              (classes + 1,))), neighbourhoods=neighbourhoods)


def test_position_inputs_by_hand():
    # One 2x3 map of one channel: values 0..5 row by row.
    features = np.arange(6, dtype=np.float32).reshape(1, 2, 3, 1)
    inputs = ph.position_inputs(features, (3,))
    assert inputs.shape == (1, 2, 3, 3) and inputs.dtype == np.float32
    np.testing.assert_array_equal(inputs[..., 0], features[..., 0])
    # The 3x3 mean with the border repeated: at (0, 0) the rows are 0,0,3 (row -1 repeats row
    # 0) and the columns 0,0,1: values 0,0,1 / 0,0,1 / 3,3,4 -> 12 / 9.
    assert inputs[0, 0, 0, 1] == pytest.approx(12 / 9)
    # At (1, 1): rows 0,1,1 and columns 0,1,2: 0,1,2 / 3,4,5 / 3,4,5 -> 27 / 9.
    assert inputs[0, 1, 1, 1] == pytest.approx(3.0)
    np.testing.assert_allclose(inputs[..., 2], 2.5)  # the whole map's mean
    with pytest.raises(ValueError, match=r"\(N, h, w, C\)"):
        ph.position_inputs(np.zeros((2, 3, 1)))


def test_position_inputs_take_a_mean_per_neighbourhood():
    # One 3x4 map of two channels (the second the first times -1) and neighbourhoods 3 and 5.
    first = np.arange(12, dtype=np.float32).reshape(3, 4)
    features = np.stack([first, -first], axis=-1)[None]
    inputs = ph.position_inputs(features, (3, 5))
    assert inputs.shape == (1, 3, 4, 2 * ph.input_parts((3, 5))) == (1, 3, 4, 8)
    # Parts of two channels each: the features, the 3x3 mean, the 5x5 mean, the map's mean.
    np.testing.assert_array_equal(inputs[..., 0:2], features)
    np.testing.assert_allclose(inputs[..., 2:4], ph.position_inputs(features, (3,))[..., 2:4])
    # The 5x5 mean at (0, 0), the border repeated: rows 0,0,0,1,2 and columns 0,0,0,1,2, so
    # values r 4 + c with r, c each 0,0,0,1,2 (mean 0.6): 0.6 x 4 + 0.6 = 3.0.
    assert inputs[0, 0, 0, 4] == pytest.approx(3.0) and inputs[0, 0, 0, 5] == pytest.approx(-3.0)
    # At (1, 2): rows -1..3 -> 0,0,1,2,2 (mean 1) and columns 0..4 -> 0,1,2,3,3 (mean 1.8).
    assert inputs[0, 1, 2, 4] == pytest.approx(4 * 1.0 + 1.8)
    np.testing.assert_allclose(inputs[..., 6], 5.5)  # the whole map's mean
    np.testing.assert_allclose(inputs[..., 7], -5.5)
    # The default is the neighbourhoods a head is fitted with now.
    np.testing.assert_array_equal(ph.position_inputs(features),
                                  ph.position_inputs(features, ph.NEIGHBOURHOODS))


@pytest.mark.parametrize("neighbourhoods", [(3,), (3, 5, 9)])
def test_logits_and_probabilities_by_hand(neighbourhoods):
    head = _head(channels=2, hidden=3, classes=4, neighbourhoods=neighbourhoods)
    features = np.random.default_rng(1).normal(0, 1, (2, 3, 4, 2)).astype(np.float32)
    x = ph.position_inputs(features, neighbourhoods).astype(np.float64)
    hidden = np.maximum(x @ head.hidden_kernel + head.hidden_bias, 0)
    expected = hidden @ head.kernel + head.bias  # 4 classes and "none"
    np.testing.assert_allclose(head.logits(features), expected, rtol=1e-5, atol=1e-5)
    assert head.logits(features).shape == (2, 3, 4, 5)
    assert (head.channels, head.classes) == (2, 4)
    exp = np.exp(expected - expected.max(axis=-1, keepdims=True))
    probabilities = head.probabilities(features)
    np.testing.assert_allclose(probabilities, (exp / exp.sum(-1, keepdims=True))[..., :4],
                               rtol=1e-5, atol=1e-7)
    assert (probabilities.sum(axis=-1) < 1).all()  # "none" keeps the rest


def test_the_heads_matrix_products_run_on_one_blas_thread(monkeypatch):
    # OpenBLAS's idle threads spin after a call on several and slow TensorFlow's next pass; the
    # head's products run on one thread, and the limit before is restored after.
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    seen = []
    read = ph.position_inputs

    def spy(*args, **kwargs):
        seen.append(blas_threads())
        return read(*args, **kwargs)

    monkeypatch.setattr(ph, "position_inputs", spy)
    head = _head(channels=2, hidden=3, classes=4)
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        assert before and set(before) == {2}, "NumPy's BLAS is not found by threadpoolctl"
        head.logits(np.ones((1, 2, 2, 2), np.float32))
        assert seen == [[1] * len(before)]
        assert blas_threads() == before


def test_a_head_whose_arrays_do_not_fit_its_neighbourhoods_is_refused():
    head = _head(channels=2, hidden=4, neighbourhoods=(3, 7))  # an (8, 4) hidden kernel
    with pytest.raises(ValueError, match=r"do not fit \(neighbourhoods \[3\]\)"):
        dataclasses.replace(head, neighbourhoods=(3,))  # 8 columns are not 3 parts
    with pytest.raises(ValueError, match="do not fit"):
        dataclasses.replace(head, bias=head.bias[:-1])
    for sides in ((3, 4), (True,), (-1,)):
        with pytest.raises(ValueError, match="expected odd positive sides"):
            dataclasses.replace(head, neighbourhoods=sides)


def test_targets_are_the_box_holding_each_positions_centre():
    # A 4x4 map of a 40x40 scene (10 pixels per position): centres at 5, 15, 25, 35. A box of
    # class 7 over x 10..30, y 0..20 holds columns 1-2 of rows 0-1; class 3 over x 30..40,
    # y 30..40 holds (3, 3).
    targets = ph.position_targets((4, 4), (10.0, 10.0), [(10, 0, 30, 20), (30, 30, 40, 40)],
                                  [7, 3])
    expected = np.full((4, 4), -1)
    expected[0:2, 1:3] = 7
    expected[3, 3] = 3
    np.testing.assert_array_equal(targets, expected)


def test_file_round_trip_and_bad_files(tmp_path):
    head = _head(channels=2, hidden=4, neighbourhoods=(3, 7))  # biases of 4 and 3 (2 classes)
    ph.save_position_head(head, tmp_path / "h.npz")
    loaded = ph.load_position_head(tmp_path / "h.npz", "how")
    assert loaded.fitted_on == "how" and loaded.neighbourhoods == (3, 7)
    assert loaded.channels == 2
    for name in ("hidden_kernel", "hidden_bias", "kernel", "bias"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(head, name))
    # A file stored before the neighbourhoods were (session 34) reads the 3x3 mean alone.
    former = _head(channels=2, hidden=4, neighbourhoods=(3,))
    np.savez(tmp_path / "former.npz", hidden_kernel=former.hidden_kernel,
             hidden_bias=former.hidden_bias, kernel=former.kernel, bias=former.bias)
    assert ph.load_position_head(tmp_path / "former.npz").neighbourhoods == (3,)
    # Its kernel (4 parts of 2 channels) does not fit 3 parts: refused, naming them.
    np.savez(tmp_path / "unfit.npz", hidden_kernel=head.hidden_kernel,
             hidden_bias=head.hidden_bias, kernel=head.kernel, bias=head.bias)
    with pytest.raises(ValueError, match=r"do not fit \(neighbourhoods \[3\]\)"):
        ph.load_position_head(tmp_path / "unfit.npz")
    for sides in ([3, 4], [[3]], [0], [2.5]):
        np.savez(tmp_path / "sides.npz", hidden_kernel=head.hidden_kernel,
                 hidden_bias=head.hidden_bias, kernel=head.kernel, bias=head.bias,
                 neighbourhoods=np.asarray(sides))
        with pytest.raises(ValueError, match="expected odd positive sides"):
            ph.load_position_head(tmp_path / "sides.npz")
    np.savez(tmp_path / "short.npz", hidden_kernel=head.hidden_kernel, kernel=head.kernel,
             bias=head.bias)
    with pytest.raises(ValueError, match="lacks"):
        ph.load_position_head(tmp_path / "short.npz")
    np.savez(tmp_path / "wrong.npz", hidden_kernel=head.hidden_kernel, hidden_bias=head.bias,
             kernel=head.kernel, bias=head.bias)
    with pytest.raises(ValueError, match="do not fit"):
        ph.load_position_head(tmp_path / "wrong.npz")
    np.savez(tmp_path / "objects.npz", hidden_kernel=np.array([{"a": 1}], dtype=object),
             hidden_bias=head.hidden_bias, kernel=head.kernel, bias=head.bias)
    with pytest.raises(ValueError, match="pickle"):
        ph.load_position_head(tmp_path / "objects.npz")


def test_training_learns_a_separable_problem():
    # Class 0 where channel 0 is high, class 1 where channel 1 is, none where both are low.
    rng = np.random.default_rng(0)
    targets = rng.integers(-1, 2, 6000)
    inputs = rng.normal(0, 0.3, (6000, 6)).astype(np.float32)
    for c in (0, 1):
        inputs[targets == c, c] += 3.0
    head = ph.train_head(inputs, targets, 2, neighbourhoods=(3,), hidden=8, epochs=20,
                         batch_size=128, seed=0)
    assert head.kernel.shape == (8, 3) and head.neighbourhoods == (3,)  # 2 classes, "none"
    assert head.channels == 2
    with pytest.raises(ValueError, match="6 input columns are not 5 parts"):
        ph.train_head(inputs, targets, 2, neighbourhoods=(3, 5, 9))
    hidden = np.maximum(inputs @ head.hidden_kernel + head.hidden_bias, 0)
    predicted = softmax(hidden @ head.kernel + head.bias, axis=-1)
    for c in (0, 1):
        assert np.mean(predicted[targets == c, c] > 0.5) > 0.95
        assert np.mean(predicted[targets != c, c] < 0.5) > 0.95


@pytest.fixture()
def model_with_head():
    """The colour model (feature map "colours", 10 channels) with a random position head."""
    model = colour_model(0.05)
    head = _head(channels=10, hidden=5, classes=10, seed=3)
    ph.attach_position_head(model, head)
    yield model, head
    ph.attach_position_head(model, None)


def test_cam_probability_and_the_evidence_read_the_position_head(model_with_head):
    model, head = model_with_head
    image, _, _ = two_squares()
    x = image[None].astype(np.float32)
    features = keras.Model(model.input, model.get_layer("colours").output)(x).numpy()
    per_position = head.probabilities(features)  # (1, 120, 200, 10): no upsampling
    result = attribute(model, x, method="cam", class_mask=4, probability=True)
    np.testing.assert_allclose(result.values, per_position[..., 4], rtol=1e-5, atol=1e-6)
    # The class evidence: each class's largest per-position probability, whatever activation.
    expected = per_position.reshape(-1, 10).max(axis=0)
    for activation in (None, "softmax"):
        np.testing.assert_allclose(class_evidence(model, image, activation), expected,
                                   rtol=1e-5)
    # With an exponent, the probability raised to it; without the probability it is ignored.
    cubed = attribute(model, x, method="cam", class_mask=4, probability=True, exponent=3)
    np.testing.assert_allclose(cubed.values, per_position[..., 4] ** 3, rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="exponent must be a positive integer"):
        attribute(model, x, method="cam", class_mask=4, probability=True, exponent=0)
    # Plain CAM still uses the dense head: feature map 1 for class 1 (identity head).
    plain = attribute(model, x, method="cam", class_mask=1)
    np.testing.assert_allclose(attribute(model, x, method="cam", class_mask=1, exponent=3).values,
                               plain.values)
    np.testing.assert_allclose(plain.values[0], features[0, ..., 1], rtol=1e-5, atol=1e-6)
    ph.attach_position_head(model, None)
    assert ph.position_head_of(model) is None
    without = attribute(model, x, method="cam", class_mask=4, probability=True)
    assert not np.allclose(without.values, result.values)


def test_scene_positions_keep_every_object_position_and_a_share_of_the_rest():
    from sensitivity.metrics.scenes import Scene

    model = colour_model(0.05)
    image, red, blue = two_squares()  # the colour model's feature map is the image's size
    scene = Scene(image, (red, blue), (0, 1), "grey")
    features = keras.Model(model.input, model.get_layer("colours").output)(
        image[None].astype(np.float32)).numpy()
    everything = ph.position_inputs(features)[0].reshape(-1, 10 * ph.input_parts(
        ph.NEIGHBOURHOODS))
    inputs, targets = ph.scene_positions(model, "colours", [scene], [200])
    np.testing.assert_allclose(inputs, everything, rtol=1e-6)
    assert (targets == 0).sum() == 40 * 40 and (targets == 1).sum() == 40 * 50
    half, _ = ph.scene_positions(model, "colours", [scene], [200], dtype=np.float16)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half, everything, rtol=2e-3, atol=1e-3)
    only, only_targets = ph.scene_positions(model, "colours", [scene], [200],
                                            background_kept=0.0)
    assert len(only) == 3600 and (only_targets >= 0).all()
    some, some_targets = ph.scene_positions(model, "colours", [scene], [200],
                                            background_kept=0.25, seed=1)
    share = (some_targets < 0).sum() / (targets < 0).sum()
    assert 0.22 < share < 0.28 and (some_targets >= 0).sum() == 3600
    # At half the side, each position covers 2x2 pixels: the targets follow the boxes.
    _, half = ph.scene_positions(model, "colours", [scene], [100])
    assert (half == 0).sum() == 20 * 20 and (half == 1).sum() == 20 * 25
    # Other neighbourhoods: their inputs.
    former, _ = ph.scene_positions(model, "colours", [scene], [200], neighbourhoods=(3,))
    np.testing.assert_allclose(former, ph.position_inputs(features, (3,))[0].reshape(-1, 30),
                               rtol=1e-6)


def test_training_batches_cover_every_position_once_an_epoch_in_float32():
    inputs = np.arange(10 * 4, dtype=np.float16).reshape(10, 4)
    targets = np.array([0, -1, 1, 1, -1, 0, 2, -1, 2, 0])
    batches = ph._batches(inputs, targets, 3, 4, 2.5, seed=0)
    assert len(batches) == 3
    for _ in range(2):
        seen = []
        for i in range(len(batches)):
            x, labels, weights = batches[i]
            assert x.dtype == np.float32 and len(x) <= 4
            rows = (x[:, 0] / 4).astype(int)  # row r starts with 4 r
            np.testing.assert_array_equal(labels, np.where(targets[rows] >= 0, targets[rows], 3))
            np.testing.assert_array_equal(weights, np.where(targets[rows] >= 0, 1.0, 2.5))
            seen += list(rows)
        assert sorted(seen) == list(range(10))
        batches.on_epoch_end()
