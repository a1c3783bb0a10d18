"""Tests for vae_overlay.explorer_models (picking, storing and loading the explorer's representative
runs) and vae_overlay.model_picker (the model menu that switches the latent explorer between
them)."""

import io
import json
import re

import numpy as np
import pytest
from PIL import Image as PILImage

from vae_overlay import checkpoint, explorer_models, model, model_picker, section3_study, widgets

KEYS = ("collapsed", "active_units", "crack_fraction_occupied", "crack_fraction_box", "box_reached")


def row(key, data="elpv-crack-patches", size=64, loss="sum", seed=0, reach=3.0, **values):
    """A finished study row: latent means to ±`reach` on z1 (also its 1-99 % range), other values
    given."""
    values = {
        "collapsed": False,
        "active_units": 2,
        "crack_fraction_occupied": 0.5,
        "crack_fraction_box": 0.3,
        "box_reached": False,
        **values,
    }
    ends = {
        f"z{d}_{end}": sign * (reach if d == 1 else 1.0)
        for d in (1, 2)
        for end, sign in (("min", -1), ("max", 1), ("p01", -1), ("p99", 1))
    }
    return {
        "key": key,
        "data": data,
        "image_size": size,
        "loss": loss,
        "seed": seed,
        "latent_dim": 2,
        "epochs": 100,
        "batch_size": 10,
        "learning_rate": 0.002,
        **ends,
        **values,
    }


@pytest.fixture(scope="module")
def table():
    return [
        row("a", crack_fraction_occupied=0.9),
        row(
            "b", crack_fraction_occupied=0.95, collapsed=True, active_units=0
        ),  # never "crack-like"
        row(
            "c", data="synthetic", crack_fraction_occupied=1.0
        ),  # the control data: never "crack-like"
        row(
            "d",
            crack_fraction_occupied=0.2,
            size=128,
            reach=12.0,
            box_reached=True,
            crack_fraction_box=0.1,
        ),
        row(
            "e",
            crack_fraction_occupied=0.1,
            size=128,
            reach=16.0,
            box_reached=True,
            crack_fraction_box=0.05,
        ),
        row("f", loss="keras-io-2020", collapsed=True, active_units=0, seed=3),
        row("g", loss="keras-io-2020", collapsed=True, active_units=0, seed=1),
        row("h", loss="keras-io-2020", collapsed=False, seed=2),
        row("i", size=128, loss="keras-io-2020", collapsed=True, active_units=0, seed=5),
        row("j", data="elpv-cracks", crack_fraction_occupied=0.6),
    ]


def test_candidates_follow_each_roles_rule(table):
    picked = {
        role: [r["key"] for r in rows] for role, rows in explorer_models.candidates(table).items()
    }
    # ELPV, not collapsed, by the share of the occupied region
    assert picked["crack-like"][:2] == ["a", "j"]
    assert picked["box"] == ["e", "d"]  # the paper's own edge (|z1| >= 15) first
    # the configuration that collapsed in every run (128 px keras-io-2020) first, then 64 px
    # keras-io by seed, then the collapsed run of the configuration that collapsed least often
    assert picked["collapsed"] == ["i", "g", "f", "b"]


def test_still_shows_checks_the_retrained_models_property(table):
    shown = explorer_models.shown
    assert explorer_models.still_shows(
        "crack-like", shown(row("x", crack_fraction_occupied=0.9)), table
    )
    assert not explorer_models.still_shows(
        "crack-like", shown(row("x", crack_fraction_occupied=0.3)), table
    )
    assert not explorer_models.still_shows(
        "crack-like", shown(row("x", crack_fraction_occupied=0.9, collapsed=True)), table
    )
    assert explorer_models.still_shows("box", shown(row("x", box_reached=True, reach=11)), table)
    assert not explorer_models.still_shows("box", shown(row("x")), table)
    assert explorer_models.still_shows("collapsed", shown(row("x", collapsed=True)), table)
    assert not explorer_models.still_shows("collapsed", shown(row("x")), table)
    assert (
        shown(row("x", reach=16.0))["extent_any"] and not shown(row("x", reach=12.0))["extent_any"]
    )


def test_settings_label_is_readable():
    label = explorer_models.settings_label(
        row("b7ebd0ae143480c5", size=128, loss="keras-io-2020", seed=4)
    )
    assert label == "elpv-crack-patches, 128 px, loss keras-io-2020, seed 4"


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A small untrained VAE on the synthetic source at 16 px stored as a 'collapsed'
    representative, and the same model's decoder."""
    folder = tmp_path_factory.mktemp("models")
    images = section3_study.training_images("synthetic", 16)
    vae = model.build_vae(16, 2, seed=1)
    study_row = row("k", data="synthetic", size=16, collapsed=True, active_units=0)
    measured = section3_study.measure(vae, images)
    entry = explorer_models.store(
        "collapsed", study_row, vae, images, 1.0, measured, folder, folder
    )
    manifest = {"models": [entry.__dict__]}
    (folder / explorer_models.MANIFEST).write_text(json.dumps(manifest))
    return folder, vae, images


def test_a_stored_model_loads_with_its_means_names_and_images(stored):
    folder, vae, images = stored
    [entry] = explorer_models.read_models(folder)
    assert entry.name == "collapsed: synthetic, 16 px, loss sum, seed 0"
    assert entry.decoder_kb > 0 and entry.vae_kb is None  # no trained vae.keras in the work folder
    loaded = entry.load(folder)
    z = np.array([[0.5, -1.0]], np.float32)
    assert np.allclose(loaded["decoder"](z), vae.decoder(z), atol=1e-6)
    assert np.allclose(loaded["latent_means"], model.encode_mean(vae, images), atol=1e-5)
    assert len(loaded["names"]) == len(loaded["images"]) == len(images)
    assert explorer_models.read_models(folder / "missing") == []


def test_a_model_is_refused_with_other_training_images(stored):
    folder, _, _ = stored
    [entry] = explorer_models.read_models(folder)
    entry.images_sha256 = "0" * 16
    with pytest.raises(ValueError, match="not the ones this model was trained on"):
        entry.load(folder)


def test_the_picker_switches_decoder_ranges_scatter_and_nearest_lookup(
    stored, make_decoder, crack_images
):
    folder, vae, images = stored
    default_means = np.column_stack([np.linspace(-1, 1, 20), np.linspace(0, 2, 20)])
    default = widgets.LatentExplorer(
        make_decoder(latent_dim=2, image_size=16),
        latent_means=default_means,
        names=[f"cell{i}" for i in range(20)],
        images=crack_images(20, 16),
    )
    default_name = "default run: elpv-crack-patches, 64 px, loss sum, seed 42"
    picker = model_picker.ModelPicker(default, default_name, folder)
    assert picker.current is default and picker.body.children == (default.widget,)
    # no hashes
    assert [re.search(r"[0-9a-f]{12}", name) for name in picker.menu.options] == [None, None]
    picker.menu.value = picker.menu.options[1]
    chosen = picker.current
    assert chosen is not default and picker.body.children == (chosen.widget,)
    means = model.encode_mean(vae, images)
    assert chosen.range_sets[widgets.OCCUPIED] == widgets.occupied_ranges(
        np.asarray(chosen.latent_means)
    )
    assert np.allclose(chosen.latent_means, means, atol=1e-5)
    chosen.display_switch.value = widgets.AS_DECODED
    chosen.move_to([0.3, -0.2])
    shown = np.asarray(PILImage.open(io.BytesIO(chosen.image.value)))
    assert (
        np.abs(shown.astype(int) - np.round(vae.decoder(chosen.z[None])[0, ..., 0] * 255)).max()
        <= 1
    )
    nearest = int(np.linalg.norm(means - chosen.z, axis=1).argmin())
    assert f"nearest training image: {chosen.names[nearest]} at" in chosen.label.value
    assert "Section 3 study run" in picker.note.value  # what the stored model shows
    picker.choose(picker.menu.options[0])  # back: the same explorer, as it was left
    assert (
        picker.current is default
        and picker.body.children == (default.widget,)
        and picker.note.value == ""
    )


def test_the_committed_models_are_small_readable_and_complete():
    entries = explorer_models.read_models()
    if not entries:
        pytest.skip("no models stored in results/models")
    assert [entry.role for entry in entries] == list(explorer_models.ROLES)
    for entry in entries:
        path = explorer_models.MODELS_DIR / entry.folder / explorer_models.DECODER_FILE
        assert path.stat().st_size < 2_000_000 and not re.search(r"[0-9a-f]{12}", entry.name)
        assert len(entry.means) == len(entry.names) == 80
        assert len(entry.means[0]) == entry.settings["latent_dim"]
    readme = (explorer_models.MODELS_DIR / "README.md").read_text()
    assert "CC BY-NC-SA 4.0" in readme and all(entry.name in readme for entry in entries)


def test_the_default_runs_name_comes_from_its_recorded_settings(tmp_path):
    settings = {"image_size": 64, "loss": "sum", "seed": 42}
    record = {
        "settings": settings,
        "epochs": 0,
        "history": {key: [] for key in checkpoint.LOSS_KEYS},
    }
    (tmp_path / "history.json").write_text(json.dumps(record))
    name = model_picker.run_label(tmp_path, "elpv-crack-patches")
    assert name == "default run (notebook 02): elpv-crack-patches, 64 px, loss sum, seed 42"


def test_the_note_says_what_a_stored_model_shows(stored):
    folder, _, _ = stored
    [entry] = explorer_models.read_models(folder)
    entry.measured = explorer_models.shown(
        row("x", reach=12.5, box_reached=True, crack_fraction_occupied=0.25)
    )
    note = model_picker.describe(entry)
    assert "2 active latent unit(s), latent means reach 12.5 (the paper's box)" in note
    assert "25 % of the occupied region" in note
    entry.measured = explorer_models.shown(row("x", collapsed=True, active_units=0))
    assert model_picker.describe(entry).startswith(
        "<span"
    ) and "collapsed:" in model_picker.describe(entry)
