import json

import keras
import numpy as np
import pytest

from sensitivity.model.train import (
    TrainConfig,
    augment_batch,
    compile_for_training,
    downscale_batch,
)
from sensitivity.model.wrn import build_wrn
from tests.helpers import class_pattern, copy_model

TINY = ["--depth", "10", "--width", "1", "--batch-size", "8", "--val-size", "10"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Class folders (3 images a class and split) and two tiny WRNs the CLI trained on them for
    one epoch, with seeds 0 and 1: ``(data, {0: path, 1: path})``. Tests that change a model
    or its card change a copy (:func:`tests.helpers.copy_model`)."""
    from sensitivity.__main__ import main
    from tests.helpers import write_class_folders

    root = tmp_path_factory.mktemp("trained")
    data = write_class_folders(root / "data", per_class=3)
    models = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SENSITIVITY_CACHE", str(root / "cache"))
        for seed in (0, 1):
            models[seed] = root / f"seed{seed}.keras"
            assert main(["train", "--data-dir", str(data), *TINY, "--epochs", "1", "--seed",
                         str(seed), "--out", str(models[seed]), "--checkpoint-dir",
                         str(root / f"c{seed}")]) == 0
    return data, models


def test_a_tiny_model_overfits_a_few_synthetic_images():
    keras.utils.set_random_seed(0)
    labels = np.arange(20) % 10
    images = np.stack([class_pattern(c, 16) for c in labels]).astype("float32")
    targets = np.eye(10, dtype="float32")[labels]
    model = build_wrn(10, 1)
    config = TrainConfig(epochs=30, batch_size=20, peak_lr=0.05, label_smoothing=0.0)
    compile_for_training(model, config, steps_per_epoch=1)
    history = model.fit(images, targets, epochs=30, batch_size=20, verbose=0).history["loss"]
    assert history[-1] < 0.3 * history[0]
    assert np.mean(np.argmax(model.predict(images, verbose=0), axis=1) == labels) == 1.0


def test_augmentation_shifts_and_flips_within_the_padding():
    rng = np.random.default_rng(0)
    image = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(1, 32, 32, 3)
    batch = np.repeat(image, 64, axis=0)
    out = augment_batch(batch, rng)
    assert out.shape == batch.shape and out.dtype == np.float32
    # Every output is the input moved by at most 4 pixels, maybe mirrored: the centre 24x24 of
    # the input appears somewhere inside each output.
    assert any(not np.array_equal(o, batch[0]) for o in out)
    centre = batch[0, 4:28, 4:28].astype(np.float32)
    for o in out[:8]:
        found = any(
            np.array_equal(cand[dy : dy + 24, dx : dx + 24], centre)
            for cand in (o, o[:, ::-1])
            for dy in range(9)
            for dx in range(9)
        )
        assert found


def test_cutout_fills_one_clipped_square_per_image_with_the_mean_colour():
    images = np.random.default_rng(2).integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
    plain = augment_batch(images, np.random.default_rng(5))
    cut = augment_batch(images, np.random.default_rng(5), cutout=8)
    fill = plain.mean(axis=(0, 1, 2))
    sides = set()
    for before, after in zip(plain, cut, strict=True):
        changed = (before != after).any(axis=-1)
        rows, cols = np.nonzero(changed.any(axis=1))[0], np.nonzero(changed.any(axis=0))[0]
        # one rectangle: every pixel inside it changed, nothing outside
        assert changed[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()
        assert changed.sum() == len(rows) * len(cols)
        assert 4 <= len(rows) <= 8 and 4 <= len(cols) <= 8  # clipped at most to half
        np.testing.assert_allclose(after[changed], np.broadcast_to(fill, (changed.sum(), 3)))
        sides.add((len(rows), len(cols)))
    assert (8, 8) in sides and len(sides) > 1  # whole squares, and clipped ones


def test_downscale_preserves_the_mean():
    images = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    small = downscale_batch(images, 24)
    assert small.shape == (3, 24, 24, 3)
    np.testing.assert_allclose(small.mean(axis=(1, 2)), images.mean(axis=(1, 2)), rtol=1e-4)
    half = downscale_batch(images, 16)  # each output pixel is the mean of a 2x2 block
    blocks = images.astype(np.float64).reshape(3, 16, 2, 16, 2, 3).mean(axis=(2, 4))
    assert half.shape == (3, 16, 16, 3)
    np.testing.assert_allclose(half, blocks, rtol=1e-5, atol=1e-4)


def test_cli_trains_stops_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("SENSITIVITY_CACHE", str(tmp_path / "cache"))
    from sensitivity.__main__ import main
    from sensitivity.model.io import load_model, sha256_of
    from tests.helpers import write_class_folders

    data = write_class_folders(tmp_path / "data", per_class=3)
    out = tmp_path / "model.keras"
    ckpt = tmp_path / "ckpt"
    common = ["--data-dir", str(data), "--out", str(out), "--checkpoint-dir", str(ckpt)]
    args = ["train", *common, "--depth", "10", "--width", "1", "--epochs", "4",
            "--batch-size", "8", "--val-size", "10", "--stop-after", "1"]
    assert main(args) == 0
    assert not out.exists()
    assert json.loads((ckpt / "state.json").read_text())["epoch"] == 1
    # Resume, shortening the run from 4 to 2 epochs: the rate decays from where it was to 0.
    assert main(["train", *common, "--resume", "--epochs", "2"]) == 0
    state = json.loads((ckpt / "state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert state["config"]["epochs"] == 2 and state["rescheduled"][0]["after_epoch"] == 1
    import keras

    trained = keras.saving.load_model(ckpt / "last.keras")
    assert float(trained.optimizer.learning_rate.numpy()) < 1e-6
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["sha256"] == sha256_of(out)
    assert card["epochs"] == 2 and card["architecture"]["depth"] == 10
    assert 0.0 <= card["test_accuracy"] <= 1.0
    model = load_model(out)
    assert model.output.shape[-1] == 10


def test_cli_warm_start_begins_from_the_earlier_weights_and_counts_its_cost(
        tmp_path, monkeypatch, trained):
    monkeypatch.setenv("SENSITIVITY_CACHE", str(tmp_path / "cache"))
    import numpy as np

    from sensitivity.__main__ import main
    from sensitivity.model.train import _warm_start
    from sensitivity.model.wrn import build_wrn

    data, models = trained
    first = copy_model(models[0], tmp_path / "first.keras")  # one epoch of training
    # The earlier run's recorded cost, set to a value that rounding cannot hide (a tiny run
    # takes seconds, 0.0 minutes after rounding); the card's sha256 still matches its file.
    first_card = json.loads(first.with_suffix(".json").read_text())
    first_card["train_wall_time_minutes"] = 12.3
    first.with_suffix(".json").write_text(json.dumps(first_card))

    # The copied weights are exactly the earlier model's.
    fresh = build_wrn(10, 1)
    info = _warm_start(fresh, str(first))
    from sensitivity.model.io import load_model

    for a, b in zip(fresh.get_weights(), load_model(first).get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert info["epochs"] == 1

    second = tmp_path / "second.keras"
    assert main(["train", "--data-dir", str(data), "--out", str(second), "--checkpoint-dir",
                 str(tmp_path / "c2"), "--epochs", "2", "--init-from", str(first), *TINY]) == 0
    card = json.loads(second.with_suffix(".json").read_text())
    assert card["epochs"] == 3
    assert card["warm_start"]["epochs"] == 1
    # The whole cost: the earlier run's minutes plus this run's own seconds (from its state).
    own_seconds = json.loads((tmp_path / "c2" / "state.json").read_text())["train_seconds"]
    assert own_seconds > 0
    assert card["warm_start"]["train_wall_time_minutes"] == 12.3
    assert card["train_wall_time_minutes"] == round(12.3 + own_seconds / 60, 1)
    # The test accuracy is the final model's, counted here on the test split by hand.
    from sensitivity.model.data import load_split

    x_test, y_test = load_split(data, "test")
    predicted = np.argmax(load_model(second).predict(x_test.astype(np.float32), verbose=0), 1)
    assert card["test_accuracy"] == pytest.approx(np.mean(predicted == y_test))
    # A model of another width is refused with a message.
    with pytest.raises(ValueError):
        _warm_start(build_wrn(10, 2), str(first))


def test_teacher_probabilities_average_an_image_and_its_mirror():
    from sensitivity.model.train import teacher_probabilities, training_targets

    keras.utils.set_random_seed(3)
    teacher = build_wrn(10, 1)
    images = np.random.default_rng(4).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    probs = teacher_probabilities([teacher], images)
    assert probs.shape == (6, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # The same targets whichever way round the images come ...
    np.testing.assert_allclose(teacher_probabilities([teacher], images[:, :, ::-1]), probs,
                               rtol=1e-4, atol=1e-6)
    # ... and they are the softmax of the mean of the two logits, computed here by hand.
    pixels = images.astype(np.float32)
    mean = (np.asarray(teacher(pixels)) + np.asarray(teacher(pixels[:, :, ::-1]))) / 2
    by_hand = np.exp(mean - mean.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs, by_hand / by_hand.sum(axis=1, keepdims=True),
                               rtol=1e-4, atol=1e-6)
    # An asymmetric teacher: the mirror changes its logits, so averaging is not a no-op.
    assert not np.allclose(np.asarray(teacher(pixels)), np.asarray(teacher(pixels[:, :, ::-1])))

    # An ensemble: the softmax of the mean of all four logits (two teachers, two mirrors).
    other = build_wrn(10, 1)
    both = teacher_probabilities([teacher, other], images)
    mean = (2 * mean + np.asarray(other(pixels)) + np.asarray(other(pixels[:, :, ::-1]))) / 4
    by_hand = np.exp(mean - mean.max(axis=1, keepdims=True))
    np.testing.assert_allclose(both, by_hand / by_hand.sum(axis=1, keepdims=True),
                               rtol=1e-4, atol=1e-6)
    assert not np.allclose(both, probs, atol=1e-3)

    labels = np.array([0, 1, 2, 3, 4, 5])
    targets = training_targets(labels, probs, 0.25)
    np.testing.assert_allclose(targets, 0.75 * np.eye(10)[labels] + 0.25 * probs, rtol=1e-6)
    np.testing.assert_array_equal(training_targets(labels, None, 0.25), np.eye(10)[labels])


def test_cli_distils_from_a_teacher_and_records_it_in_the_card(tmp_path, monkeypatch, trained):
    monkeypatch.setenv("SENSITIVITY_CACHE", str(tmp_path / "cache"))
    from sensitivity.__main__ import main
    from sensitivity.model.io import sha256_of

    data, models = trained
    tiny = ["--data-dir", str(data), *TINY, "--epochs", "1"]
    teacher, other = models[0], models[1]  # one epoch each, seeds 0 and 1
    student = tmp_path / "student.keras"
    assert main(["train", *tiny, "--out", str(student), "--checkpoint-dir", str(tmp_path / "c2"),
                 "--teacher", str(teacher), "--teacher-weight", "0.7"]) == 0
    card = json.loads(student.with_suffix(".json").read_text())
    assert card["recipe"]["teacher_weight"] == 0.7
    assert card["recipe"]["teacher_sha256"] == [sha256_of(teacher)]
    # The teacher is named by its weights' sha256, not only by a path that a shipped model may
    # later occupy.
    [named] = card["recipe"]["teachers"]
    assert named.startswith(str(teacher)) and sha256_of(teacher) in named
    # Twice --teacher: an ensemble of two teachers, both recorded.
    assert main(["train", *tiny, "--out", str(student), "--checkpoint-dir", str(tmp_path / "c5"),
                 "--teacher", str(teacher), "--teacher", str(other)]) == 0
    card = json.loads(student.with_suffix(".json").read_text())
    assert card["recipe"]["teacher_sha256"] == [sha256_of(teacher), sha256_of(other)]
    assert len(card["recipe"]["teachers"]) == 2
    assert 0.0 <= card["recipe"]["teacher_validation_accuracy"] <= 1.0
    # A teacher that is not there, or a weight outside 0..1, is a message, not a traceback.
    missing = str(tmp_path / "no.keras")
    assert main(["train", *tiny, "--out", str(student), "--teacher", missing]) == 2
    assert main(["train", *tiny, "--out", str(student), "--teacher", str(teacher),
                 "--teacher-weight", "1.5"]) == 2
    from sensitivity.model.io import ModelError
    from sensitivity.model.train import TrainConfig, train

    with pytest.raises(ModelError, match="not found"):
        train(TrainConfig(data_dir=str(data), teachers=[str(tmp_path / "no.keras")], val_size=10,
                          depth=10, width=1), tmp_path / "x.keras", tmp_path / "c3")


def test_resumed_distillation_refuses_a_teacher_that_changed(tmp_path, monkeypatch, capsys,
                                                             trained):
    monkeypatch.setenv("SENSITIVITY_CACHE", str(tmp_path / "cache"))
    from sensitivity.__main__ import main

    data, models = trained
    tiny = ["--data-dir", str(data), *TINY]
    teacher = copy_model(models[0], tmp_path / "teacher.keras")  # replaced below
    other = models[1]
    kept = tmp_path / "kept"
    kept.mkdir()
    student = ["--out", str(tmp_path / "student.keras"), "--checkpoint-dir", str(tmp_path / "s")]
    assert main(["train", *tiny, *student, "--epochs", "2", "--stop-after", "1",
                 "--teacher", str(teacher)]) == 0
    # Another model, with its own valid card, now sits at the teacher's path: resuming would
    # change the targets half-way through the run, so it is refused with a message.
    copy_model(teacher, kept / "teacher.keras")
    copy_model(other, teacher)
    capsys.readouterr()
    assert main(["train", *student, "--resume"]) == 2
    assert "not the model this run began with" in capsys.readouterr().err
    # With the original teacher back, the run resumes and finishes.
    copy_model(kept / "teacher.keras", teacher)
    assert main(["train", *student, "--resume"]) == 0
    card = json.loads((tmp_path / "student.json").read_text())
    kept_sha256 = json.loads((kept / "teacher.json").read_text())["sha256"]
    assert card["epochs"] == 2 and card["recipe"]["teacher_sha256"] == [kept_sha256]


def test_one_cycle_schedule_warms_up_linearly_then_decays_by_a_cosine():
    import math

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(10)(inputs))
    config = TrainConfig(epochs=10, peak_lr=0.2, warmup_fraction=0.15)
    compile_for_training(model, config, steps_per_epoch=20)
    total, warmup, peak = 200, 30, 0.2  # 15% of 10 epochs x 20 steps

    def rate_at(step):
        model.optimizer.iterations.assign(step)
        return float(np.asarray(model.optimizer.learning_rate))

    def by_hand(step):
        if step <= warmup:  # a straight line from peak/10 to the peak
            return peak / 10 + (peak - peak / 10) * step / warmup
        return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))

    rates = np.array([rate_at(s) for s in range(total + 1)])
    np.testing.assert_allclose(rates, [by_hand(s) for s in range(total + 1)], rtol=1e-5,
                               atol=1e-7)
    assert rates[0] == pytest.approx(0.02) and rates[warmup] == pytest.approx(0.2)
    assert rates.argmax() == warmup and rates[total] == pytest.approx(0.0, abs=1e-7)
    assert (np.diff(rates[: warmup + 1]) > 0).all() and (np.diff(rates[warmup:]) < 0).all()


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch):
    monkeypatch.setenv("SENSITIVITY_CACHE", str(tmp_path / "cache"))
    import io

    from sensitivity.model.train import train
    from tests.helpers import write_class_folders

    data = write_class_folders(tmp_path / "data", per_class=2, splits=("train",))
    config = TrainConfig(depth=10, width=1, epochs=2, batch_size=4, val_size=10,
                         data_dir=str(data))
    quiet = {"verbose": 0, "log_file": io.StringIO()}
    straight = train(config, tmp_path / "straight.keras", tmp_path / "c1", **quiet)
    assert train(config, tmp_path / "split.keras", tmp_path / "c2", stop_after=1, **quiet) is None
    resumed = train(config, tmp_path / "split.keras", tmp_path / "c2", resume=True, **quiet)
    assert straight["epochs"] == resumed["epochs"] == 2
    a = keras.saving.load_model(tmp_path / "c1" / "last.keras")
    b = keras.saving.load_model(tmp_path / "c2" / "last.keras")
    assert int(a.optimizer.iterations.numpy()) == int(b.optimizer.iterations.numpy()) == 6
    # Same data order, augmentation, learning rates and momentum: the same weights and
    # optimizer state at the end.
    for x, y in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    for x, y in zip(a.optimizer.variables, b.optimizer.variables, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
