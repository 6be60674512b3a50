"""The notes the page and explain put beside a map."""

from __future__ import annotations

from sensitivity.engine.choices import METHODS
from sensitivity.render.report import method_note


def test_a_methods_caveat_names_the_method_and_size_where_it_fails():
    caveat = METHODS["gradient"].caveat_at(64, 32)
    assert caveat and method_note("gradient", 64, 32) == f"gradient at 64 px: {caveat}"
    assert method_note("gradient", 32, 32) == ""  # at the native size it does not fail
    assert method_note("gradient", 64, 64) == ""
    assert method_note("gradcam", 64, 32) == ""
