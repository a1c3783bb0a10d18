"""Notebook 07's figures: one row per configuration with a horizontal label, legible at 900 px."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

from vae_overlay import plots, section3_study


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def table_rows():
    """Three runs of each of four configurations, as the study table holds them: 0, 1 or 2 active
    units."""
    rows = []
    for data in ("elpv-crack-patches", "elpv-cracks"):
        for size, loss in ((64, "keras-io-2020"), (128, "sum")):
            for seed, units in enumerate((0, 1, 2)):
                reach = (0.01, 3.0, 11.0)[units]
                rows.append(
                    {
                        "data": data,
                        "image_size": size,
                        "loss": loss,
                        "seed": seed,
                        "error": "",
                        "active_units": units,
                        "collapsed": units == 0,
                        "box_reached": reach >= 10,
                        "crack_fraction_box": 0.5,
                        "crack_fraction_occupied": 0.25,
                        **{
                            f"z{d}_{end}": sign * reach
                            for d in (1, 2)
                            for end, sign in (("min", -1), ("max", 1), ("p01", -1), ("p99", 1))
                        },
                    }
                )
    return rows


def tick_texts(labels):
    return [t.get_text() for t in sorted(labels, key=lambda t: -t.get_position()[1])]


def test_reach_figure_puts_each_configuration_on_a_horizontal_row_with_its_runs():
    rows = table_rows()
    fig = section3_study.reach_figure(rows)
    ax = fig.axes[0]
    labels = [section3_study.configuration_label(s) for s in section3_study.summarize(rows)]
    assert tick_texts(ax.get_yticklabels()) == labels
    assert all(t.get_rotation() == 0 for t in ax.get_yticklabels())
    dots = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets())])
    assert len(dots) == len(rows) and sorted(np.round(dots[:, 0], 6)) == sorted(
        [0.01, 3.0, 11.0] * 4
    )
    assert ax.get_xscale() == "log" and "12 trainings" in ax.get_title()
    assert plots.illegible(fig) == []


def test_rates_figure_labels_each_configuration_once_and_draws_its_intervals():
    summary = section3_study.summarize(table_rows())
    fig = section3_study.rates_figure(summary)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert len(axes) == 3
    assert tick_texts(axes[0].get_yticklabels()) == [
        section3_study.configuration_label(s) for s in summary
    ]
    assert [ax.yaxis.get_tick_params()["labelleft"] for ax in axes] == [True, False, False]
    collapse = [c for c in axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert [bar.lines[0].get_data()[0][0] for bar in collapse] == [
        s["collapsed_rate"] for s in summary
    ]
    assert all(ax.get_xlim() == (-0.05, 1.05) for ax in axes)
    assert plots.illegible(fig) == []
