"""Notebook 05's verdict-carrying figures: their numbers come from what they draw; they read at
900 px."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

from vae_overlay import overlay_figures as figures
from vae_overlay import overlay_methods, plots


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def sources_and_names(size=16):
    sources = np.full((3, size, size, 1), 0.8, np.float32)
    sources[0, 2:5, 2:5] = 0.1
    sources[1, 8:11, 8:11] = 0.1
    sources[2, 12:14, 2:4] = 0.1
    return sources, ["crack_1", "crack_2", "pore"]


def test_decode_distances_are_in_grey_levels_from_the_sources_pixel_mean():
    sources, _ = sources_and_names()
    mean = overlay_methods.pixel_overlay(sources, "mean")
    decodes = np.stack([mean, mean, mean + 2 / 255])
    found = figures.decode_distances(sources, decodes)
    assert np.allclose(found["mean"], mean)
    assert found["spread"] == pytest.approx(2, abs=1e-4)
    assert found["to_mean"] == pytest.approx([0, 0, 2], abs=1e-4)


def test_collapse_figure_says_one_image_only_when_the_model_collapsed_with_the_numbers_it_draws():
    sources, names = sources_and_names()
    mean = overlay_methods.pixel_overlay(sources, "mean")
    decodes = np.stack([mean + 1 / 255] * 4)
    collapsed = {"n_clusters": 1, "n_sources": 3, "verdict": "collapsed", "min_ratio": 0.061}
    fig = figures.collapse_figure(
        sources, names, decodes, ["sum: a", "sum: b", "sum: c", "sum: all"], collapsed, "Figure 5"
    )
    title = fig.get_suptitle()
    assert "1 cluster for 3 sources, collapsed (closest pair 0.06 sd apart)" in title
    assert (
        "the 4 decodes are one image: at most 0.0 grey levels apart, 1.0 from the sources' pixel"
        " mean" in title
    )
    captions = [ax.get_title() for ax in fig.axes if ax.images]
    assert captions[:4] == [*names, "pixel mean of the sources"]
    assert captions[4] == "sum: a\n1.0 grey levels from the mean"
    # the pixel mean, beside the sources
    assert np.allclose(fig.axes[3].images[0].get_array(), mean[..., 0])
    assert plots.illegible(fig) == []
    apart = {"n_clusters": 3, "n_sources": 3, "verdict": "overlapping", "min_ratio": 1.9}
    title = figures.collapse_figure(
        sources, names, sources, names, apart, "Figure 5"
    ).get_suptitle()
    assert "one image" not in title
    assert "3 clusters for 3 sources, overlapping (closest pair 1.90 sd apart)" in title


def summary_entry(sources, variant, low):
    """One configuration as overlay_study.summarize gives it, every interval [low, low + 0.1]."""
    entry = {"sources": sources, "variant": variant, "runs": 3}
    for method in ("latent sum", "offset", "decoded composite"):
        entry.update(
            {
                f"contrast|{method}|diff": low + 0.05,
                f"contrast|{method}|low": low,
                f"contrast|{method}|high": low + 0.1,
            }
        )
    return entry


def test_variant_figure_facets_by_source_set_rows_by_variant_colours_by_method():
    variants = [
        summary_entry(s, v, low)
        for s in ("distinct", "paper-trio")
        for v, low in (("leaky ReLU", -0.2), ("standardised + leaky", 0.1), ("paper", -0.1))
    ]
    fig = figures.variant_figure(variants)
    panels = [ax for ax in fig.axes if ax.get_title()]
    # SOURCE_SETS
    assert [ax.get_title() for ax in panels] == ["paper-trio: 9 runs", "distinct: 9 runs"]
    ticks = [
        t.get_text()
        for t in sorted(panels[0].get_yticklabels(), key=lambda t: -t.get_position()[1])
    ]
    assert ticks == ["paper", "leaky ReLU", "standardised + leaky"]  # overlay.VARIANTS' order
    assert not panels[1].yaxis.get_tick_params()["labelleft"]  # the same rows: labelled once
    for ax in panels:
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert len({bar.lines[0].get_color() for bar in bars}) == 3 and len(bars) == 9
    assert panels[0].get_xlim() == panels[1].get_xlim()
    # the 0.1 rows only
    assert "of 6: latent sum 2, offset 2, decoded composite 2" in fig.get_suptitle()
    assert plots.illegible(fig) == []


def test_latent_plane_figure_labels_every_sum_without_covering_a_label():
    centres = np.array([[0.0, -1.1], [0.05, 0.9], [-0.1, 0.0]])
    sums = np.array([[0.07, -0.2], [-0.1, -1.15], [-0.08, 0.93], [-0.06, -0.21]])
    plane = {
        "centres": centres,
        "z_bg": np.array([-0.14, 0.0]),
        "sums": sums,
        "offsets": sums + [0.14, 0.0],
        "z1": np.linspace(-0.8, 0.8, 5),
        "z2": np.linspace(-2.0, 1.6, 10),
        "tiles": np.full((5, 10, 16, 16), 128, np.uint8),
    }
    names = ["crack_1+crack_2", "crack_1+pore", "crack_2+pore", "all"]
    fig = figures.latent_plane_figure(plane, ["crack_1", "crack_2", "pore"], names, "plane")
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == sorted(names * 2)
    assert plots.illegible(fig) == []
