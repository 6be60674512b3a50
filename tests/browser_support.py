"""A real Streamlit server for the browser tests, and how to launch Debian's Chromium."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image

from sensitivity.imaging.images import center_square_box
from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = ROOT / "test-artifacts"


@dataclass
class Server:
    url: str
    started: float  # time.monotonic() when the process was started
    process: subprocess.Popen

    def resident_mb(self, peak: bool = False) -> float:
        """The server process's resident memory (VmRSS), or with ``peak`` the most it has held
        so far (VmHWM), in MiB."""
        field = "VmHWM:" if peak else "VmRSS:"
        for line in open(f"/proc/{self.process.pid}/status"):  # noqa: SIM115
            if line.startswith(field):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {field} line")

    def dump_stacks(self) -> None:
        """Ask a ``serve`` server to write every thread's stack to its log (SIGUSR1)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGUSR1)
            time.sleep(1.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("streamlit did not become healthy")


@contextlib.contextmanager
def streamlit_server(log_name: str, launcher: str = "serve",
                     environ: Mapping[str, str] | None = None) -> Iterator[Server]:
    """The dashboard on a free local port, stopped on exit; its output is kept in
    ``test-artifacts/<log_name>.log``; ``environ``: variables set for the server besides this
    process's.

    ``launcher`` "serve": ``python -m sensitivity serve`` (the README's command, which loads the
    model while the server starts); "streamlit": plain ``streamlit run app.py``.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / f"{log_name}.log", "w")  # noqa: SIM115
    start = {"serve": [sys.executable, "-m", "sensitivity", "serve"],
             "streamlit": [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py")]}
    started = time.monotonic()
    process = subprocess.Popen(
        [*start[launcher], "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ) | dict(environ or {}),
    )
    try:
        wait_healthy(url, process)
        yield Server(url, started, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def require_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (see .ci/run)")


# Installed in the page before an upload: marks, with the page's own clock, when the section
# headed by the file's name has its probability table (drawn with the sentence, which an
# out-of-distribution picture words otherwise), its heatmap (the Plotly chart titled
# "sensitivity") and its top-k mask picture loaded and decoded, then waits one animation frame
# (the frame that paints them). Its checks are cheap (no layout, no text of the whole page), so
# that timing the page does not slow it down, as Playwright's text and role queries polling
# during the upload did.
_DRAWN_WATCH = """name => {
  window.__drawn = undefined;
  const maskPicture = () => {
    const heading = [...document.querySelectorAll('h3')].find(h => h.textContent.trim() === name);
    if (!heading) return null;
    const after = node => heading.compareDocumentPosition(node) & Node.DOCUMENT_POSITION_FOLLOWING;
    const table = [...document.querySelectorAll('table[aria-label="class probabilities"]')].some(
      t => after(t));
    const heatmap = [...document.querySelectorAll('.js-plotly-plot .gtitle')].some(
      t => after(t) && t.textContent === 'sensitivity');
    const caption = [...document.querySelectorAll('[data-testid=stImageCaption]')].find(
      c => after(c) && c.textContent.startsWith('top 100 pixels'));
    const img = caption && caption.closest('[data-testid=stImage]')?.querySelector('img');
    return table && heatmap && img ? img : null;
  };
  const observer = new MutationObserver(() => {
    const img = window.__drawn === undefined && maskPicture();
    if (img) {
      window.__drawn = null;
      observer.disconnect();
      img.decode().catch(() => {}).then(
        () => requestAnimationFrame(() => { window.__drawn = performance.now(); }));
    }
  });
  observer.observe(document.body, {subtree: true, childList: true, characterData: true});
  return performance.now();
}"""


def upload_and_wait(page, name: str, data: bytes, mime: str = "image/jpeg") -> float:
    """Upload one file; seconds until its section, prediction, heatmap and top-k mask are drawn.

    Timed by the page's own clock (see ``_DRAWN_WATCH``); the checks that follow use Playwright's
    locators. Streamlit's uploader keeps earlier files (an empty ``set_input_files`` does not
    clear it), so the wait is for the section headed by this file's name, not for any mask.
    """
    start = page.evaluate(_DRAWN_WATCH, name)
    page.locator("input[type=file]").first.set_input_files(
        files=[{"name": name, "mimeType": mime, "buffer": data}])
    page.wait_for_function("typeof window.__drawn === 'number'", polling=100, timeout=120_000)
    drawn = page.evaluate("window.__drawn")
    page.get_by_role("heading", name=name).wait_for(timeout=10_000)
    page.locator('table[aria-label="class probabilities"]').first.wait_for(timeout=10_000)
    page.locator(".js-plotly-plot .heatmaplayer, .js-plotly-plot .hm").first.wait_for(
        state="attached", timeout=10_000)
    page.get_by_text("top 100 pixels").first.wait_for(timeout=10_000)
    return (drawn - start) / 1000


def image_variant(image: np.ndarray, index: int, fmt: str = "PNG") -> bytes:
    """``(H, W, 3)`` uint8 ``image`` encoded as ``fmt`` (PNG, or JPEG at quality 95) with the
    lowest bit of one red value flipped: pixel ``index`` (row-major, modulo its size) of the
    centred square the network sees, so each index is a new analysis with the same prediction.
    """
    x0, y0, x1, _ = center_square_box(*image.shape[:2])
    side = x1 - x0
    row, col = divmod(index % (side * side), side)
    changed = image.copy()
    changed[y0 + row, x0 + col, 0] ^= 1
    buffer = io.BytesIO()
    Image.fromarray(changed).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()
