"""Notebook 02 shows the keras.io VAE as code (its cells tagged `model`); its training builds the
model with model.build_vae. These tests run the notebook's cells and check that they build the
package's model, so that the code a reader sees is the model that is trained."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from vae_overlay import config, model, runs

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_train_vae.ipynb"
PAPER = config.parameters(NOTEBOOK)
SIZE, LATENT_DIM, SEED = 16, 3, 7  # small; 3 latent dimensions, so that a hard-coded 2 would show


def model_cells() -> list[str]:
    """Sources of notebook 02's code cells tagged `model`, in order."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    return [
        "".join(cell["source"])
        for cell in cells
        if cell["cell_type"] == "code" and "model" in cell["metadata"].get("tags", [])
    ]


def run_model_cells(image_size: int, latent_dim: int, seed: int) -> dict:
    """The names notebook 02's model cells define, run with its parameters set to these values."""
    namespace = {
        "keras": keras,
        "runs": runs,
        "IMAGE_SIZE": image_size,
        "LATENT_DIM": latent_dim,
        "SEED": seed,
    }
    for number, source in enumerate(model_cells()):
        exec(compile(source, f"{NOTEBOOK.name}, model cell {number}", "exec"), namespace)
    return namespace


def layer_table(network: keras.Model) -> list[tuple]:
    """(layer type, output shape, parameter count, weight shapes) of each layer, in order."""
    return [
        (
            type(layer).__name__,
            tuple(layer.output.shape),
            layer.count_params(),
            [tuple(weight.shape) for weight in layer.weights],
        )
        for layer in network.layers
    ]


SIZES = [(SIZE, LATENT_DIM), (PAPER["IMAGE_SIZE"], PAPER["LATENT_DIM"])]


@pytest.mark.parametrize("image_size, latent_dim", SIZES, ids=["small", "notebook-parameters"])
def test_shown_encoder_and_decoder_have_the_package_layers(image_size, latent_dim):
    shown = run_model_cells(image_size, latent_dim, SEED)
    vae = model.build_vae(image_size, latent_dim, seed=SEED)
    assert layer_table(shown["encoder"]) == layer_table(vae.encoder)
    assert layer_table(shown["decoder"]) == layer_table(vae.decoder)


def test_shown_model_built_with_the_seed_starts_from_the_package_weights():
    """As the notebook says: with the same SEED its copy starts where train.train_vae's starts."""
    shown = run_model_cells(SIZE, LATENT_DIM, SEED)
    vae = model.build_vae(SIZE, LATENT_DIM, seed=SEED)
    for network in ("encoder", "decoder"):
        own, package = shown[network].get_weights(), getattr(vae, network).get_weights()
        assert len(own) == len(package)
        assert all(np.array_equal(a, b) for a, b in zip(own, package)), network


def test_shown_model_with_the_package_weights_gives_its_outputs_and_both_losses(crack_images):
    shown = run_model_cells(SIZE, LATENT_DIM, SEED)
    vae = model.build_vae(SIZE, LATENT_DIM, seed=SEED)
    rng = np.random.default_rng(0)  # weights unlike any initialisation (biases too)
    vae.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32) for w in vae.get_weights()])
    encoder, decoder = shown["encoder"], shown["decoder"]
    encoder.set_weights(vae.encoder.get_weights())
    decoder.set_weights(vae.decoder.get_weights())
    images = crack_images(6, SIZE, seed=4)
    # Both sampling layers start from SEED and each call below draws once on both sides: same noise.
    outputs = [
        (np.asarray(own), np.asarray(package))
        for own, package in zip(encoder(images), vae.encoder(images))
    ]
    for (own, package), name in zip(outputs, ("z_mean", "z_log_var", "z")):
        np.testing.assert_allclose(own, package, rtol=1e-5, atol=1e-6, err_msg=name)
    z_mean = outputs[0][1]
    np.testing.assert_allclose(
        np.asarray(decoder(z_mean)), np.asarray(vae.decoder(z_mean)), rtol=1e-5, atol=1e-6
    )
    for loss in model.LOSSES:
        own = shown["vae_losses"](encoder, decoder, images, loss)
        package = model.VAE(vae.encoder, vae.decoder, loss=loss).compute_losses(images)
        np.testing.assert_allclose(
            [float(v) for v in own], [float(v) for v in package], rtol=1e-5, err_msg=loss
        )
