"""Notebook 05's overlay explorer in a real JupyterLab, driven by headless Chromium through Playwright.

Writes a two-cell notebook into a temporary folder: it prepares the committed synthetic trio at 64 px, trains the
fixed variant through `overlay_experiment.train_and_check` for 90 steps (100 copies x 3 sources x 3 epochs: enough
for the decoder to depend on z, so the weight visibly matters) and displays `OverlayExplorer(setup, fixed["vae"])`,
as notebook 05 does. JupyterLab serves that folder on loopback with a token; the test runs all cells, then changes
the method, the weight and the source selection, and after each change checks that the overlay image's pixels and
the score text changed. On success the explorer's screenshot is saved to test-artifacts/ (ignored by git); with
SCREENSHOT_DIR=results/figures it also replaces the committed one (the suite itself never writes tracked files).

Needs /usr/bin/chromium and the playwright package; trains its own tiny model (no artifacts needed).
"""
import io
import os
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from vae_overlay.overlay_explorer import METHODS

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
TRIO = [str(ROOT / "data" / "synthetic" / f"{name}.png") for name in ("crack_1", "crack_2", "pore")]
NOTEBOOK = "overlay_explorer.ipynb"
SCREENSHOT = ROOT / os.environ.get("SCREENSHOT_DIR", "test-artifacts/screenshots") / "widget_overlay_explorer.png"
MAX_SCREENSHOT_BYTES = 300_000
OUTPUT = ROOT / "test-artifacts"
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

# The PNG bytes behind an <img> (ipywidgets.Image shows them through a blob: URL).
IMAGE_BYTES_JS = "async (img) => Array.from(new Uint8Array(await (await fetch(img.src)).arrayBuffer()))"


def write_notebook(folder: Path) -> None:
    """The notebook 05 steps the explorer needs, at a small size: prepare, train the fixed variant, display."""
    cells = [
        "from vae_overlay import overlay_experiment as experiment\n"
        "from vae_overlay.overlay_explorer import OverlayExplorer\n\n"
        f"setup = experiment.prepare({TRIO!r}, 64, 'artifacts', 'synthetic', epochs=3, n_samples=50)\n"
        "fixed = experiment.train_and_check(setup, 'standardised + leaky', 42, 100)  # 90 steps",
        "OverlayExplorer(setup, fixed['vae'])",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, folder / NOTEBOOK)


@pytest.fixture
def lab_server(tmp_path, jupyter_lab):
    """(base URL, token, log path) of a JupyterLab serving the notebook; stopped (with its kernels) afterwards."""
    root = tmp_path / "lab"
    root.mkdir()
    write_notebook(root)
    with jupyter_lab.serve(root) as server:
        yield server


class Shown:
    """What the explorer shows now: the overlay's src, its decoded pixels and the score text."""

    def __init__(self, page):
        self.page = page
        self.image = page.locator(f"{PANEL} img.overlay-image")
        self.score = page.locator(f"{PANEL} .overlay-score")

    def now(self) -> dict:
        data = bytes(self.page.evaluate(IMAGE_BYTES_JS, self.image.element_handle()))
        return {"src": self.image.get_attribute("src"), "pixels": np.asarray(Image.open(io.BytesIO(data)).convert("RGB")),
                "score": self.score.inner_text().strip()}

    def after(self, before: dict, what: str) -> dict:
        """Wait for a new image and a new score text after a change, then check that the pixels changed too."""
        self.page.wait_for_function(
            "([img, score, src, text]) => img.src !== src && score.innerText.trim() !== text",
            arg=[self.image.element_handle(), self.score.element_handle(), before["src"], before["score"]],
            timeout=20_000)
        now = self.now()
        assert now["pixels"].shape == before["pixels"].shape
        assert not np.array_equal(now["pixels"], before["pixels"]), f"{what}: the overlay's pixels did not change"
        assert now["score"] != before["score"] and now["score"].startswith("fidelity score"), what
        return now


def test_method_weight_and_sources_redraw_the_overlay_and_score(lab_server, jupyter_lab):
    base, token, log_path = lab_server
    OUTPUT.mkdir(exist_ok=True)
    with jupyter_lab.browser_page(1300, 900, OUTPUT / "browser_overlay_failure.png", log_path) as page:
        jupyter_lab.open_and_run_all(page, f"{base}/lab/tree/{NOTEBOOK}?reset&token={token}", 300,
                                     "the explorer notebook")

        explorer = page.locator(f"{PANEL} .overlay-explorer")
        explorer.wait_for(timeout=60_000)
        explorer.scroll_into_view_if_needed()
        shown = Shown(page)
        page.wait_for_function("(el) => el.src && el.src.startsWith('blob:')", arg=shown.image.element_handle())
        start = shown.now()
        assert start["score"].startswith("fidelity score") and "pore" in start["score"]

        page.locator(f"{PANEL} .overlay-method select").select_option(label=METHODS["weighted"])
        weighted = shown.after(start, "method: latent sum -> weighted offset")

        readout = page.locator(f"{PANEL} .overlay-weight .widget-readout")
        assert readout.inner_text().strip() == "1.00"
        page.locator(f"{PANEL} .overlay-weight .noUi-handle").focus()
        page.keyboard.press("End")  # the slider's maximum, w = 3
        page.wait_for_function("(el) => el.innerText.trim() === '3.00'", arg=readout.element_handle(),
                               timeout=20_000)
        heavier = shown.after(weighted, "weight: 1 -> 3")

        page.locator(f"{PANEL} .overlay-source-1 input[type=checkbox]").uncheck()
        fewer = shown.after(heavier, "sources: crack_2 unticked")
        assert "crack_2" not in fewer["score"] and "crack_1" in fewer["score"] and "pore" in fewer["score"]
        caption = page.locator(f"{PANEL} .overlay-caption").inner_text()
        assert re.match(r"crack_1 \+ pore · weighted offset.*w = 3\.00", caption), caption
        explorer.screenshot(path=str(OUTPUT / "widget_overlay_explorer.png"))

    shot = Image.open(OUTPUT / "widget_overlay_explorer.png")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shot.save(SCREENSHOT, optimize=True)
    assert SCREENSHOT.stat().st_size < MAX_SCREENSHOT_BYTES
