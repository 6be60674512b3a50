"""The package imports lazily, so the page can draw before TensorFlow is loaded."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def modules_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return set(out.split())


def test_light_modules_do_not_import_tensorflow():
    """What the page draws before TensorFlow's import: the header, a figure, the controls (the
    size control reads a card and its find_objects rule, without SciPy either)."""
    loaded = modules_after("import sensitivity, sensitivity.render.figures, "
                           "sensitivity.model.labels, sensitivity.engine.choices, "
                           "sensitivity.web.settings, sensitivity.web.serving, "
                           "sensitivity.model.cards, sensitivity.imaging.rules")
    assert {"sensitivity.render.figures", "sensitivity.web.settings", "plotly"} <= loaded
    assert "tensorflow" not in loaded and "keras" not in loaded and "scipy" not in loaded


def test_the_engine_validates_against_the_choices_the_page_offers():
    import importlib

    from sensitivity.engine import choices, gradients
    from sensitivity.methods import entry
    from sensitivity.web import settings

    saliency = importlib.import_module("sensitivity.engine.saliency")  # the module
    assert saliency.METHODS is entry.METHODS is choices.METHODS
    assert gradients.OUTPUT_TARGETS is saliency.OUTPUT_TARGETS is choices.OUTPUT_TARGETS
    assert set(settings.SIGNS) == set(choices.SIGNS)


def test_public_names_load_their_module_on_first_use():
    assert "sensitivity.engine.inference" not in modules_after("import sensitivity")
    loaded = modules_after("import sensitivity\nsensitivity.predict\nsensitivity.ImageError")
    assert {"sensitivity.engine.inference", "sensitivity.imaging.images"} <= loaded


def test_public_names():
    import sensitivity
    from sensitivity.engine import inference

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


def test_methods_and_postprocessing_load_without_tensorflow():
    loaded = modules_after("import sensitivity\nsensitivity.METHODS\nsensitivity.top_k_mask\n"
                           "sensitivity.discover_objects")
    assert {"sensitivity.engine.choices", "sensitivity.imaging.postprocess",
            "sensitivity.imaging.discovery"} <= loaded
    assert "tensorflow" not in loaded and "keras" not in loaded


SALIENCY_IS_THE_FUNCTION = """
import importlib, types
import sensitivity
module = importlib.import_module("sensitivity.engine.saliency")
from sensitivity.engine.saliency import saliency
assert isinstance(module, types.ModuleType) and module.saliency is saliency
assert sensitivity.saliency is saliency, sensitivity.saliency
assert "saliency" in dir(sensitivity) and "saliency" in sensitivity.__all__
"""

FIRST_IMPORTS = [
    "import sensitivity\nsensitivity.saliency",  # the public name first (PEP 562 __getattr__)
    "from sensitivity.engine.saliency import saliency",  # the submodule first
    "import sensitivity.engine.saliency",
    "import sensitivity.methods\nfrom sensitivity import saliency\nassert callable(saliency)",
]

EACH_FIRST_IMPORT = """
import json, sys, traceback
results = {}
for first in json.loads(sys.argv[1]):
    # A fresh package: none of its modules imported (TensorFlow, which they import, stays).
    for name in [n for n in sys.modules if n == "sensitivity" or n.startswith("sensitivity.")]:
        del sys.modules[name]
    try:
        exec(first + "\\n" + sys.argv[2], {})
        results[first] = "ok"
    except Exception:
        results[first] = traceback.format_exc()
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def saliency_checks() -> dict[str, str]:
    """For each of FIRST_IMPORTS, "ok" or the traceback of the check that follows it, run in
    one fresh interpreter with every module of the package removed before each (the first
    imports TensorFlow, seconds of work that the others reuse)."""
    import json

    done = subprocess.run([sys.executable, "-c", EACH_FIRST_IMPORT, json.dumps(FIRST_IMPORTS),
                           SALIENCY_IS_THE_FUNCTION], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("first", FIRST_IMPORTS)
def test_saliency_is_the_function_whatever_was_imported_first(first, saliency_checks):
    """``sensitivity.saliency`` is the function and ``sys.modules["sensitivity.engine.saliency"]``
    the module, whatever was imported first into a fresh package: the import system binds the
    submodule to ``sensitivity.engine``, never to the package's public name."""
    assert saliency_checks[first] == "ok", saliency_checks[first]


def test_top_level_api_is_the_library_functions():
    import numpy as np

    import sensitivity
    from sensitivity.engine import choices
    from sensitivity.imaging import discovery, postprocess

    assert sensitivity.METHODS is choices.METHODS
    assert sensitivity.top_k_mask is postprocess.top_k_mask
    assert sensitivity.discover_objects is discovery.discover_objects
    heat = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert sensitivity.top_k_mask(heat, 3).sum() == 3 and sensitivity.top_k_mask(heat, 3)[3, 3]


def module_imports(root) -> dict[str, set[str]]:
    """``{module: the package's modules it imports at module level}`` for every module under
    ``root`` (imports inside functions, which run later, are left out)."""
    import ast

    files = {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"):
             p for p in root.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        found = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def import_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as a path that ends where it starts, or ``[]`` if there is none."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str]:
        for other in sorted(graph[name]):
            if other in path:
                return path[path.index(other):] + [other]
            if other not in done:
                found = visit(other, path + [other])
                if found:
                    return found
        done.add(name)
        return []

    for start in sorted(graph):
        cycle = visit(start, [start])
        if cycle:
            return cycle
    return []


def test_no_module_of_the_library_imports_itself_through_others():
    graph = module_imports(ROOT / "sensitivity")
    assert graph["sensitivity.engine.saliency"] >= {"sensitivity.engine.choices"}
    assert import_cycle(graph) == []
    # The check finds a cycle where there is one.
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert import_cycle({"a": {"b"}, "b": set()}) == []
