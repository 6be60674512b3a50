"""The package imports lazily, so the page can draw before TensorFlow is loaded."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def modules_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return set(out.split())


def test_light_modules_do_not_import_tensorflow():
    """What the page draws before TensorFlow's import: the header, a figure, the controls."""
    loaded = modules_after("import sensitivity, sensitivity.figures, sensitivity.labels, "
                           "sensitivity.choices, sensitivity.settings, sensitivity.serving")
    assert {"sensitivity.figures", "sensitivity.settings", "plotly"} <= loaded
    assert "tensorflow" not in loaded and "keras" not in loaded


def test_the_engine_validates_against_the_choices_the_page_offers():
    from sensitivity import attribution, choices, gradients, saliency, settings

    assert saliency.METHODS is attribution.METHODS is choices.METHODS
    assert gradients.OUTPUT_TARGETS is saliency.OUTPUT_TARGETS is choices.OUTPUT_TARGETS
    assert settings.METHODS == tuple(choices.METHODS)
    assert set(settings.SIGNS) == set(choices.SIGNS)


def test_public_names_load_their_module_on_first_use():
    assert "sensitivity.inference" not in modules_after("import sensitivity")
    loaded = modules_after("import sensitivity\nsensitivity.predict\nsensitivity.ImageError")
    assert {"sensitivity.inference", "sensitivity.images"} <= loaded


def test_public_names():
    import sensitivity
    from sensitivity import inference

    for name in sensitivity.__all__:
        assert getattr(sensitivity, name) is not None and name in dir(sensitivity)
    assert sensitivity.predict is inference.predict
    assert sensitivity.CLASS_NAMES[2] == "bird"
    try:
        sensitivity.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
