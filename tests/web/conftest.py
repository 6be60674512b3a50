"""Fixtures of the page's tests."""

from __future__ import annotations

import pytest


@pytest.fixture()
def deferred_downloads(monkeypatch) -> dict[str, tuple]:
    """The page's download buttons as they register, by file name without its two-part prefix
    (``"map.npy"``): ``(callable that makes the file's bytes, MIME type)``. Nothing is made
    until a test calls the callable, as nothing is until a person clicks."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    made: dict[str, tuple] = {}
    original = MediaFileManager.add_deferred

    def recording(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        made[file_name.split("-", 2)[-1]] = (data_callable, mimetype)
        return original(self, data_callable, mimetype, coordinates, file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", recording)
    return made
