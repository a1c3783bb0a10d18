"""Tests for vae_overlay.widgets: the slider explorer redraws its image and readout when a slider moves."""
import io

import numpy as np
import pytest
from PIL import Image as PILImage

from vae_overlay import widgets
from vae_overlay.latent import compiled_decoder


def decoded_pixels(png: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(png)))


@pytest.fixture(scope="module")
def decoder2(make_decoder):
    return make_decoder(latent_dim=2)


def test_png_bytes_upscales_by_nearest_neighbour():
    pixels = np.array([[0, 255], [128, 7]], np.uint8)
    big = decoded_pixels(widgets.png_bytes(pixels[..., None], size=8))
    assert big.shape == (8, 8)
    assert (big[:4, :4] == 0).all() and (big[4:, :4] == 128).all() and (big[4:, 4:] == 7).all()


def test_explorer_two_dims_uses_the_paper_region(decoder2):
    means = np.random.default_rng(0).normal(size=(30, 2))
    explorer = widgets.LatentExplorer(decoder2, latent_means=means, names=[f"cell{i}" for i in range(30)])
    assert [s.description for s in explorer.sliders] == ["z1", "z2"]
    assert [(s.min, s.max, s.step) for s in explorer.sliders] == [(-15, 15, 0.1), (-10, 10, 0.1)]
    assert all(s.continuous_update for s in explorer.sliders)
    assert explorer.image.format == "png"
    assert "_repr_mimebundle_" in dir(explorer)


def test_moving_a_slider_redraws_image_marker_and_readout(decoder2):
    means = np.random.default_rng(0).normal(scale=3, size=(30, 2))
    explorer = widgets.LatentExplorer(decoder2, latent_means=means)
    before_image, before_scatter = explorer.image.value, explorer.scatter.value
    assert explorer.label.value.startswith("z = (0.0, 0.0)")
    explorer.sliders[0].value = 7.3
    assert explorer.label.value.startswith("z = (7.3, 0.0)")
    assert explorer.image.value != before_image
    assert explorer.scatter.value != before_scatter
    # the shown image is the decoder's output at the slider point, upscaled to 256 px
    expected = compiled_decoder(decoder2, uint8=True)(np.array([[7.3, 0.0]], np.float32))[0, ..., 0]
    shown = decoded_pixels(explorer.image.value)
    assert shown.shape == (256, 256)
    assert np.abs(shown[::16, ::16].astype(int) - expected).max() <= 1
    nearest = int(np.linalg.norm(means - [7.3, 0.0], axis=1).argmin())
    assert f"nearest training image: #{nearest}" in explorer.label.value


def test_marker_moves_with_the_point(decoder2):
    marker = widgets.ScatterMarker(np.zeros((1, 2)), limits=[(-15, 15), (-10, 10)])
    row_a, col_a = marker.pixel([-10.0, 0.0])
    row_b, col_b = marker.pixel([10.0, 5.0])
    assert col_b > col_a and row_b < row_a  # right and up
    outside = marker.pixel([1000.0, 0.0])
    assert 0 <= outside[1] < marker.base.shape[1]  # clamped to the axes


def test_four_latent_dimensions_give_four_sliders(make_decoder):
    decoder4 = make_decoder(latent_dim=4)
    means = np.random.default_rng(1).normal(size=(25, 4)) * [1, 2, 0.5, 4]
    explorer = widgets.LatentExplorer(decoder4, latent_means=means)
    assert [s.description for s in explorer.sliders] == ["z1", "z2", "z3", "z4"]
    for slider, std in zip(explorer.sliders, means.std(axis=0)):
        assert slider.min < -2.5 * std and slider.max > 2.5 * std
    before = explorer.image.value
    explorer.sliders[3].value = explorer.sliders[3].max
    assert explorer.image.value != before
    assert explorer.label.value.startswith("z = (0.0, 0.0, 0.0, ")
    assert np.isclose(explorer.z[3], explorer.sliders[3].max)
    with pytest.raises(ValueError):
        widgets.LatentExplorer(decoder4, ranges=[(-1, 1)] * 2)


def test_explorer_without_latent_means_has_no_scatter(decoder2):
    explorer = widgets.LatentExplorer(decoder2)
    assert explorer.scatter is None
    explorer.sliders[1].value = -3.0
    assert explorer.label.value == "z = (0.0, -3.0)"
