"""Tests for vae_overlay.overlay_methods: the one registry of overlay methods and its dispatch."""

import csv
from pathlib import Path

import numpy as np
import pytest

from vae_overlay import overlay_methods, overlay_study
from vae_overlay.overlay_explorer import METHODS as MENU

ROOT = Path(__file__).resolve().parents[1]


def test_the_study_names_are_the_columns_of_the_committed_tables():
    for table in sorted((ROOT / "results" / "studies").glob("section4*.csv")):
        with table.open(newline="") as handle:
            header = next(csv.reader(handle))
        named = {column.split("|")[1] for column in header if column.count("|") == 2}
        assert named == set(overlay_study.METHODS), table.name
    claims = ("latent sum", "latent mean", "offset", "decoded composite")  # the model's methods
    assert overlay_study.CLAIM_METHODS == claims


def test_the_explorer_menu_is_the_registry_in_its_order():
    assert list(MENU) == [
        "sum",
        "mean",
        "offset",
        "weighted",
        "composite",
        "pixel mean",
        "pixel darkest",
    ]
    assert MENU["pixel mean"] == "pixel mean (baseline)" and MENU["sum"] == "latent sum (paper)"
    assert overlay_methods.LATENT_METHODS == ("sum", "mean", "offset", "weighted")
    needs = {key for key, method in overlay_methods.METHODS.items() if method.needs_model}
    assert needs == {"sum", "mean", "offset", "weighted", "composite"}
    around = {key for key, method in overlay_methods.METHODS.items() if method.around_z_bg}
    assert around == {"offset", "weighted"}


def test_combine_dispatches_by_what_a_method_combines():
    z = np.array([[1.0, 2.0], [3.0, -1.0]])
    z_bg = np.array([0.5, 0.5])
    assert np.allclose(overlay_methods.combine("sum", z), [4.0, 1.0])
    weighted = overlay_methods.combine("weighted", z, z_bg, 2.0)
    assert np.allclose(weighted, z_bg + 2 * (z - z_bg).sum(0))
    images = np.stack([np.full((2, 2, 1), 0.2), np.full((2, 2, 1), 0.6)]).astype(np.float32)
    assert np.allclose(overlay_methods.combine("pixel mean", images), 0.4)
    assert np.allclose(overlay_methods.combine("composite", images), 0.2)
    assert np.allclose(overlay_methods.combine("pixel darkest", images), 0.2)
    with pytest.raises(ValueError, match="method must be one of"):
        overlay_methods.combine("product", z)
    with pytest.raises(ValueError, match="space"):
        overlay_methods.Method("x", "x", "x", "somewhere", "sum")
