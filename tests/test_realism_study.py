"""realism_study.py: the kernel distance and the realism scale, and one tiny run through the
runner."""

import numpy as np
import pytest

from vae_overlay import realism_study, study


def blobs(n, size=8, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    return np.clip(0.5 + shift + 0.1 * rng.normal(size=(n, size, size, 1)), 0, 1).astype(np.float32)


def test_kernel_distance_is_near_zero_within_a_distribution_and_grows_with_a_shift():
    width = realism_study.kernel_width(blobs(60, seed=1))
    same = realism_study.kernel_distance(blobs(60, seed=2), blobs(60, seed=3), width)
    shifted = realism_study.kernel_distance(blobs(60, seed=2, shift=0.1), blobs(60, seed=3), width)
    further = realism_study.kernel_distance(blobs(60, seed=2, shift=0.2), blobs(60, seed=3), width)
    assert abs(same) < 0.02 < shifted < further


def test_realism_is_one_for_real_images_and_zero_for_the_pixel_mean(crack_images):
    training, unseen = (
        crack_images(count=40, size=16, seed=1),
        crack_images(count=40, size=16, seed=2),
    )
    assert realism_study.realism(training, training, unseen)["realism"] == pytest.approx(1.0)
    mean = np.repeat(training.mean(axis=0, keepdims=True), 40, axis=0)
    measured = realism_study.realism(mean, training, unseen)
    assert measured["realism"] == pytest.approx(0.0, abs=1e-9) and measured["sharpness"] < 0.5
    assert (
        realism_study.realism(crack_images(count=40, size=16, seed=3), training, unseen)["realism"]
        > 0.5
    )


def test_the_realism_kind_refuses_a_source_without_held_out_images():
    with pytest.raises(study.StudyError, match="unknown data"):
        study.configurations({"data": ["synthetic"]}, "realism")


def test_summarize_compares_each_dimension_with_the_lowest_seed_by_seed():
    rows = [
        {
            "latent_dim": dim,
            "seed": seed,
            "error": "",
            "collapsed": False,
            **{name: 0.1 * dim + 0.01 * seed for name in realism_study.MEASURES},
        }
        for dim in (2, 4, 8)
        for seed in range(3)
    ]
    summary = realism_study.summarize(rows)
    assert [entry["latent_dim"] for entry in summary] == [2, 4, 8]
    assert "diff" not in summary[0] and np.isnan(summary[0]["p_holm"])
    assert summary[1]["diff"] == pytest.approx(0.2) and summary[2]["diff"] == pytest.approx(0.6)


@pytest.mark.slow
def test_one_tiny_realism_run_measures_samples_against_unseen_patches(tmp_path):
    kind, grid = study.GRIDS["tiny-realism"]
    config = study.configurations(grid, kind)[0]
    row = study.run_one(config, str(tmp_path), kind=kind)
    assert row["error"] == "", row["error"]
    assert row["kd_mean"] > row["kd_real"] and abs(row["kd_real"]) < 0.05
    assert 0 <= row["crack_like"] <= 1 and row["sharpness"] > 0
    assert np.isfinite(row["realism"])
    shared = study.run_key({key: config[key] for key in study.kind_of("section3").defaults})
    assert (
        tmp_path / shared / "vae.keras"
    ).is_file()  # the section3 kind's training, found again by it
