"""The figure helpers: gutters between decoded tiles, the latent means in their own panel, the
forest plot, row labels."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgb
from matplotlib.container import ErrorbarContainer
from matplotlib.text import Text

from vae_overlay import plots


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def small_texts(fig, smallest=9):
    """Every visible, non-empty text of `fig` (titles, labels, tick labels, annotations) under
    `smallest` points."""
    fig.canvas.draw()
    return [
        (t.get_text(), t.get_fontsize())
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and t.get_fontsize() < smallest
    ]


def numbered_tiles(n1=2, n2=3, size=4):
    """uint8 tiles (n1, n2, size, size) whose tile [i, j] is filled with 10 * i + j + 1 (never a
    gutter grey)."""
    tiles = np.zeros((n1, n2, size, size), np.uint8)
    for i in range(n1):
        for j in range(n2):
            tiles[i, j] = 10 * i + j + 1
    return tiles


def test_gutter_pixels_have_the_gutter_colour_and_tiles_stay_on_their_latent_points():
    tiles, z1, z2, g = numbered_tiles(), np.array([-1.0, 1.0]), np.array([-2.0, 0.0, 2.0]), 2
    fig, ax = plt.subplots()
    plots.decoded_grid(ax, tiles, z1, z2, gutter=g, gutter_color="0.8")
    canvas = np.asarray(ax.images[0].get_array())
    assert canvas.shape == (3 * (4 + g) + g, 2 * (4 + g) + g, 3)
    gutter = np.zeros(canvas.shape[:2], bool)
    for start in range(0, canvas.shape[0], 4 + g):
        gutter[start : start + g, :] = True
    for start in range(0, canvas.shape[1], 4 + g):
        gutter[:, start : start + g] = True
    assert np.allclose(canvas[gutter], to_rgb("0.8"))
    # no tile pixel is gutter grey
    assert not np.isclose(canvas[~gutter], to_rgb("0.8")).all(axis=-1).any()
    x0, x1, y0, y1 = ax.images[0].get_extent()
    for i in range(2):
        for j in range(3):
            top, left = g + (2 - j) * (4 + g), g + i * (4 + g)  # the highest z2 is the top row
            expected = plt.get_cmap("gray")((10 * i + j + 1) / 255)[:3]
            assert np.allclose(canvas[top : top + 4, left : left + 4], expected)
            centre_x = x0 + (left + 2) * (x1 - x0) / canvas.shape[1]
            centre_y = y1 - (top + 2) * (y1 - y0) / canvas.shape[0]
            assert (centre_x, centre_y) == pytest.approx((z1[i], z2[j]))


def test_latent_grid_figure_puts_the_means_beside_the_tiles_over_the_same_range():
    tiles = np.random.default_rng(0).uniform(0, 1, (5, 4, 16, 16)).astype(np.float32)
    z1, z2 = np.linspace(-2, 2, 5), np.linspace(-3, 3, 4)
    # the last one lies outside the grid
    means = np.array([[0.0, 0.0], [1.0, -2.0], [1.5, 2.5], [9.0, 0.0]])
    fig = plots.latent_grid_figure(tiles, z1, z2, means, title="Figure 3")
    ax_grid, ax_means = fig.axes
    # nothing drawn over the tiles
    assert not [c for c in ax_grid.collections if isinstance(c, PathCollection)]
    scatter = [c for c in ax_means.collections if isinstance(c, PathCollection)]
    assert len(scatter) == 1 and np.allclose(scatter[0].get_offsets(), means)
    assert ax_means.get_xlim() == pytest.approx(ax_grid.get_xlim())
    assert ax_means.get_ylim() == pytest.approx(ax_grid.get_ylim())
    assert ax_means.get_aspect() == pytest.approx(ax_grid.get_aspect())
    assert "1 outside" in ax_means.get_title()
    # tile centres
    assert np.allclose(ax_grid.get_xticks(), z1) and np.allclose(ax_grid.get_yticks(), z2)
    canvas = np.asarray(ax_grid.images[0].get_array())
    # default gutter: 2 pixels for 16-pixel tiles
    assert canvas.shape == (4 * (16 + 2) + 2, 5 * (16 + 2) + 2, 3)
    assert np.allclose(canvas[:2], 1.0) and np.allclose(canvas[:, :2], 1.0)  # white by default
    assert small_texts(fig) == []


@pytest.mark.parametrize("case", ["one tile", "no means", "no training image", "uint8, wide tiles"])
def test_latent_grid_figure_edge_cases(case):
    tiles, z1, z2, means = (
        np.full((1, 1, 8, 8), 0.5),
        np.array([0.0]),
        np.array([3.0]),
        np.zeros((1, 2)),
    )
    if case == "no means":
        means = None
    elif case == "no training image":
        means = np.zeros((0, 3))
    elif case == "uint8, wide tiles":
        tiles, z1, z2 = (
            np.full((3, 2, 4, 12), 200, np.uint8),
            np.array([0.0, 0.5, 1.0]),
            np.array([-1.0, 1.0]),
        )
    fig = plots.latent_grid_figure(tiles, z1, z2, means)
    assert len(fig.axes) == (1 if means is None else 2)
    x0, x1, y0, y1 = fig.axes[0].images[0].get_extent()
    assert x0 < z1[0] <= z1[-1] < x1 and y0 < z2[0] <= z2[-1] < y1


def test_latent_grid_figure_refuses_one_dimensional_means():
    with pytest.raises(ValueError, match="means"):
        plots.latent_grid_figure(
            np.zeros((2, 2, 4, 4)), [0.0, 1.0], [0.0, 1.0], means=np.zeros((5, 1))
        )


def vertical_lines(ax):
    """{x: linestyle} of the vertical lines spanning the axes (axvline), not the error bars."""
    return {
        float(line.get_xdata()[0]): line.get_linestyle()
        for line in ax.get_lines()
        if len(line.get_xdata()) == 2
        and line.get_xdata()[0] == line.get_xdata()[1]
        and tuple(line.get_ydata()) == (0, 1)
    }


def test_forest_draws_one_error_bar_per_row_and_the_reference_lines():
    labels = ["(2) classical", "(3) samples", "(4) overlays", "(5) both"]
    estimates, lows, highs = [3.0, -1.7, 0.4, -2.0], [-0.6, -5.4, -3.1, -4.3], [6.6, 2.0, 3.9, 0.2]
    fig = plots.forest(
        labels,
        estimates,
        lows,
        highs,
        references={"paper: +8": 8},
        zero_label="original",
        xlabel="accuracy points",
        title="paired differences",
    )
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 4 and all(bar.has_xerr for bar in bars)
    for bar, estimate, low, high in zip(bars, estimates, lows, highs):
        x, _ = bar.lines[0].get_data()
        segment = bar.lines[2][0].get_segments()[0]
        assert x[0] == estimate and sorted(p[0] for p in segment) == pytest.approx([low, high])
    rows = {bar.lines[0].get_data()[1][0]: label for bar, label in zip(bars, labels)}
    assert [rows[y] for y in sorted(rows, reverse=True)] == labels  # the first label on top
    ticks = sorted(zip(ax.get_yticks(), [t.get_text() for t in ax.get_yticklabels()]), reverse=True)
    assert [text for _, text in ticks] == labels
    assert vertical_lines(ax) == {0.0: "-", 8.0: "--"}
    left, right = ax.get_xlim()
    assert left < -5.4 and right > 8
    texts = [t.get_text().strip() for t in ax.texts]
    assert "paper: +8" in texts and "original" in texts and "+3.0 [-0.6, +6.6]" in texts
    assert small_texts(fig) == []


def test_forest_edge_cases():
    fig = plots.forest(
        ["only"], [1.0], [float("nan")], [float("nan")], references={"paper": 8}, annotate=None
    )
    (bar,) = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert not bar.has_xerr  # no interval: the dot only
    assert fig.axes[0].texts[0].get_text().strip() == "paper"
    empty = plots.forest([], [], [], [], zero=None)
    assert not empty.axes[0].containers and vertical_lines(empty.axes[0]) == {}
    fig, ax = plt.subplots()
    # zero-width intervals
    assert plots.forest(["a", "b"], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], ax=ax) is fig
    with pytest.raises(ValueError, match="one estimate, low and high per label"):
        plots.forest(["a", "b"], [1.0], [0.0], [2.0])
    with pytest.raises(ValueError, match="contain its estimate"):
        plots.forest(["a"], [1.0], [2.0], [3.0])


def test_image_grid_writes_readable_row_labels_left_of_each_row():
    images = np.random.default_rng(1).uniform(0, 1, (7, 8, 8, 1))
    labels = ["training\nimage", "decoded", "closest"]
    fig = plots.image_grid(images, [f"#{i}" for i in range(7)], ncols=3, row_labels=labels)
    axes = np.array(fig.axes).reshape(3, 3)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for row, label in enumerate(labels):
        ax = axes[row, 0]
        assert ax.axison and ax.get_ylabel() == label and ax.yaxis.label.get_fontsize() >= 9
        assert ax.yaxis.label.get_window_extent(renderer).x1 <= ax.get_window_extent(renderer).x0
    assert [ax.get_title() for ax in axes.flat[:7]] == [f"#{i}" for i in range(7)]
    assert not axes[2, 1].images and not axes[2, 1].axison  # the unused cells stay blank
    assert small_texts(fig) == []


def test_image_grid_checks_its_row_labels_and_shows_a_single_image():
    with pytest.raises(ValueError, match="2 row labels for 3 rows"):
        plots.image_grid(np.zeros((7, 4, 4)), ncols=3, row_labels=["a", "b"])
    with pytest.raises(ValueError, match="no images"):
        plots.image_grid(np.zeros((0, 4, 4)))
    fig = plots.image_grid(np.zeros((1, 4, 4, 1)), ["one"], row_labels=["row"])
    assert len(fig.axes) == 1 and fig.axes[0].get_ylabel() == "row"


def test_forest_with_series_draws_one_coloured_bar_per_row_and_series_and_labels_them_once():
    labels, series = ["paper", "leaky ReLU"], ("latent sum", "offset", "decoded composite")
    estimates = np.array([[-0.1, 0.0, 0.3], [-0.2, -0.1, 0.4]])
    fig = plots.forest(
        labels, estimates, estimates - 0.05, estimates + 0.05, series=series, annotate="{:+.1f}"
    )
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 6
    where = {
        (bar.lines[0].get_data()[1][0], bar.lines[0].get_data()[0][0]): to_rgb(
            bar.lines[0].get_color()
        )
        for bar in bars
    }
    for k in range(2):
        rows = sorted(
            ((y, x, colour) for (y, x), colour in where.items() if abs(y - (1 - k)) < 0.5),
            reverse=True,
        )
        # the first series on top within its row
        assert [x for _, x, _ in rows] == list(estimates[k])
        assert [colour for _, _, colour in rows] == [to_rgb(f"C{j}") for j in range(3)]
    assert ax.get_legend_handles_labels()[1] == list(series)
    assert len(ax.texts) == 0  # `annotate` is not used with series
    with pytest.raises(ValueError, match="per label and series"):
        plots.forest(labels, estimates[:, :2], estimates[:, :2], estimates[:, :2], series=series)


def test_shown_sizes_shrink_the_text_of_a_figure_saved_wider_than_the_page(tmp_path):
    from PIL import Image

    narrow, ax = plt.subplots(figsize=(5, 3))
    ax.set_title("title", fontsize=10)
    assert dict(plots.shown_sizes(narrow, dpi=80))["title"] == pytest.approx(10)
    wide, ax = plt.subplots(figsize=(22.5, 3))
    ax.set_title("title", fontsize=10)
    shown = dict(plots.shown_sizes(wide, dpi=80))["title"]
    with Image.open(plots.save_figure(wide, "wide", tmp_path, dpi=80)) as saved:
        width = saved.width
    assert width > plots.PAGE_WIDTH and shown == pytest.approx(
        10 * plots.PAGE_WIDTH / width, rel=0.01
    )
    # saved smaller
    assert shown < 9 and min(dict(plots.shown_sizes(wide, dpi=40)).values()) > shown
    assert plots.illegible(narrow) == [] and f"'title' at {shown:.1f} pt" in plots.illegible(wide)


def test_overlapping_texts_finds_text_written_over_text_and_ignores_undrawn_ticks():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.text(0.5, 0.5, "first label")
    ax.text(0.52, 0.5, "second label")
    ax.text(0.1, 0.1, "apart")
    ax.set_xlim(0, 1)
    assert plots.overlapping_texts(fig) == [("first label", "second label")]
    assert plots.illegible(fig) == ["'first label' over 'second label'"]
    ax.set_xticks(np.linspace(0, 1, 40))  # crowded tick labels overlap too
    assert len(plots.overlapping_texts(fig)) > 1


def test_place_labels_keeps_labels_of_close_points_apart_and_inside_the_axes():
    fig, ax = plt.subplots(figsize=(4, 4))
    points = np.array([[0.0, 0.0], [0.02, 0.0], [0.0, 0.02], [0.98, 0.98], [0.5, 0.5]])
    ax.scatter(*points.T)
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    placed = plots.place_labels(ax, points, ["a+b", "a+c", "b+c", "corner", "middle"], fontsize=9)
    assert [label.get_text() for label in placed] == ["a+b", "a+c", "b+c", "corner", "middle"]
    assert plots.overlapping_texts(fig) == []
    frame = ax.get_window_extent()
    for label in placed:
        box = label.get_window_extent()
        assert (
            frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        )
    assert placed[3].get_position()[0] < 0  # the corner's label went left of its point
