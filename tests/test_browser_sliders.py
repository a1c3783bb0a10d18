"""Notebook 04's latent sliders in a real JupyterLab, driven by headless Chromium through Playwright.

Starts JupyterLab on loopback with a token in a temporary folder that holds a copy of notebook 04
(`notebooks/`, FULL_SWEEP = False, outputs cleared) and a symlink `artifacts -> <repo>/artifacts`, so
the notebook's relative paths work and autosave never writes into the repository. Runs all cells,
moves the z1 slider with the keyboard and with a mouse drag, and checks that the readout and the
decoded image change. Screenshots and the key-press -> new-image latency go to `test-artifacts/`.

Needs /usr/bin/chromium and the trained model from notebook 02 (`artifacts/elpv-cracks/vae.keras`);
trains nothing itself. VAE_OVERLAY_ARTIFACTS_DIR points it at another artifacts folder.
"""
import datetime
import json
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "04_sample_latent_space.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("VAE_OVERLAY_ARTIFACTS_DIR", ROOT / "artifacts"))
OUTPUT = ROOT / "test-artifacts"
QUIET_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
PRESSES = 5  # arrow-key presses on the z1 handle, one 0.1 step each
LATENCY_PRESSES = 20

# Kernel status and progress of Run All, read from JupyterLab's application object.
RUN_STATE_JS = """() => {
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const model = widget && widget.content && widget.content.model;
  if (!model || !widget.sessionContext) return null;
  let pending = 0; const errors = [];
  for (let i = 0; i < model.cells.length; i++) {
    const cell = model.cells.get(i);
    if (cell.type !== 'code') continue;
    if (cell.executionCount === null) pending++;
    for (let k = 0; k < cell.outputs.length; k++) {
      const output = cell.outputs.get(k).toJSON();
      if (output.output_type === 'error') errors.push(output.ename + ': ' + output.evalue);
    }
  }
  const kernel = widget.sessionContext.session && widget.sessionContext.session.kernel;
  return {pending, errors, status: kernel ? kernel.status : 'none'};
}"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def copy_notebook(folder: Path) -> None:
    """notebooks/04 copy with FULL_SWEEP = False and no outputs, beside an `artifacts` symlink."""
    notebook = nbformat.read(ROOT / "notebooks" / NOTEBOOK, as_version=4)
    parameters = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1, "notebook 04 needs exactly one cell tagged 'parameters'"
    source, count = re.subn(r"^FULL_SWEEP\s*=.*$", "FULL_SWEEP = False  # browser test: sliders need no sweep",
                            parameters[0].source, flags=re.M)
    assert count == 1, "the parameters cell of notebook 04 must set FULL_SWEEP"
    parameters[0].source = source
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    (folder / "notebooks").mkdir(parents=True)
    nbformat.write(notebook, folder / "notebooks" / NOTEBOOK)
    (folder / "artifacts").symlink_to(ARTIFACTS.resolve(), target_is_directory=True)


@pytest.fixture
def lab_server(tmp_path):
    """(base URL, token) of a JupyterLab serving the copied notebook; stopped (with its kernels) afterwards."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install it with `apt-get install -y chromium` (CI does)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not (ARTIFACTS / "elpv-cracks" / "vae.keras").exists():
        pytest.skip(f"{ARTIFACTS / 'elpv-cracks' / 'vae.keras'} not found: run notebooks 01 and 02 first "
                    "(make test runs them through nbval before this test)")
    root = tmp_path / "lab"
    copy_notebook(root)
    port, token = free_port(), secrets.token_hex(16)
    command = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", f"--port={port}",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
               "--LabApp.expose_app_in_browser=True", "--ServerApp.port_retries=0"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}  # the kernel's inline default
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(tmp_path / "workspaces")  # not ~/.jupyter
    log = open(tmp_path / "jupyter.log", "w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env,
                              start_new_session=True)  # its own process group: the kernels go with it
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyter.log").read_text()[-3000:])
            time.sleep(0.5)
        yield base, token, tmp_path / "jupyter.log"
    finally:
        server.terminate()  # SIGTERM: the server shuts its kernels down
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        try:
            os.killpg(server.pid, signal.SIGKILL)  # anything left in the group we started (a stuck kernel)
        except ProcessLookupError:
            pass
        log.close()


def readout_value(slider) -> float:
    return float(slider.locator(".widget-readout").inner_text().strip().replace("\u2212", "-"))


def wait_for_run_all(page, timeout_s: float) -> None:
    """Until every code cell has run and the kernel is idle; fails at once on an error output."""
    deadline = time.monotonic() + timeout_s
    state = None
    while time.monotonic() < deadline:
        state = page.evaluate(RUN_STATE_JS)
        if state and state["errors"]:
            pytest.fail("notebook 04 raised in JupyterLab: " + "; ".join(state["errors"]))
        if state and state["pending"] == 0 and state["status"] == "idle":
            return
        time.sleep(0.5)
    pytest.fail(f"Run All did not finish in {timeout_s:.0f} s (last state {state})")


def test_sliders_decode_as_they_move(lab_server):
    from playwright.sync_api import sync_playwright

    base, token, log_path = lab_server
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=QUIET_FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{base}/lab/tree/notebooks/{NOTEBOOK}?reset&token={token}")
            page.wait_for_selector(PANEL, timeout=90_000)
            page.wait_for_function(
                "() => (document.querySelector('#jp-main-statusbar') || document.body).innerText.includes('| Idle')",
                timeout=120_000)
            page.evaluate("() => window.jupyterapp.commands.execute('runmenu:run-all')")
            wait_for_run_all(page, timeout_s=600)

            slider = page.locator(f"{PANEL} .latent-slider-z1")
            slider.wait_for(timeout=60_000)
            image = page.locator(f"{PANEL} img.latent-decoded")
            explorer = page.locator(f"{PANEL} .latent-explorer")
            handle = slider.locator(".noUi-handle")
            explorer.scroll_into_view_if_needed()
            page.wait_for_function("(el) => el.src && el.src.startsWith('blob:')", arg=image.element_handle())
            start_value, start_src = readout_value(slider), image.get_attribute("src")
            explorer.screenshot(path=str(OUTPUT / "browser_sliders_1_before.png"))

            # keyboard: each ArrowRight is exactly one 0.1 step
            handle.focus()
            for _ in range(PRESSES):
                page.keyboard.press("ArrowRight")
            expected = f"{start_value + PRESSES * 0.1:.1f}"
            page.wait_for_function(
                "([el, want]) => el.innerText.trim().replace('\u2212', '-') === want",
                arg=[slider.locator(".widget-readout").element_handle(), expected], timeout=20_000)
            page.wait_for_function("([el, old]) => el.src !== old", arg=[image.element_handle(), start_src],
                                   timeout=20_000)
            keys_value, keys_src = readout_value(slider), image.get_attribute("src")
            assert keys_value == pytest.approx(start_value + PRESSES * 0.1, abs=1e-6)
            assert "z = (" + expected in page.locator(f"{PANEL} .latent-label").inner_text()
            explorer.screenshot(path=str(OUTPUT / "browser_sliders_2_after_keys.png"))

            # mouse: drag the handle 80 px to the right (many steps at once)
            box = handle.bounding_box()
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x + 80, y, steps=8)
            page.mouse.up()
            page.wait_for_function("([el, old]) => el.innerText.trim().replace('\u2212', '-') !== old",
                                   arg=[slider.locator(".widget-readout").element_handle(), expected],
                                   timeout=20_000)
            page.wait_for_function("([el, old]) => el.src !== old", arg=[image.element_handle(), keys_src],
                                   timeout=20_000)
            drag_value = readout_value(slider)
            assert drag_value > keys_value + 0.5, f"the drag moved z1 from {keys_value} only to {drag_value}"
            assert image.get_attribute("src") != keys_src
            explorer.screenshot(path=str(OUTPUT / "browser_sliders_3_after_drag.png"))

            latencies = measure_key_latency(page, handle, image)
        except Exception:
            page.screenshot(path=str(OUTPUT / "browser_sliders_failure.png"), full_page=True)
            print(log_path.read_text()[-3000:])
            raise
        finally:
            browser.close()

    median, p95 = statistics.median(latencies), sorted(latencies)[int(round(0.95 * (len(latencies) - 1)))]
    print(f"key press -> new decoded image src: median {median:.0f} ms, p95 {p95:.0f} ms "
          f"over {len(latencies)} presses")
    (OUTPUT / "slider_latency.json").write_text(json.dumps({
        "date": datetime.date.today().isoformat(), "presses": len(latencies), "median_ms": median, "p95_ms": p95,
        "latencies_ms": latencies}, indent=1))
    assert len(latencies) == LATENCY_PRESSES


def measure_key_latency(page, handle, image) -> list[float]:
    """Key press -> decoded image `src` change, in ms of the page's clock, one press at a time."""
    page.evaluate("""(img) => {
      window.__srcTimes = []; window.__keyTimes = [];
      new MutationObserver(() => window.__srcTimes.push(performance.now()))
        .observe(img, {attributes: true, attributeFilter: ['src']});
      document.addEventListener('keydown', () => window.__keyTimes.push(performance.now()), true);
    }""", image.element_handle())
    handle.focus()
    latencies = []
    for press in range(LATENCY_PRESSES):
        seen = page.evaluate("() => window.__srcTimes.length")
        page.keyboard.press("ArrowLeft" if press % 2 else "ArrowRight")
        page.wait_for_function(f"() => window.__srcTimes.length > {seen}", timeout=20_000)
        latencies.append(page.evaluate(f"() => window.__srcTimes[{seen}] - window.__keyTimes[window.__keyTimes.length - 1]"))
        page.wait_for_timeout(150)  # let the kernel finish the marker and label before the next press
    return latencies
