"""Shared test fixtures: small synthetic images and small decoders, made fresh for each test module."""
import keras
import numpy as np
import pytest


def _crack_like_images(count=20, size=16, seed=0):
    """Bright cells crossed by dark random lines, pixel values in [0, 1], shape (count, size, size, 1)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    images = np.empty((count, size, size, 1), np.float32)
    for i in range(count):
        angle, offset = rng.uniform(0, np.pi), rng.uniform(-size / 3, size / 3)
        distance = np.abs((cols - size / 2) * np.cos(angle) + (rows - size / 2) * np.sin(angle) - offset)
        images[i, ..., 0] = 0.8 - 0.7 * np.exp(-distance ** 2) + rng.normal(0, 0.03, (size, size))
    return np.clip(images, 0, 1)


def _small_decoder(latent_dim=2, image_size=16, seed=0):
    """A keras.io-shaped decoder (Dense -> Reshape -> Conv2DTranspose x3, sigmoid), small and untrained."""
    keras.utils.set_random_seed(seed)
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
    """Factory: crack_images(count=20, size=16, seed=0) -> float32 (count, size, size, 1) in [0, 1]."""
    return _crack_like_images


@pytest.fixture(scope="session")
def make_decoder():
    """Factory: make_decoder(latent_dim=2, image_size=16, seed=0) -> a small untrained keras.io-shaped decoder."""
    return _small_decoder


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _run_notebook(name, tmp_path, **parameters):
    """Execute notebooks/<name> through papermill with `parameters` (ARTIFACTS_DIR and FIGURES_DIR under
    tmp_path unless given). Returns (executed notebook as a dict, results folder holding summary.json)."""
    import json

    import papermill

    out = tmp_path / f"out_{name}"
    results = tmp_path / "results"
    parameters = {"ARTIFACTS_DIR": str(tmp_path / "artifacts"), "FIGURES_DIR": str(results / "figures"), **parameters}
    papermill.execute_notebook(str(ROOT / "notebooks" / name), str(out), cwd=str(ROOT / "notebooks"),
                               progress_bar=False, parameters=parameters)
    return json.loads(out.read_text()), results


@pytest.fixture(scope="session")
def run_notebook():
    """Factory: run_notebook(name, tmp_path, **parameters) -> (executed notebook dict, results folder)."""
    return _run_notebook


def stream_text(notebook: dict) -> str:
    """All stream outputs (stdout/stderr) of a notebook's code cells, joined."""
    texts = [o.get("text", "") for c in notebook["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    return "\n".join("".join(t) if isinstance(t, list) else t for t in texts)


@pytest.fixture(scope="session")
def notebook_text():
    """Factory: notebook_text(executed notebook dict) -> the text of all its printed outputs."""
    return stream_text
