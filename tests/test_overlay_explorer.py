"""Tests for vae_overlay.overlay_explorer: the overlay methods it shows, their scores, the mask outlines and its controls.

Most tests use an exact linear "VAE" of the committed trio (32 px), whose overlays are known in closed form: source i
encodes to the unit vector e_i and the background to 0, and z decodes to bg + sum_j z_j (x_j - bg). One test uses
an untrained keras.io VAE from `model.build_vae` to check the same code on the real architecture.
"""
import io
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from vae_overlay import model, overlay
from vae_overlay import overlay_experiment as experiment
from vae_overlay.overlay_explorer import METHODS, OverlayExplorer, outline, upscale

ROOT = Path(__file__).resolve().parents[1]
TRIO = [ROOT / "data" / "synthetic" / f"{name}.png" for name in ("crack_1", "crack_2", "pore")]
SIZE = 32


def linear_vae(sources, background):
    """Encoder x -> [P (x - bg), 0, P (x - bg)] with P the pseudo-inverse of the sources' differences from bg;
    decoder z -> bg + D^T z. Returned as an object with .encoder and .decoder, like a trained VAE."""
    k, size = len(sources), sources.shape[1]
    differences = (sources[..., 0] - background).reshape(k, -1)  # D: (k, pixels)
    project = np.linalg.pinv(differences)  # (pixels, k): D @ project = identity
    image = keras.Input((size, size, 1))
    flat = keras.layers.Flatten()(image)
    z_mean = keras.layers.Dense(k, name="z_mean")(flat)
    z_log_var = keras.layers.Dense(k, kernel_initializer="zeros", name="z_log_var")(flat)
    encoder = keras.Model(image, [z_mean, z_log_var, z_mean])
    encoder.get_layer("z_mean").set_weights([project, -background.reshape(-1) @ project])
    z = keras.Input((k,))
    decoded = keras.layers.Reshape((size, size, 1))(keras.layers.Dense(size * size, name="pixels")(z))
    decoder = keras.Model(z, decoded)
    decoder.get_layer("pixels").set_weights([differences, background.reshape(-1)])

    class Linear:
        pass

    vae = Linear()
    vae.encoder, vae.decoder = encoder, decoder
    return vae


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    """(setup of the trio at 32 px, its linear VAE)."""
    setup = experiment.prepare(TRIO, SIZE, tmp_path_factory.mktemp("artifacts"), "synthetic")
    return setup, linear_vae(setup.sources, setup.background.astype(np.float32))


def pixels_of(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_gives_an_image_of_the_sources_size(trio, method):
    setup, vae = trio
    explorer = OverlayExplorer(setup, vae, method=method)
    for combo in [(0, 1), (1, 2), (0, 1, 2)]:
        image = explorer.overlay_image(combo, method, 1.5, "centres")
        assert image.shape == (SIZE, SIZE, 1) and np.isfinite(image).all()
    assert explorer.result["method"] == method and explorer.result["combo"] == (0, 1, 2)
    assert pixels_of(explorer.image.value).shape == (256, 256, 3)  # 32 px enlarged 8 times
    assert 0 <= explorer.result["fidelity"]["score"] <= 1


def test_the_overlays_are_the_closed_form_ones_of_the_linear_model(trio):
    setup, vae = trio
    explorer = OverlayExplorer(setup, vae)
    sources, bg = setup.sources, setup.background[..., None]
    assert np.allclose(explorer.z_mean, np.eye(3), atol=1e-4) and np.allclose(explorer.z_background["image"], 0, atol=1e-4)
    pair = [0, 2]
    darkened = bg + (sources[pair] - bg).sum(axis=0)
    for method in ("sum", "offset"):
        assert np.allclose(explorer.overlay_image(pair, method), darkened, atol=1e-4)
    assert np.allclose(explorer.overlay_image(pair, "mean"), sources[pair].mean(axis=0), atol=1e-4)
    assert np.allclose(explorer.overlay_image(pair, "pixel mean"), sources[pair].mean(axis=0))
    assert np.allclose(explorer.overlay_image(pair, "composite"), sources[pair].min(axis=0), atol=1e-4)
    assert np.array_equal(explorer.overlay_image(pair, "pixel darkest"), sources[pair].min(axis=0))
    assert np.allclose(explorer.overlay_image(pair, "weighted", 0.0), bg, atol=1e-4)  # w = 0: the background
    assert np.allclose(explorer.overlay_image(pair, "weighted", 0.5), bg + 0.5 * (darkened - bg), atol=1e-4)
    nothing = explorer.score(pair, explorer.overlay_image(pair, "weighted", 0.0))
    assert nothing["score"] == 0 and nothing["shown"].sum() == 0
    assert explorer.score(pair, explorer.overlay_image(pair, "offset"))["score"] > 0.9


def test_methods_agree_with_notebook_05s_functions_on_a_keras_io_vae(trio):
    setup, _ = trio
    vae = model.build_vae(SIZE, 2, seed=3)
    explorer = OverlayExplorer(setup, vae)
    run = {"vae": vae, "report": {"z_mean": overlay.posterior(vae.encoder, setup.sources)[0]}}
    assert np.allclose(explorer.z_mean, run["report"]["z_mean"])
    for combo in setup.combos:
        for method in overlay.OVERLAY_METHODS:
            for where in ("image", "centres"):
                expected = experiment.latent_method(setup, run, method, 1.7, where)(combo)
                assert np.allclose(explorer.overlay_image(combo, method, 1.7, where), expected, atol=1e-5)
        assert np.allclose(explorer.overlay_image(combo, "composite"), experiment.decoded_composite(run)(combo),
                           atol=1e-5)
        for key, name in (("pixel mean", "mean"), ("pixel darkest", "darkest")):
            assert np.array_equal(explorer.overlay_image(combo, key), experiment.pixel_method(setup, name)(combo))
    image = explorer.overlay_image((0, 1, 2), "sum")
    assert explorer.score((0, 1, 2), image)["score"] == pytest.approx(
        overlay.fidelity(image, setup.masks, setup.background, setup.threshold)["score"])


def test_changing_method_weight_and_sources_changes_image_and_score(trio):
    setup, vae = trio
    explorer = OverlayExplorer(setup, vae)
    assert explorer.chosen == (0, 1, 2) and explorer.weight.disabled and explorer.background_from.disabled
    seen = [(explorer.image.value, explorer.score_text.value)]

    def changed(what):
        now = (explorer.image.value, explorer.score_text.value)
        assert now[0] != seen[-1][0], f"{what}: the image did not change"
        assert now[1] != seen[-1][1], f"{what}: the score text did not change"
        seen.append(now)

    explorer.method.value = "mean"
    changed("method sum -> mean")
    explorer.method.value = "weighted"
    assert not explorer.weight.disabled and not explorer.background_from.disabled
    changed("method mean -> weighted")
    explorer.weight.value = 0.5
    changed("weight 1 -> 0.5")
    assert explorer.result["weight"] == 0.5 and "w = 0.50" in explorer.caption.value
    explorer.background_from.value = "centres"
    changed("z_bg image -> centres")
    explorer.ticks[1].value = False
    changed("crack_2 unticked")
    assert explorer.result["combo"] == (0, 2) and explorer.caption.value.startswith("crack_1 + pore")
    expected = explorer.overlay_image((0, 2), "weighted", 0.5, "centres")
    assert np.array_equal(explorer.result["image"], expected)
    assert explorer.result["fidelity"]["score"] == pytest.approx(explorer.score((0, 2), expected)["score"])
    assert f"<b>{explorer.result['fidelity']['score']:.2f}</b>" in explorer.score_text.value
    explorer.method.value = "pixel darkest"
    assert explorer.weight.disabled and explorer.background_from.disabled
    assert explorer.thumbnails[1].layout.border == "3px solid transparent"


def test_outline_is_the_contour_around_the_mask():
    rng = np.random.default_rng(0)
    for mask in [rng.random((12, 9)) < 0.3, np.eye(6, dtype=bool), np.ones((4, 4), bool), np.zeros((3, 3), bool)]:
        padded = np.pad(mask, 1)
        touching = padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
        assert np.array_equal(outline(mask), touching & ~mask)  # outside the mask, 4-adjacent to it
    square = np.zeros((5, 5), bool)
    square[1:4, 1:4] = True
    ring = np.ones((5, 5), bool)
    ring[1:4, 1:4] = False
    ring[[0, 0, 4, 4], [0, 4, 0, 4]] = False  # corners touch only diagonally
    assert np.array_equal(outline(square), ring)


def test_the_drawn_outlines_are_the_chosen_masks_contours(trio):
    setup, vae = trio
    explorer = OverlayExplorer(setup, vae, method="pixel mean", chosen=(0, 2))
    drawn = pixels_of(explorer.image.value)
    grey = (drawn[..., 0] == drawn[..., 1]) & (drawn[..., 1] == drawn[..., 2])
    contours = [outline(upscale(mask, 8)) for mask in setup.masks]
    assert np.array_equal(~grey, contours[0] | contours[2])  # coloured exactly on the chosen masks' contours
    only_0 = contours[0] & ~contours[2]
    assert only_0.any() and (drawn[only_0] == explorer.colours[0]).all()
    assert not (contours[0] & upscale(setup.masks[0], 8)).any()  # around the mask: its pixels stay visible
    explorer.show_outlines.value = False
    plain = pixels_of(explorer.image.value)
    assert (plain[..., 0] == plain[..., 2]).all()
    assert np.array_equal(plain[::8, ::8, 0], np.round(np.clip(explorer.result["image"][..., 0], 0, 1) * 255))


def test_fewer_than_two_sources_are_refused_clearly(trio):
    setup, vae = trio
    explorer = OverlayExplorer(setup, vae)
    with pytest.raises(ValueError, match=r"at least two sources, got 1 \(crack_2\): choose two or more"):
        explorer.overlay_image([1], "sum")
    with pytest.raises(ValueError, match="at least two sources, got 0 .none."):
        explorer.overlay_image([], "pixel mean")
    with pytest.raises(ValueError, match="method must be one of"):
        explorer.overlay_image([0, 1], "median")
    explorer.ticks[0].value = False
    shown = explorer.image.value  # crack_2 + pore
    explorer.ticks[1].value = False
    assert "Tick at least two sources" in explorer.score_text.value and "(1 ticked)" in explorer.score_text.value
    assert explorer.image.value == shown  # the last overlay stays until two are ticked again
    explorer.ticks[0].value = True
    assert explorer.result["combo"] == (0, 2) and "fidelity score" in explorer.score_text.value
    one = experiment.Setup(setup.sources[:1], setup.masks[:1], setup.names[:1], setup.folder)
    with pytest.raises(ValueError, match="at least two source images, got 1"):
        OverlayExplorer(one, vae)


def test_without_masks_the_overlay_is_shown_but_not_scored(trio):
    setup, vae = trio
    blind = experiment.Setup(setup.sources, None, setup.names, setup.folder)
    explorer = OverlayExplorer(blind, vae, method="pixel darkest")
    assert explorer.result["fidelity"] is None and "not scored" in explorer.score_text.value
    drawn = pixels_of(explorer.image.value)
    assert (drawn[..., 0] == drawn[..., 1]).all()  # no outlines
    before = explorer.image.value
    explorer.method.value = "pixel mean"
    assert explorer.image.value != before
