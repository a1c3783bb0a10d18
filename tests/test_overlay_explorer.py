"""Tests for vae_overlay.overlay_explorer: the overlay methods it shows, the sources' weights, their
scores, the mask outlines, the latent plane and its clicks, and its controls.

Most tests use an exact linear "VAE" of the committed trio (32 px), whose overlays are known in
closed form: source i encodes to the unit vector e_i and the background to 0, and z decodes to bg +
sum_j z_j (x_j - bg). One test uses an untrained keras.io VAE from `model.build_vae` to check the
same code on the real architecture against notebook 05's functions (`overlay_experiment`).
"""

import io
from pathlib import Path

import ipywidgets
import keras
import numpy as np
import pytest
from PIL import Image

from vae_overlay import diagnostics, model, overlay, overlay_methods
from vae_overlay import overlay_experiment as experiment
from vae_overlay.overlay_explorer import METHODS, OverlayExplorer, outline, scaled
from vae_overlay.overlay_plane import BACKGROUND_SHADES, disc
from vae_overlay.widgets import upscale

ROOT = Path(__file__).resolve().parents[1]
TRIO = [ROOT / "data" / "synthetic" / f"{name}.png" for name in ("crack_1", "crack_2", "pore")]
SIZE = 32


def linear_vae(sources, background):
    """Encoder x -> [P (x - bg), 0, P (x - bg)] with P the pseudo-inverse of the sources'
    differences from bg; decoder z -> bg + D^T z. Returned as an object with .encoder and .decoder,
    like a trained VAE."""
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
    decoded = keras.layers.Reshape((size, size, 1))(
        keras.layers.Dense(size * size, name="pixels")(z)
    )
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


def sliders_in_order(widget) -> list:
    """The FloatSliders inside a widget, in the order the page shows them (depth first through the
    boxes)."""
    if isinstance(widget, ipywidgets.FloatSlider):
        return [widget]
    return [found for child in getattr(widget, "children", ()) for found in sliders_in_order(child)]


RED = (220, 20, 20)  # ScatterMarker's ring


def ring_pixels(png: bytes) -> np.ndarray:
    """(row, column) of the plane's red ring pixels."""
    return np.argwhere((pixels_of(png) == RED).all(axis=-1))


def ring_centre(png: bytes) -> np.ndarray:
    """The mean (row, column) of the plane's red ring pixels: where the ring is centred."""
    return ring_pixels(png).mean(axis=0)


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


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_opens_with_its_first_slider_live_and_moving_it_redraws_the_overlay(
    trio, method
):
    setup, vae = trio
    explorer = OverlayExplorer(setup, vae, method=method)
    first = sliders_in_order(explorer.widget)[0]
    assert first is explorer.source_weights[0] and not first.disabled and first.value == 1.0
    # every source is ticked at the start
    assert all(not s.disabled for s in explorer.source_weights)
    before = (explorer.image.value, explorer.result["image"])
    first.value = 0.5
    assert explorer.image.value != before[0] and not np.array_equal(
        explorer.result["image"], before[1]
    )
    assert explorer.result["weights"] == (0.5, 1.0, 1.0)
    assert "crack_1 ×0.50 + crack_2 + pore" in explorer.caption.value
    assert np.array_equal(
        explorer.result["image"],
        explorer.overlay_image((0, 1, 2), method, 1.0, "image", (0.5, 1.0, 1.0)),
    )


def test_scaled_moves_points_towards_the_centre_and_leaves_weight_1_untouched():
    points = np.array([[0.1, 0.2], [1.0, -3.0], [2.0, 5.0]])
    centre = np.array([0.3, 0.7])
    moved = scaled(points, [1.0, 0.0, 2.0], centre)
    assert np.array_equal(moved[0], points[0]) and np.array_equal(moved[1], centre)
    assert np.allclose(moved[2], centre + 2 * (points[2] - centre))
    images = np.random.default_rng(0).random((2, 4, 4, 1)).astype(np.float32)
    same = scaled(images, [1.0, 1.0], np.full((4, 4, 1), 0.8, np.float32))
    assert same.dtype == np.float32 and np.array_equal(same, images)  # bit for bit, not recomputed


def test_the_overlays_are_the_closed_form_ones_of_the_linear_model(trio):
    setup, vae = trio
    explorer = OverlayExplorer(setup, vae)
    sources, bg = setup.sources, setup.background[..., None]
    assert np.allclose(explorer.z_mean, np.eye(3), atol=1e-4)
    assert np.allclose(explorer.z_background["image"], 0, atol=1e-4)
    pair = [0, 2]
    darkened = bg + (sources[pair] - bg).sum(axis=0)
    for method in ("sum", "offset"):
        assert np.allclose(explorer.overlay_image(pair, method), darkened, atol=1e-4)
    assert np.allclose(explorer.overlay_image(pair, "mean"), sources[pair].mean(axis=0), atol=1e-4)
    assert np.allclose(explorer.overlay_image(pair, "pixel mean"), sources[pair].mean(axis=0))
    assert np.allclose(
        explorer.overlay_image(pair, "composite"), sources[pair].min(axis=0), atol=1e-4
    )
    assert np.array_equal(explorer.overlay_image(pair, "pixel darkest"), sources[pair].min(axis=0))
    # w = 0: the background
    assert np.allclose(explorer.overlay_image(pair, "weighted", 0.0), bg, atol=1e-4)
    assert np.allclose(
        explorer.overlay_image(pair, "weighted", 0.5), bg + 0.5 * (darkened - bg), atol=1e-4
    )
    nothing = explorer.score(pair, explorer.overlay_image(pair, "weighted", 0.0))
    assert nothing["score"] == 0 and nothing["shown"].sum() == 0
    assert explorer.score(pair, explorer.overlay_image(pair, "offset"))["score"] > 0.9
    # per-source weights: each source's defect (x_i - bg) scaled by its weight, then combined by the
    # method
    weights = (0.5, 7.0, 2.0)  # source 1 is not in the pair: its weight must not matter
    defects = np.array([0.5, 2.0])[:, None, None, None] * (sources[pair] - bg)
    for method in ("sum", "offset", "weighted"):
        assert np.allclose(
            explorer.overlay_image(pair, method, weights=weights),
            bg + defects.sum(axis=0),
            atol=1e-4,
        )
    assert np.allclose(
        explorer.overlay_image(pair, "weighted", 0.5, weights=weights),
        bg + 0.5 * defects.sum(axis=0),
        atol=1e-4,
    )
    for method in ("mean", "pixel mean"):
        assert np.allclose(
            explorer.overlay_image(pair, method, weights=weights),
            bg + defects.mean(axis=0),
            atol=1e-4,
        )
    for method in ("composite", "pixel darkest"):
        assert np.allclose(
            explorer.overlay_image(pair, method, weights=weights),
            (bg + defects).min(axis=0),
            atol=1e-4,
        )
    # weight 0 removes a source from the sums: the overlay of the others (the means still divide by
    # three; the darkest pixel is then the background estimate where it is darker than the others:
    # the closed form)
    for method in ("sum", "offset", "weighted"):
        assert np.allclose(
            explorer.overlay_image((0, 1, 2), method, weights=(1, 0, 1)),
            explorer.overlay_image((0, 2), method),
            atol=1e-4,
        ), method


def test_methods_agree_with_notebook_05s_functions_on_a_keras_io_vae(trio):
    setup, _ = trio
    vae = model.build_vae(SIZE, 2, seed=3)
    explorer = OverlayExplorer(setup, vae)
    report = diagnostics.latent_report(vae.encoder, setup.sources, n_samples=10)
    run = {"vae": vae, "report": report}
    assert np.allclose(explorer.z_mean, run["report"]["z_mean"])
    ones = (1.0,) * setup.k  # the sliders' default: the table's overlays
    z_bg = {
        "image": experiment.encoded_background(setup, vae.encoder),
        "centres": run["report"]["z_mean"].mean(axis=0),
    }
    for combo in setup.combos:
        centres = run["report"]["z_mean"][list(combo)]
        for method in overlay_methods.LATENT_METHODS:
            for where in ("image", "centres"):
                expected = experiment.method_overlay(setup, run, method, 1.7, where)(combo)
                for weights in (None, ones):
                    # the latent vector is numpy arithmetic: exactly overlay_latent's, as
                    # method_overlay has it
                    latent = overlay_methods.overlay_latent(centres, method, z_bg[where], 1.7)
                    assert np.array_equal(
                        explorer.latent_point(combo, method, 1.7, where, weights), latent
                    )
                    # the decode may differ in the last bits: a compiled call against the eager one
                    assert np.allclose(
                        explorer.overlay_image(combo, method, 1.7, where, weights),
                        expected,
                        atol=1e-5,
                    )
        for weights in (None, ones):
            assert np.allclose(
                explorer.overlay_image(combo, "composite", weights=weights),
                experiment.method_overlay(setup, run, "composite")(combo),
                atol=1e-5,
            )
            for key in ("pixel mean", "pixel darkest"):
                assert np.array_equal(
                    explorer.overlay_image(combo, key, weights=weights),
                    experiment.method_overlay(setup, None, key)(combo),
                )
    # with weights: the latent methods are the experiment's on centres moved to c + w_i (z_i - c)
    weights = np.array([0.4, 1.6, 1.0])
    z_mean = run["report"]["z_mean"]
    for method, centre in [
        ("sum", 0.0),
        ("mean", 0.0),
        ("offset", z_bg["image"]),
        ("weighted", z_bg["image"]),
    ]:
        moved = {"vae": vae, "report": {"z_mean": centre + weights[:, None] * (z_mean - centre)}}
        for combo in setup.combos:
            assert np.allclose(
                explorer.overlay_image(combo, method, 0.8, "image", weights),
                experiment.method_overlay(setup, moved, method, 0.8, "image")(combo),
                atol=1e-5,
            )
    for (
        combo
    ) in setup.combos:  # one weight w for every source is the weighted offset sum with that w
        assert np.allclose(
            explorer.overlay_image(combo, "offset", weights=(0.7,) * setup.k),
            experiment.method_overlay(setup, run, "weighted", 0.7)(combo),
            atol=1e-5,
        )
    image = explorer.overlay_image((0, 1, 2), "sum")
    assert explorer.score((0, 1, 2), image)["score"] == pytest.approx(
        overlay.fidelity(image, setup.masks, setup.background, setup.threshold)["score"]
    )


def test_changing_method_weights_and_sources_changes_image_and_score(trio):
    setup, vae = trio
    explorer = OverlayExplorer(setup, vae)
    assert (
        explorer.chosen == (0, 1, 2)
        and explorer.weight.disabled
        and explorer.background_from.disabled
    )
    assert explorer.weights == (1.0, 1.0, 1.0) and explorer.result["weights"] == (1.0, 1.0, 1.0)
    seen = [(explorer.image.value, explorer.score_text.value)]

    def changed(what):
        now = (explorer.image.value, explorer.score_text.value)
        assert now[0] != seen[-1][0], f"{what}: the image did not change"
        assert now[1] != seen[-1][1], f"{what}: the score text did not change"
        seen.append(now)

    explorer.source_weights[2].value = 0.3
    changed("pore's weight 1 -> 0.3")
    explorer.source_weights[2].value = 1.0
    changed("pore's weight back to 1")
    assert explorer.image.value == seen[0][0]  # the default overlay again
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
    assert explorer.result["combo"] == (0, 2) and explorer.caption.value.startswith(
        "crack_1 + pore"
    )
    assert explorer.source_weights[1].disabled and not explorer.source_weights[0].disabled
    expected = explorer.overlay_image((0, 2), "weighted", 0.5, "centres")
    assert np.array_equal(explorer.result["image"], expected)
    assert explorer.result["fidelity"]["score"] == pytest.approx(
        explorer.score((0, 2), expected)["score"]
    )
    assert f"<b>{explorer.result['fidelity']['score']:.2f}</b>" in explorer.score_text.value
    explorer.method.value = "pixel darkest"
    assert explorer.weight.disabled and explorer.background_from.disabled
    assert explorer.thumbnails[1].layout.border == "3px solid transparent"


def test_outline_is_the_contour_around_the_mask():
    rng = np.random.default_rng(0)
    for mask in [
        rng.random((12, 9)) < 0.3,
        np.eye(6, dtype=bool),
        np.ones((4, 4), bool),
        np.zeros((3, 3), bool),
    ]:
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
    # coloured exactly on the chosen masks' contours
    assert np.array_equal(~grey, contours[0] | contours[2])
    only_0 = contours[0] & ~contours[2]
    assert only_0.any() and (drawn[only_0] == explorer.colours[0]).all()
    assert not (
        contours[0] & upscale(setup.masks[0], 8)
    ).any()  # around the mask: its pixels stay visible
    explorer.show_outlines.value = False
    plain = pixels_of(explorer.image.value)
    assert (plain[..., 0] == plain[..., 2]).all()
    assert np.array_equal(
        plain[::8, ::8, 0], np.round(np.clip(explorer.result["image"][..., 0], 0, 1) * 255)
    )


def test_fewer_than_two_sources_are_refused_clearly(trio):
    setup, vae = trio
    explorer = OverlayExplorer(setup, vae)
    with pytest.raises(
        ValueError, match=r"at least two sources, got 1 \(crack_2\): choose two or more"
    ):
        explorer.overlay_image([1], "sum")
    with pytest.raises(ValueError, match="at least two sources, got 0 .none."):
        explorer.overlay_image([], "pixel mean")
    with pytest.raises(ValueError, match="method must be one of"):
        explorer.overlay_image([0, 1], "median")
    explorer.ticks[0].value = False
    shown = explorer.image.value  # crack_2 + pore
    explorer.ticks[1].value = False
    assert "Tick at least two sources" in explorer.score_text.value
    assert "(1 ticked)" in explorer.score_text.value
    assert explorer.image.value == shown  # the last overlay stays until two are ticked again
    explorer.ticks[0].value = True
    assert explorer.result["combo"] == (0, 2) and "fidelity score" in explorer.score_text.value
    one = experiment.Setup(setup.sources[:1], setup.masks[:1], setup.names[:1], setup.folder)
    with pytest.raises(ValueError, match="at least two source images, got 1"):
        OverlayExplorer(one, vae)
    with pytest.raises(ValueError, match=r"need one weight per source \(3\), got 2"):
        OverlayExplorer(setup, vae, weights=(1.0, 0.5))
    with pytest.raises(ValueError, match=r"need one weight per source \(3\), got 1"):
        explorer.overlay_image([0, 1], "sum", weights=[0.5])


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


def test_the_latent_plane_shows_the_centres_and_a_ring_at_the_overlays_z(trio):
    setup, vae = trio
    explorer = OverlayExplorer(setup, vae, chosen=(0, 1))
    marker = explorer.latent_plane.marker
    drawn = pixels_of(explorer.plane.value)
    assert drawn.shape == (256, 256, 3)
    # the centres as discs in the sources' colours (drawn after z_bg: on top)
    for i in range(setup.k):
        row, column = marker.pixel(explorer.z_mean[i])
        assert (drawn[row, column] == explorer.colours[i]).all()
    # (1/3, 1/3) in the plane: away from the e_i
    row, column = marker.pixel(explorer.z_background["centres"])
    assert (drawn[row, column] == BACKGROUND_SHADES["centres"]).all()
    # the ring is centred on the overlay's z: e_0 + e_1 for the latent sum of crack_1 and crack_2
    assert np.allclose(explorer.result["z"], [1, 1, 0], atol=1e-4)
    assert np.abs(ring_centre(explorer.plane.value) - marker.pixel(explorer.result["z"])).max() <= 1
    explorer.source_weights[1].value = 0.5
    assert np.allclose(explorer.result["z"], [1, 0.5, 0], atol=1e-4)
    assert np.abs(ring_centre(explorer.plane.value) - marker.pixel(explorer.result["z"])).max() <= 1
    explorer.method.value = "pixel darkest"  # no latent vector: no ring
    assert explorer.result["z"] is None and len(ring_pixels(explorer.plane.value)) == 0
    # a filled disc: its axis ends in, its square's corners out
    spots = {tuple(spot) for spot in disc(5)}
    assert (
        len(spots) == len(disc(5)) and {(0, 0), (5, 0), (-5, 0), (0, 5), (0, -5), (3, 3)} <= spots
    )
    assert not spots & {(4, 4), (-4, 4), (4, -4), (-4, -4), (6, 0)}


def test_a_click_on_the_latent_plane_shows_the_decode_of_the_point_under_it(trio):
    setup, vae = trio
    explorer = OverlayExplorer(setup, vae, chosen=(0, 1))  # latent sum at z = e_0 + e_1 = (1, 1, 0)
    marker, before = explorer.latent_plane.marker, explorer.plane.value
    row, column = marker.pixel(explorer.z_mean[0])  # where crack_1's centre e_0 is drawn
    # what ipyevents sends
    explorer.on_plane_click({"type": "click", "dataX": column, "dataY": row})
    z = explorer.result["z"]
    assert explorer.result["placed"] and np.allclose(z[:2], marker.latent(row, column))
    assert z[2] == pytest.approx(0, abs=1e-4)  # beyond the plane's two coordinates: the shown z's
    assert np.abs(z - [1, 0, 0]).max() < 0.03  # a pixel is about 0.01 latent units here
    assert np.array_equal(
        explorer.result["image"], explorer.decode(z[None, :].astype(np.float32))[0]
    )
    # the decode of e_0: crack_1
    assert np.allclose(explorer.result["image"], setup.sources[0], atol=0.05)
    assert explorer.plane.value != before  # the ring moved to the clicked point
    assert np.abs(ring_centre(explorer.plane.value) - (row, column)).max() <= 1
    assert "decode at the clicked z" in explorer.caption.value
    recall, itself = (
        explorer.result["fidelity"]["recall"],
        explorer.score((0, 1), setup.sources[0])["recall"],
    )
    # crack_1's defect, not crack_2
    assert recall[0] == pytest.approx(itself[0], abs=0.1) and recall[1] < 0.1
    explorer.show_outlines.value = False  # a drawing option keeps the clicked point
    assert explorer.result["placed"]
    explorer.source_weights[0].value = 0.8  # any other control: the method's overlay again
    assert not explorer.result["placed"] and np.allclose(
        explorer.result["z"], [0.8, 1, 0], atol=1e-4
    )
    assert "decode at the clicked z" not in explorer.caption.value
    explorer.method.value = (  # no latent vector: a click starts from the encoded background
        "pixel mean"
    )
    explorer.place_at_pixel(row, column)
    assert np.allclose(explorer.result["z"][2], explorer.z_background["image"][2])
