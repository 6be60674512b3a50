"""Smoke runs of the benchmark scripts with tiny settings: each runs to its end and reports."""

from __future__ import annotations

import importlib.util
import re

from tests.conftest import ROOT


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tune_localisation_runs_to_the_end(tmp_path, cifar_dir, photos_dir, capsys):
    module = _script("tune_localisation")
    out = tmp_path / "tune.md"
    assert module.main(["--data-dir", str(cifar_dir), "--photos-dir", str(photos_dir),
                        "--n", "2", "--sides", "64", "--methods", "gradcam", "center",
                        "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("### side 64 (2 validation scenes")
    assert "| gradcam |" in text and "| center |" in text
    assert text.strip() in capsys.readouterr().out


def test_rise_masks_runs_to_the_end(cifar_dir, capsys):
    module = _script("rise_masks")
    assert module.main(["--data-dir", str(cifar_dir), "--n", "2", "--counts", "10,20",
                        "--reference", "40"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| 10 |") or line.startswith("| 20 |")]
    assert len(rows) == 4  # each printed as measured, then in the final table
    # Each row holds two correlations in -1..1, each with its quartiles.
    for row in rows:
        numbers = [float(v) for v in re.findall(r"-?\d+\.\d+", row)]
        assert len(numbers) == 6 and all(-1.0 <= v <= 1.0 for v in numbers)
