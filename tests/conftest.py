"""Shared fixtures: paths to the shared data sets and a tiny random WRN."""

from __future__ import annotations

from pathlib import Path

import pytest

import sensitivity  # noqa: F401  (sets the TensorFlow environment before TF is imported)

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets"
CIFAR_DIR = SHARED / "cifar10-jpeg"
PHOTOS_DIR = SHARED / "photos"


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    if not (CIFAR_DIR / "test").is_dir():
        pytest.fail(f"the shared CIFAR-10 copy is missing at {CIFAR_DIR}")
    return CIFAR_DIR


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    if not PHOTOS_DIR.is_dir():
        pytest.fail(f"the shared photographs are missing at {PHOTOS_DIR}")
    return PHOTOS_DIR


@pytest.fixture(scope="session")
def default_model():
    return sensitivity.load_model()


@pytest.fixture
def default_model_shared(default_model, monkeypatch):
    """Code under test that loads the default model (``load_model()``, or its path) gets the
    session's ``default_model``: the same weights, without loading it and tracing its
    functions again. Only for code that leaves the model as it is."""
    from sensitivity.model import io as model_io

    original = model_io.load_model

    def load_model(path=None):
        if path is None or Path(path).resolve() == model_io.model_path().resolve():
            return default_model
        return original(path)

    monkeypatch.setattr(model_io, "load_model", load_model)
    monkeypatch.setattr(sensitivity, "load_model", load_model)
    return default_model


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (``item.rep_call``) for fixtures to read."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
