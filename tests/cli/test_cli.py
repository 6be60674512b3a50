import subprocess
import sys

import numpy as np
import pytest

from sensitivity.__main__ import main
from tests.conftest import ROOT


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sensitivity", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_bad_flag_is_a_usage_message_not_a_traceback():
    result = run_cli("train", "--epochs", "zero")
    assert result.returncode == 2
    assert "expected a whole number" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_folder(tmp_path, capsys):
    assert main(["evaluate", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "data folder not found" in capsys.readouterr().err
    assert main(["train", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "data folder not found" in capsys.readouterr().err


def test_cutout_out_of_range_is_a_message(capsys):
    assert main(["train", "--cutout", "40"]) == 2
    assert "--cutout must be between 0 (off) and 32" in capsys.readouterr().err


def test_wrong_layout(tmp_path, capsys):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    assert main(["evaluate", "--data-dir", str(tmp_path), "--split", "train"]) == 2
    assert "lacks the class folders" in capsys.readouterr().err


def test_bad_depth_and_missing_model(tmp_path, capsys):
    assert main(["train", "--depth", "15", "--data-dir", str(tmp_path)]) == 2
    assert "6n+4" in capsys.readouterr().err
    from tests.helpers import write_class_folders

    data = write_class_folders(tmp_path / "d", per_class=1, splits=("test",))
    assert main(["evaluate", "--data-dir", str(data), "--model", str(tmp_path / "m.keras")]) == 2
    assert "model file not found" in capsys.readouterr().err


def test_missing_command_and_resume_without_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert main(["train", "--resume", "--checkpoint-dir", str(tmp_path)]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_evaluate_prints_accuracy_and_confusion_matrix(cifar_dir, capsys, default_model_shared):
    # In this process (its TensorFlow is loaded already); the test above runs the module itself.
    assert main(["evaluate", "--data-dir", str(cifar_dir), "--limit", "200", "--outliers",
                 "5"]) == 0
    printed = capsys.readouterr().out
    assert "top-1 accuracy" in printed and "confusion matrix" in printed
    assert "calibration on 200 images" in printed and "  calibrated " in printed
    assert "  text " in printed and "out of distribution: AUROC" in printed
    rows = [line for line in printed.splitlines() if line.startswith("airplane ")]
    assert len(rows) == 1 and sum(int(v) for v in rows[0].split()[1:]) == 20


def test_evaluate_an_operators_model_on_its_own_class_folders(tmp_path, capsys):
    """A 3-class model of native size 48: its class folders, its size, and the confusion
    matrix of its own predictions (computed here with the model directly)."""
    import keras
    from PIL import Image

    from sensitivity.model.io import write_operator_card

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    model.set_weights([np.array([[4.0, -4, 0], [-4, 4, 0], [0, 0, 0]], np.float32),
                       np.array([0, 0, 1], np.float32)])  # red -> 0, green -> 1, else 2
    model.save(tmp_path / "tiny.keras")
    names = ["reddish", "greenish", "other"]
    write_operator_card(tmp_path / "tiny.keras", names, 48)
    rng = np.random.default_rng(0)
    images, labels = [], []
    for label, name in enumerate(names):
        (tmp_path / "data" / "test" / name).mkdir(parents=True)
        for i in range(4):
            colour = rng.integers(0, 256, 3)  # a random colour: predictions of every class
            pixels = np.clip(colour + rng.integers(-20, 21, (48, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / "test" / name / f"{i}.png")
            images.append(pixels)
            labels.append(label)
    predicted = np.asarray(model(np.stack(images).astype(np.float32))).argmax(1)
    assert len(set(predicted.tolist())) == 3
    expected = np.zeros((3, 3), int)
    np.add.at(expected, (labels, predicted), 1)
    assert main(["evaluate", "--model", str(tmp_path / "tiny.keras"), "--data-dir",
                 str(tmp_path / "data"), "--outliers", "1"]) == 0
    printed = capsys.readouterr().out
    accuracy = 100 * np.mean(predicted == np.asarray(labels))
    assert f"top-1 accuracy: {accuracy:.2f}% on 12 images" in printed
    for name, row in zip(names, expected, strict=True):
        assert any(line.split() == [name, *map(str, row)] for line in printed.splitlines())


def test_serve_refuses_to_start_on_an_altered_model(tmp_path, monkeypatch, capsys):
    import shutil

    from sensitivity.model.io import DEFAULT_MODEL_PATH, read_model_card

    model = tmp_path / "model.keras"
    shutil.copy(DEFAULT_MODEL_PATH.with_suffix(".json"), model.with_suffix(".json"))
    model.write_bytes(DEFAULT_MODEL_PATH.read_bytes()[:-10])
    monkeypatch.setenv("SENSITIVITY_MODEL_PATH", str(model))
    assert main(["serve", "--server.port", "1"]) == 2  # stops before Streamlit starts
    message = capsys.readouterr().err
    assert str(model) in message and read_model_card(model)["sha256"] in message


def test_upload_limit_of_the_page_and_of_the_decoder_agree():
    import tomllib

    from sensitivity.imaging.images import MAX_BYTES

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 2**20 == MAX_BYTES
    assert config["server"]["enableXsrfProtection"] is True
    assert config["client"]["showErrorDetails"] == "none"


def test_config_keeps_per_interaction_work_small():
    """No source watcher (it walks every loaded module after each run), no magic, no forced
    full garbage collection after each run."""
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["fileWatcherType"] == "none"
    assert config["runner"]["magicEnabled"] is False
    assert config["runner"]["postScriptGC"] is False


def test_fit_positions_fits_stores_and_attaches_a_head(tmp_path, cifar_dir, capsys):
    """A few scenes on a tiny untrained WRN: the command writes the head and its card entry,
    and the model loads with it."""
    import sensitivity
    from sensitivity.model.io import read_model_card, write_model_card
    from sensitivity.model.position_head import position_head_of
    from sensitivity.model.wrn import build_wrn
    from tests.helpers import CIFAR_CARD

    path = tmp_path / "tiny.keras"
    build_wrn(10, 1).save(path)
    write_model_card(path, {"name": "tiny", **CIFAR_CARD})
    assert main(["fit-positions", "--data-dir", str(cifar_dir), "--model", str(path),
                 "--scenes", "8", "--epochs", "1"]) == 0
    assert "written: " in capsys.readouterr().out
    entry = read_model_card(path)["position_head"]
    assert entry["file"] == "tiny.positions.npz" and entry["fitted_on"].startswith("8 photo-like")
    head = position_head_of(sensitivity.load_model(path))
    assert head is not None and (head.channels, head.classes) == (64, 10)
