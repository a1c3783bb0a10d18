"""Notebook 05's overlay explorer in a real JupyterLab, driven by headless Chromium through
Playwright.

Writes a two-cell notebook into a temporary folder: it prepares the committed synthetic trio at
64 px, trains the fixed variant through `overlay_experiment.train_and_check` for 90 steps (100
copies x 3 sources x 3 epochs: enough for the decoder to depend on z, so the weights visibly matter)
and displays `OverlayExplorer(setup, fixed["vae"])`, as notebook 05 does. JupyterLab serves that
folder on loopback with a token; the test runs all cells, then, as a user would the moment the
explorer opens, presses a key on the first slider on the page (crack_1's weight, live for every
method), changes the method, the weight w and the source selection, and clicks the latent-plane
picture away from its ring; after each change it checks that the overlay image's pixels changed (and
the score text, but for the click), and after the click that the ring moved to the clicked spot. The
explorer's screenshot (taken before the click: the method's overlay with its latent point ringed) is
saved to test-artifacts/ (ignored by git); with SCREENSHOT_DIR=results/figures it also replaces the
committed one (the suite itself never writes tracked files).

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
SCREENSHOT_DIR = os.environ.get("SCREENSHOT_DIR", "test-artifacts/screenshots")
SCREENSHOT = ROOT / SCREENSHOT_DIR / "widget_overlay_explorer.png"
MAX_SCREENSHOT_BYTES = 300_000
OUTPUT = ROOT / "test-artifacts"
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

# The PNG bytes behind an <img> (ipywidgets.Image shows them through a blob: URL).
IMAGE_BYTES_JS = (
    "async (img) => Array.from(new Uint8Array(await (await fetch(img.src)).arrayBuffer()))"
)
RED = (220, 20, 20)  # the latent plane's ring (widgets.ScatterMarker)


def write_notebook(folder: Path) -> None:
    """The notebook 05 steps the explorer needs, at a small size: prepare, train the fixed variant,
    display."""
    cells = [
        (
            "from vae_overlay import overlay_experiment as experiment\nfrom"
            " vae_overlay.overlay_explorer import OverlayExplorer\n\nsetup ="
            f" experiment.prepare({TRIO!r}, 64, 'artifacts', 'synthetic', epochs=3,"
            " n_samples=50)\nfixed = experiment.train_and_check(setup, 'standardised + leaky', 42,"
            " 100)  # 90 steps"
        ),
        "OverlayExplorer(setup, fixed['vae'])",
    ]
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in cells]
    )
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(notebook, folder / NOTEBOOK)


@pytest.fixture
def lab_server(tmp_path, jupyter_lab):
    """(base URL, token, log path) of a JupyterLab serving the notebook; stopped (with its kernels)
    afterwards."""
    root = tmp_path / "lab"
    root.mkdir()
    write_notebook(root)
    with jupyter_lab.serve(root) as server:
        yield server


class Shown:
    """What the explorer shows now: the overlay's src and decoded pixels, the latent plane's pixels,
    the score text and the caption."""

    def __init__(self, page):
        self.page = page
        self.image = page.locator(f"{PANEL} img.overlay-image")
        self.plane = page.locator(f"{PANEL} img.overlay-plane")
        self.score = page.locator(f"{PANEL} .overlay-score")
        self.caption = page.locator(f"{PANEL} .overlay-caption")

    def pixels(self, image) -> np.ndarray:
        data = bytes(self.page.evaluate(IMAGE_BYTES_JS, image.element_handle()))
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def now(self) -> dict:
        return {
            "src": self.image.get_attribute("src"),
            "pixels": self.pixels(self.image),
            "plane": self.pixels(self.plane),
            "score": self.score.inner_text().strip(),
        }

    def after(self, before: dict, what: str, score_changes: bool = True) -> dict:
        """Wait for a new image (and a new score text, unless not `score_changes`) after a change,
        then check that the pixels changed too. The kernel sends the image, then the plane, then the
        texts."""
        self.page.wait_for_function(
            "([img, score, src, text, both]) => img.src !== src"
            " && (!both || score.innerText.trim() !== text)",
            arg=[
                self.image.element_handle(),
                self.score.element_handle(),
                before["src"],
                before["score"],
                score_changes,
            ],
            timeout=20_000,
        )
        now = self.now()
        assert now["pixels"].shape == before["pixels"].shape
        assert not np.array_equal(now["pixels"], before["pixels"]), (
            f"{what}: the overlay did not change"
        )
        assert now["score"].startswith("fidelity score"), what
        assert now["score"] != before["score"] or not score_changes, what
        return now

    def wait_for_caption(self, text: str) -> None:
        """Wait until the caption includes `text`."""
        self.page.wait_for_function(
            f"(el) => el.innerText.includes('{text}')",
            arg=self.caption.element_handle(),
            timeout=20_000,
        )


def ring_centre(plane: np.ndarray) -> np.ndarray:
    """(row, column) of the middle of the red ring on the latent plane's pixels."""
    spots = np.argwhere((plane == RED).all(axis=-1))
    assert len(spots), "no ring on the latent plane"
    return spots.mean(axis=0)


def press_end(page, handle, readout, maximum: str) -> None:
    """Press End on a slider's focused handle (its maximum) and wait for its readout to show
    `maximum`."""
    handle.focus()
    page.keyboard.press("End")
    page.wait_for_function(
        f"(el) => el.innerText.trim() === '{maximum}'", arg=readout.element_handle(), timeout=20_000
    )


def open_explorer(page, jupyter_lab, base: str, token: str):
    """Open the notebook, run all its cells and wait for the explorer's first overlay: (the
    explorer, what it shows, what it shows first)."""
    jupyter_lab.open_and_run_all(
        page, f"{base}/lab/tree/{NOTEBOOK}?reset&token={token}", 300, "the explorer notebook"
    )

    explorer = page.locator(f"{PANEL} .overlay-explorer")
    explorer.wait_for(timeout=60_000)
    explorer.scroll_into_view_if_needed()
    shown = Shown(page)
    page.wait_for_function(
        "(el) => el.src && el.src.startsWith('blob:')", arg=shown.image.element_handle()
    )
    start = shown.now()
    assert start["score"].startswith("fidelity score") and "pore" in start["score"]
    return explorer, shown, start


def double_crack_1_with_the_first_slider(page, shown: Shown, start: dict) -> dict:
    """A key press on the first slider on the page, as the explorer opens (latent sum): crack_1's
    weight, live, 1 -> 2."""
    first = page.locator(f"{PANEL} .overlay-explorer .widget-slider").first
    assert "overlay-source-weight-0" in first.get_attribute("class")
    first_readout = first.locator(".widget-readout")
    assert first_readout.inner_text().strip() == "1.00"
    # the slider's maximum: crack_1's defect doubled
    press_end(page, first.locator(".noUi-handle"), first_readout, "2.00")
    return shown.after(start, "key press on the first slider (crack_1's weight 1 -> 2)")


def weighted_offset_at_w_3_without_crack_2(page, shown: Shown, doubled: dict) -> dict:
    """The method changed to the weighted offset, its weight w to 3 and crack_2 unticked, each
    redrawing the overlay; the caption says all three."""
    page.locator(f"{PANEL} .overlay-method select").select_option(label=METHODS["weighted"])
    weighted = shown.after(doubled, "method: latent sum -> weighted offset")

    readout = page.locator(f"{PANEL} .overlay-weight .widget-readout")
    assert readout.inner_text().strip() == "1.00"
    # the slider's maximum, w = 3
    press_end(page, page.locator(f"{PANEL} .overlay-weight .noUi-handle"), readout, "3.00")
    heavier = shown.after(weighted, "weight: 1 -> 3")

    page.locator(f"{PANEL} .overlay-source-1 input[type=checkbox]").uncheck()
    fewer = shown.after(heavier, "sources: crack_2 unticked")
    assert (
        "crack_2" not in fewer["score"] and "crack_1" in fewer["score"] and "pore" in fewer["score"]
    )
    shown.wait_for_caption("w = 3.00")
    caption = shown.caption.inner_text()
    assert re.match(r"crack_1 ×2\.00 \+ pore · weighted offset.*w = 3\.00", caption), caption
    return fewer


def click_the_plane_away_from_the_ring(page, shown: Shown, fewer: dict) -> None:
    """A click on the latent plane, at the one of four spots farthest from the ring: the decode
    there, and the ring moved to the clicked spot."""
    ring = ring_centre(fewer["plane"])
    height, width = fewer["plane"].shape[:2]
    spots = [(height * a, width * b) for a in (0.3, 0.7) for b in (0.3, 0.7)]
    row, column = max(spots, key=lambda spot: np.hypot(*(np.array(spot) - ring)))
    box = shown.plane.bounding_box()
    shown.plane.click(
        position={"x": column * box["width"] / width, "y": row * box["height"] / height}
    )
    clicked = shown.after(fewer, "click on the latent plane", score_changes=False)
    shown.wait_for_caption("clicked")
    # sent after the overlay: read it once the caption is in
    clicked["plane"] = shown.pixels(shown.plane)
    assert np.abs(ring_centre(clicked["plane"]) - (row, column)).max() <= 2, (
        "the ring did not move there"
    )
    assert re.match(
        r"crack_1 ×2\.00 \+ pore · decode at the clicked z = \(", shown.caption.inner_text()
    )


def test_first_slider_method_weight_sources_and_plane_click_redraw_the_overlay(
    lab_server, jupyter_lab
):
    base, token, log_path = lab_server
    OUTPUT.mkdir(exist_ok=True)
    with jupyter_lab.browser_page(
        1400, 1000, OUTPUT / "browser_overlay_failure.png", log_path
    ) as page:
        explorer, shown, start = open_explorer(page, jupyter_lab, base, token)
        doubled = double_crack_1_with_the_first_slider(page, shown, start)
        fewer = weighted_offset_at_w_3_without_crack_2(page, shown, doubled)
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        page.mouse.move(0, 0)
        explorer.screenshot(path=str(OUTPUT / "widget_overlay_explorer.png"))

        click_the_plane_away_from_the_ring(page, shown, fewer)
        explorer.screenshot(path=str(OUTPUT / "browser_overlay_after_click.png"))

    shot = Image.open(OUTPUT / "widget_overlay_explorer.png")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shot.save(SCREENSHOT, optimize=True)
    assert SCREENSHOT.stat().st_size < MAX_SCREENSHOT_BYTES
