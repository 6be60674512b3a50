"""The localising fine-tune (training/finetune_scenes.py): its scenes' targets, and a two-step
run on a tiny packed set that writes a model loadable in safe mode with the same layers."""

from __future__ import annotations

import importlib.util
import io
import json
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT

SPEC = importlib.util.spec_from_file_location("finetune_scenes",
                                              ROOT / "training" / "finetune_scenes.py")
finetune = importlib.util.module_from_spec(SPEC)
sys.modules["finetune_scenes"] = finetune  # its worker processes find their functions by name
SPEC.loader.exec_module(finetune)


def _pack(path, n: int = 30) -> None:
    """``n`` random 32x32 JPEGs of classes 0..9 packed as pack_objects.py does."""
    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "JPEG")
        blobs.append(buffer.getvalue())
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
    np.savez(path, jpeg=np.frombuffer(b"".join(blobs), np.uint8), offsets=offsets,
             labels=np.arange(n) % 10, indices=np.arange(n))


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    path = tmp_path_factory.mktemp("objects") / "objects.npz"
    _pack(path)
    finetune._init_worker(str(path))
    return path


def test_scene_targets_are_each_classes_share_of_a_cell(packed):
    covered = 0
    for seed in range(12):
        image, cells = finetune.scene(64, 96, np.random.default_rng(seed))
        assert image.shape == (64, 96, 3) and image.dtype == np.uint8
        assert cells.shape == (16, 24, 10)
        assert cells.min() >= 0 and cells.sum(axis=-1).max() <= 1 + 1e-6
        assert (cells > 0).any(axis=(0, 1)).sum() <= 3  # at most three classes
        # Shares are multiples of 1/16: whole pixels of a 4x4 cell.
        np.testing.assert_allclose(cells * 16, np.rint(cells * 16), atol=1e-5)
        covered += cells.sum() > 0
    assert covered >= 8  # most scenes hold an object (8% hold none)
    x, y = finetune.scene_batch((0, 1), 3)
    assert x.shape[0] == 3 and y.shape[:3] == (3, x.shape[1] // 4, x.shape[2] // 4)
    assert (y[..., -1] == 1).all()
    # --extra-shapes: the added canvases are drawn beside SHAPES, and only those.
    extra = ((128, 112),)
    drawn = {finetune.scene_batch((0, i), 1, extra)[0].shape[1:3] for i in range(40)}
    assert (128, 112) in drawn and drawn <= set(finetune.SHAPES) | set(extra)
    x, y = finetune.cifar_batch((0, 2), 5)
    assert x.shape == (5, 32, 32, 3)
    np.testing.assert_allclose(y[:, :-1].sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y[:, :-1].max(axis=1), 0.91, rtol=1e-6)  # smoothing 0.1


def test_a_two_step_run_writes_a_model_with_the_same_layers(packed, tmp_path, monkeypatch):
    import keras

    out = tmp_path / "tuned.keras"
    monkeypatch.setattr("sys.argv", [
        "finetune_scenes.py", "--objects", str(packed), "--init",
        str(ROOT / "models" / "wrn-16-3.keras"), "--out", str(out), "--scene-batch", "2",
        "--cifar-batch", "2", "--workers", "1", "--max-steps", "2"])
    finetune.main()
    tuned = keras.saving.load_model(out, safe_mode=True)
    start = keras.saving.load_model(ROOT / "models" / "wrn-16-3.keras", safe_mode=True)
    assert [layer.name for layer in tuned.layers] == [layer.name for layer in start.layers]
    changed = [not np.array_equal(a, b) for a, b in
               zip(tuned.get_weights(), start.get_weights(), strict=True)]
    assert any(changed)
    log = json.loads(out.with_name(out.name + ".log.json").read_text())
    assert log["log"][-1]["final"] and log["log"][-1]["step"] == 2
