"""Tests for vae_overlay.widgets: slider ranges, the scatter's pixel <-> latent mapping, and the
explorer's controls (sliders, range switch, scatter click, image menu, Play) redrawing its image,
marker and readout."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from vae_overlay import paper, widgets
from vae_overlay.latent import compiled_decoder


def decoded_pixels(png: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(png)))


def on_step_grid(value: float, step: float = 0.1) -> bool:
    return abs(value / step - round(value / step)) < 1e-6


@pytest.fixture(scope="module")
def decoder2(make_decoder):
    return make_decoder(latent_dim=2)


@pytest.fixture(scope="module")
def cloud():
    """40 latent means in a narrow, tall cloud (like the trained VAE's), their names and 16 px
    images."""
    rng = np.random.default_rng(0)
    means = np.column_stack([rng.normal(0.2, 0.3, 40), rng.normal(1.0, 1.5, 40)])
    images = rng.uniform(0, 1, (40, 16, 16, 1)).astype(np.float32)
    return means, [f"cell{i:02d}" for i in range(40)], images


@pytest.fixture
def explorer(decoder2, cloud):
    means, names, images = cloud
    return widgets.LatentExplorer(decoder2, latent_means=means, names=names, images=images)


def test_png_bytes_upscales_by_nearest_neighbour():
    pixels = np.array([[0, 255], [128, 7]], np.uint8)
    big = decoded_pixels(widgets.png_bytes(pixels[..., None], size=8))
    assert big.shape == (8, 8)
    assert (big[:4, :4] == 0).all() and (big[4:, :4] == 128).all() and (big[4:, 4:] == 7).all()


def test_occupied_ranges_widen_by_ten_percent_or_half_a_unit_and_snap_outwards():
    means = np.array([[0.03, -10.0], [1.03, 10.0]])  # spans 1 (margin 0.5) and 20 (margin 2)
    assert widgets.occupied_ranges(means) == [(-0.5, 1.6), (-12.0, 12.0)]
    assert widgets.default_ranges(2, means) == widgets.occupied_ranges(means)
    assert widgets.default_ranges(2) == widgets.paper_ranges(2) == [paper.Z1_RANGE, paper.Z2_RANGE]
    assert widgets.paper_ranges(3) == [paper.Z1_RANGE] * 3


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 50), st.floats(-50, 50)), min_size=1, max_size=30))
def test_occupied_ranges_hold_every_mean_with_a_margin_on_the_step_grid(points):
    means = np.array(points)
    for k, (low, high) in enumerate(widgets.occupied_ranges(means)):
        span = means[:, k].max() - means[:, k].min()
        widen = max(0.1 * span, 0.5)
        assert low <= means[:, k].min() - widen + 1e-9 and high >= means[:, k].max() + widen - 1e-9
        assert low > means[:, k].min() - widen - 0.1 and high < means[:, k].max() + widen + 0.1
        assert on_step_grid(low) and on_step_grid(high)


def test_snap_rounds_to_the_step():
    assert widgets.snap(0.30000000000000004) == 0.3
    assert widgets.snap(-2.2409) == -2.2
    assert widgets.snap(1.26, 0.5) == 1.5
    assert str(widgets.snap(-0.04)) == "0.0"  # not "-0.0" in the readout


def test_farthest_pair_exact_and_for_many_points():
    points = np.random.default_rng(2).normal(size=(50, 2))
    squared = ((points[:, None] - points[None]) ** 2).sum(-1)
    assert widgets.farthest_pair(points) == tuple(
        sorted(np.unravel_index(squared.argmax(), squared.shape))
    )
    line = np.zeros((widgets.EXACT_PAIR_LIMIT + 10, 2))
    # the ends are 0 and n - 1, in random places
    line[:, 1] = np.random.default_rng(3).permutation(len(line))
    i, j = widgets.farthest_pair(line)
    assert {line[i, 1], line[j, 1]} == {0, len(line) - 1}


def test_scatter_has_equal_aspect_and_maps_pixels_back_to_latent_points():
    points = np.random.default_rng(4).normal(size=(30, 2)) * [0.3, 2.0]
    marker = widgets.ScatterMarker(points, limits=[(-1.0, 1.0), (-5.0, 5.0)])
    (row0, col0), (row1, col1) = marker.pixel([0.0, 0.0]), marker.pixel([1.0, 1.0])
    # one unit is as many pixels right as up
    assert col1 - col0 == pytest.approx(row0 - row1, abs=1)
    unit_px = col1 - col0
    for z in [(0.0, 0.0), (-0.9, 4.5), (0.7, -3.2), (0.05, 1.23)]:
        back = marker.latent(*marker.pixel(z))
        assert np.allclose(back, z, atol=1.0 / unit_px)  # within a pixel
    row, col = marker.pixel([-0.9, 4.5])
    assert marker.pixel(marker.latent(row, col)) == (row, col)


def test_marker_moves_with_the_point_and_is_small():
    marker = widgets.ScatterMarker(np.zeros((1, 2)), limits=[(-15, 15), (-10, 10)])
    row_a, col_a = marker.pixel([-10.0, 0.0])
    row_b, col_b = marker.pixel([10.0, 5.0])
    assert col_b > col_a and row_b < row_a  # right and up
    outside = marker.pixel([1000.0, 0.0])
    assert 0 <= outside[1] < marker.base.shape[1]  # clamped to the axes
    changed = (decoded_pixels(marker.png([5.0, 5.0]))[..., :3] != marker.base).any(axis=-1)
    rows, cols = np.nonzero(changed)
    # a small ring, not a cross
    assert 10 < changed.sum() < 60 and np.ptp(rows) <= 10 and np.ptp(cols) <= 10
    assert not changed[marker.pixel([5.0, 5.0])]  # the point itself stays visible


def test_explorer_starts_on_the_occupied_region_at_the_path_start(explorer, cloud):
    means, names, _ = cloud
    assert [s.description for s in explorer.sliders] == ["z1", "z2"]
    occupied = widgets.occupied_ranges(means)
    assert [(s.min, s.max, s.step) for s in explorer.sliders] == [(*r, 0.1) for r in occupied]
    assert all(s.continuous_update for s in explorer.sliders)
    assert explorer.path_ends == widgets.farthest_pair(means)
    assert (
        explorer.jump.value == explorer.path_ends[0]
        and explorer.path_end.value == explorer.path_ends[1]
    )
    assert np.allclose(explorer.z, [widgets.snap(v) for v in means[explorer.path_ends[0]]])
    assert [label for label, _ in explorer.jump.options] == names
    assert explorer.image.format == "png"
    assert "_repr_mimebundle_" in dir(explorer)


def test_range_switch_gives_the_paper_box_and_back(explorer, cloud):
    occupied = widgets.occupied_ranges(cloud[0])
    before_scatter = explorer.scatter.value
    explorer.range_switch.value = widgets.PAPER
    assert [(s.min, s.max) for s in explorer.sliders] == [paper.Z1_RANGE, paper.Z2_RANGE]
    assert explorer.scatter.value != before_scatter  # the scatter shows the box the sliders span
    explorer.sliders[1].value = 9.5
    explorer.range_switch.value = widgets.OCCUPIED
    assert [(s.min, s.max) for s in explorer.sliders] == occupied
    assert explorer.sliders[1].value == occupied[1][1]  # clipped into the occupied region
    assert explorer.label.value.startswith(
        f"z = ({explorer.sliders[0].value:.1f}, {occupied[1][1]:.1f})"
    )


def test_moving_a_slider_redraws_image_marker_and_readout(decoder2, explorer, cloud):
    means = cloud[0]
    before_image, before_scatter = explorer.image.value, explorer.scatter.value
    explorer.sliders[1].value = 2.3
    z1 = explorer.sliders[0].value
    assert explorer.label.value.startswith(f"z = ({z1:.1f}, 2.3)")
    assert explorer.image.value != before_image
    assert explorer.scatter.value != before_scatter
    # "as decoded": the decoder's output at the slider point, at the decoder's size (the browser
    # enlarges it)
    explorer.display_switch.value = widgets.AS_DECODED
    expected = compiled_decoder(decoder2, uint8=True)(np.array([[z1, 2.3]], np.float32))[0, ..., 0]
    assert np.abs(decoded_pixels(explorer.image.value).astype(int) - expected).max() <= 1
    nearest = int(np.linalg.norm(means - [z1, 2.3], axis=1).argmin())
    assert f"nearest training image: cell{nearest:02d}" in explorer.label.value


def test_stretched_display_is_the_default_spans_the_value_range_and_is_one_click_from_the_decode(
    explorer,
):
    assert explorer.display_switch.value == widgets.STRETCHED
    assert (
        "1–99 %"
        in dict((key, label) for label, key in explorer.display_switch.options)[widgets.STRETCHED]
    )
    stretched = decoded_pixels(explorer.image.value)
    explorer.display_switch.value = widgets.AS_DECODED
    raw = decoded_pixels(explorer.image.value)
    assert not np.array_equal(stretched, raw)
    low, high = np.percentile(stretched, (1, 99))
    # the untrained decoder's output is faint
    assert low <= 3 and high >= 252 and np.ptp(raw) < np.ptp(stretched)
    # a flat image stays as it is
    np.testing.assert_allclose(widgets.contrast_stretch(np.full((4, 4), 0.3)), 0.3)
    # uint8: as 0..1
    np.testing.assert_allclose(widgets.contrast_stretch(np.full((4, 4), 51, np.uint8)), 0.2)


def test_nearest_image_has_the_decode_size_and_the_readout_scores_the_decode(explorer, cloud):
    assert explorer.nearest_image.width == explorer.image.width
    assert (
        " crack score " in explorer.label.value
        and "90 % of the training images score ≥" in explorer.label.value
    )
    assert explorer.crack_threshold == pytest.approx(
        np.quantile(explorer.crack_scores(cloud[2]), 0.1)
    )


def test_nearest_training_image_is_shown(explorer, cloud):
    means, _, images = cloud
    explorer.display_switch.value = widgets.AS_DECODED
    explorer.move_to(means[7])
    nearest = int(np.linalg.norm(means - explorer.z, axis=1).argmin())
    expected = np.round(images[nearest, ..., 0] * 255).astype(np.uint8)
    assert np.array_equal(decoded_pixels(explorer.nearest_image.value), expected)


def test_click_on_the_scatter_moves_the_sliders_there(explorer, cloud):
    means = cloud[0]
    target = means[explorer.path_ends[1]]
    row, column = explorer.marker.pixel(target)
    before = explorer.image.value
    # what ipyevents sends
    explorer.on_scatter_click({"type": "click", "dataX": column, "dataY": row})
    unit_px = explorer.marker.pixel([1.0, 0.0])[1] - explorer.marker.pixel([0.0, 0.0])[1]
    assert np.allclose(explorer.z, target, atol=0.05 + 1.0 / unit_px)
    assert all(on_step_grid(value) for value in explorer.z)
    assert explorer.image.value != before
    explorer.move_to_pixel(0, 0)  # the picture's corner is outside the sliders' box: clipped to it
    assert [explorer.sliders[0].value, explorer.sliders[1].value] == [
        explorer.sliders[0].min,
        explorer.sliders[1].max,
    ]


def test_image_menu_jumps_to_the_mean_and_play_walks_the_path(explorer, cloud):
    means = cloud[0]
    explorer.jump.value = 5
    assert np.allclose(explorer.z, [widgets.snap(v) for v in means[5]])
    assert "nearest training image: cell05" in explorer.label.value
    path = explorer.path()
    assert len(path) == explorer.play.max + 1 == 25
    assert np.allclose(path[0], means[5]) and np.allclose(path[-1], means[explorer.path_end.value])
    for frame in (1, 12, 24):
        explorer.play.value = frame
        assert np.allclose(explorer.z, [widgets.snap(v) for v in path[frame]])
    explorer.path_end.value = 9  # a new end: Play starts over (the sliders stay)
    assert explorer.play.value == 0 and np.allclose(explorer.z, [widgets.snap(v) for v in path[24]])
    assert np.allclose(explorer.path()[-1], means[9])
    explorer.play.value = 3
    explorer.jump.value = 2
    assert explorer.play.value == 0 and np.allclose(explorer.z, [widgets.snap(v) for v in means[2]])


def test_uint8_training_images_and_given_path_ends(decoder2, cloud):
    means, names, images = cloud
    as_uint8 = np.round(images * 255).astype(np.uint8)
    explorer = widgets.LatentExplorer(
        decoder2, latent_means=means, names=names, images=as_uint8, path_ends=(3, 4)
    )
    assert explorer.path_ends == (3, 4) and np.allclose(explorer.path()[-1], means[4])
    explorer.display_switch.value = widgets.AS_DECODED
    nearest = int(np.linalg.norm(means - explorer.z, axis=1).argmin())
    assert np.array_equal(decoded_pixels(explorer.nearest_image.value), as_uint8[nearest, ..., 0])


def test_four_latent_dimensions_give_four_sliders(make_decoder):
    decoder4 = make_decoder(latent_dim=4)
    means = np.random.default_rng(1).normal(size=(25, 4)) * [1, 2, 0.5, 4]
    explorer = widgets.LatentExplorer(decoder4, latent_means=means)
    assert [s.description for s in explorer.sliders] == ["z1", "z2", "z3", "z4"]
    for k, slider in enumerate(explorer.sliders):
        assert slider.min <= means[:, k].min() - 0.5 and slider.max >= means[:, k].max() + 0.5
    before = explorer.image.value
    explorer.sliders[3].value = explorer.sliders[3].max
    assert explorer.image.value != before
    assert np.isclose(explorer.z[3], explorer.sliders[3].max)
    explorer.range_switch.value = widgets.PAPER
    assert [(s.min, s.max) for s in explorer.sliders] == [paper.Z1_RANGE] * 4
    with pytest.raises(ValueError, match="one range per latent dimension"):
        widgets.LatentExplorer(decoder4, ranges=[(-1, 1)] * 2)


def test_explorer_without_latent_means_has_sliders_only(decoder2):
    explorer = widgets.LatentExplorer(decoder2)
    assert explorer.scatter is None and explorer.jump is None and explorer.nearest_image is None
    assert [(s.min, s.max) for s in explorer.sliders] == [paper.Z1_RANGE, paper.Z2_RANGE]
    explorer.sliders[1].value = -3.0
    assert explorer.label.value.startswith("z = (0.0, -3.0); crack score ")
    assert "training images" not in explorer.label.value  # no images: no threshold to compare with


def test_given_ranges_replace_the_occupied_region(decoder2, cloud):
    explorer = widgets.LatentExplorer(decoder2, latent_means=cloud[0], ranges=[(-2, 2), (-4, 4)])
    assert [(s.min, s.max) for s in explorer.sliders] == [(-2, 2), (-4, 4)]
    assert [key for _, key in explorer.range_switch.options] == ["given", widgets.PAPER]
