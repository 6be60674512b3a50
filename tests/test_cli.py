import subprocess
import sys

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


def test_serve_refuses_to_start_on_an_altered_model(tmp_path, monkeypatch, capsys):
    import shutil

    from sensitivity.model_io import DEFAULT_MODEL_PATH, read_model_card

    model = tmp_path / "model.keras"
    shutil.copy(DEFAULT_MODEL_PATH.with_suffix(".json"), model.with_suffix(".json"))
    model.write_bytes(DEFAULT_MODEL_PATH.read_bytes()[:-10])
    monkeypatch.setenv("SENSITIVITY_MODEL_PATH", str(model))
    assert main(["serve", "--server.port", "1"]) == 2  # stops before Streamlit starts
    message = capsys.readouterr().err
    assert str(model) in message and read_model_card(model)["sha256"] in message


def test_upload_limit_of_the_page_and_of_the_decoder_agree():
    import tomllib

    from sensitivity.images import MAX_BYTES

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
