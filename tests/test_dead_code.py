"""No dead code: vulture finds no unused name in the library or the page (app.py, ui/; tests
and benchmarks count as callers; framework hooks are listed in tests/vulture_whitelist.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_vulture_finds_no_unused_code_in_the_library_or_the_page():
    paths = ["sensitivity", "app.py", "ui", "tests", "benchmarks", "tests/vulture_whitelist.py"]
    found = subprocess.run(
        [sys.executable, "-m", "vulture", *paths, "--min-confidence", "60"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert "No module named vulture" not in found.stderr, found.stderr
    unused = [line for line in found.stdout.splitlines()
              if line.startswith(("sensitivity/", "app.py", "ui/"))]
    assert unused == [], "\n".join(unused)
