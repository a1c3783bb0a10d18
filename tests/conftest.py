"""Shared test fixtures: small synthetic images and small decoders, made fresh for each test
module."""

import keras
import numpy as np
import pytest

from vae_overlay import runs


def _crack_like_images(count=20, size=16, seed=0):
    """Bright cells crossed by dark random lines, pixel values in [0, 1], shape (count, size, size,
    1)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    images = np.empty((count, size, size, 1), np.float32)
    for i in range(count):
        angle, offset = rng.uniform(0, np.pi), rng.uniform(-size / 3, size / 3)
        distance = np.abs(
            (cols - size / 2) * np.cos(angle) + (rows - size / 2) * np.sin(angle) - offset
        )
        images[i, ..., 0] = 0.8 - 0.7 * np.exp(-(distance**2)) + rng.normal(0, 0.03, (size, size))
    return np.clip(images, 0, 1)


def _small_decoder(latent_dim=2, image_size=16, seed=0):
    """A keras.io-shaped decoder (Dense -> Reshape -> Conv2DTranspose x3, sigmoid), small and
    untrained."""
    runs.seed_everything(seed)
    z = keras.Input(shape=(latent_dim,))
    side = image_size // 4
    x = keras.layers.Dense(side * side * 8, activation="relu")(z)
    x = keras.layers.Reshape((side, side, 8))(x)
    x = keras.layers.Conv2DTranspose(8, 3, activation="relu", strides=2, padding="same")(x)
    x = keras.layers.Conv2DTranspose(4, 3, activation="relu", strides=2, padding="same")(x)
    out = keras.layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(x)
    return keras.Model(z, out, name="decoder")


@pytest.fixture(scope="session")
def crack_images():
    """Factory: crack_images(count=20, size=16, seed=0) -> float32 (count, size, size, 1) in [0,
    1]."""
    return _crack_like_images


@pytest.fixture(scope="session")
def make_decoder():
    """Factory: make_decoder(latent_dim=2, image_size=16, seed=0) -> a small untrained
    keras.io-shaped decoder."""
    return _small_decoder


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _run_notebook(name, tmp_path, **parameters):
    """Execute notebooks/<name> through papermill with `parameters` (ARTIFACTS_DIR and FIGURES_DIR
    under tmp_path unless given). Returns (executed notebook as a dict, results folder holding
    summary.json)."""
    import json

    import papermill

    out = tmp_path / f"out_{name}"
    results = tmp_path / "results"
    parameters = {
        "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "FIGURES_DIR": str(results / "figures"),
        **parameters,
    }
    papermill.execute_notebook(
        str(ROOT / "notebooks" / name),
        str(out),
        cwd=str(ROOT / "notebooks"),
        progress_bar=False,
        parameters=parameters,
    )
    return json.loads(out.read_text()), results


@pytest.fixture(scope="session")
def run_notebook():
    """Factory: run_notebook(name, tmp_path, **parameters) -> (executed notebook dict, results
    folder)."""
    return _run_notebook


def stream_text(notebook: dict) -> str:
    """All stream outputs (stdout/stderr) of a notebook's code cells, joined."""
    texts = [
        o.get("text", "")
        for c in notebook["cells"]
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
    ]
    return "\n".join("".join(t) if isinstance(t, list) else t for t in texts)


@pytest.fixture(scope="session")
def notebook_text():
    """Factory: notebook_text(executed notebook dict) -> the text of all its printed outputs."""
    return stream_text


# ------------------------------------------------------------ browser tests (JupyterLab + Chromium)


class JupyterLab:
    """A JupyterLab on loopback (token on) serving a folder, for the Playwright browser tests;
    `serve(root)` is a context manager yielding (base URL, token, log path) that stops the server
    and its kernels afterwards."""

    CHROMIUM = __import__("pathlib").Path("/usr/bin/chromium")
    FLAGS = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
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

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path

    @__import__("contextlib").contextmanager
    def serve(self, root):
        import os
        import secrets
        import signal
        import socket
        import subprocess
        import sys
        import time
        import urllib.request
        from pathlib import Path

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        token = secrets.token_hex(16)
        command = [
            str(Path(sys.executable).parent / "jupyter"),
            "lab",
            "--no-browser",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
            "--ServerApp.port_retries=0",
        ]
        if os.geteuid() == 0:
            command.append("--allow-root")
        # the kernel's inline default
        env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
        env["JUPYTERLAB_WORKSPACES_DIR"] = str(self.tmp_path / "workspaces")  # not ~/.jupyter
        log_path = self.tmp_path / "jupyter.log"
        log = open(log_path, "w")
        # its own process group: the kernels go with it
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env, start_new_session=True
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(
                        f"{base}/api/status?token={token}", timeout=2
                    ) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + log_path.read_text()[-3000:])
                time.sleep(0.5)
            yield base, token, log_path
        finally:
            server.terminate()  # SIGTERM: the server shuts its kernels down
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            try:
                # anything left in the group we started (a stuck kernel)
                os.killpg(server.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            log.close()

    PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in front

    @__import__("contextlib").contextmanager
    def browser_page(self, width: int, height: int, failure_shot, log_path):
        """A page of a headless Chromium, `width` x `height`; if the block raises, a full-page
        screenshot goes to `failure_shot` and the server log's tail is printed first; the browser
        closes either way."""
        from pathlib import Path

        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(self.CHROMIUM), args=self.FLAGS, headless=True
            )
            page = browser.new_page(viewport={"width": width, "height": height})
            try:
                yield page
            except Exception:
                page.screenshot(path=str(failure_shot), full_page=True)
                print(Path(log_path).read_text()[-3000:])
                raise
            finally:
                browser.close()

    def open_and_run_all(
        self, page, url: str, timeout_s: float, what: str = "the notebook"
    ) -> None:
        """Open a notebook URL, wait for its kernel, Run All, and wait until every cell has run."""
        page.goto(url)
        page.wait_for_selector(self.PANEL, timeout=90_000)
        page.wait_for_function(
            "() => (document.querySelector('#jp-main-statusbar') ||"
            " document.body).innerText.includes('| Idle')",
            timeout=120_000,
        )
        page.evaluate("() => window.jupyterapp.commands.execute('runmenu:run-all')")
        self.wait_for_run_all(page, timeout_s, what)

    def wait_for_run_all(self, page, timeout_s: float, what: str = "the notebook") -> None:
        """Until every code cell has run and the kernel is idle; fails at once on an error
        output."""
        import time

        deadline = time.monotonic() + timeout_s
        state = None
        while time.monotonic() < deadline:
            state = page.evaluate(self.RUN_STATE_JS)
            if state and state["errors"]:
                pytest.fail(f"{what} raised in JupyterLab: " + "; ".join(state["errors"]))
            if state and state["pending"] == 0 and state["status"] == "idle":
                return
            time.sleep(0.5)
        pytest.fail(f"Run All did not finish in {timeout_s:.0f} s (last state {state})")


@pytest.fixture
def jupyter_lab(tmp_path):
    """A JupyterLab harness (skips the test without /usr/bin/chromium or the playwright package)."""
    if not JupyterLab.CHROMIUM.exists():
        pytest.skip(
            f"{JupyterLab.CHROMIUM} not found: install it with `apt-get install -y chromium` (CI"
            " does)"
        )
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    return JupyterLab(tmp_path)
