"""Is the latent space degenerate: active units and total collapse, merged clusters, dead units, the
report of one model on its sources."""

import keras
import numpy as np
import pytest

from vae_overlay import diagnostics, model

# -------------------------------------------------------------------------- no active latent unit


def test_active_units_count_the_means_that_vary_over_the_images():
    rng = np.random.default_rng(0)
    columns = [rng.normal(0, 1.0, 200), rng.normal(3, 0.05, 200), np.full(200, -2.0)]
    means = np.stack(columns, axis=1)
    assert diagnostics.active_units(means) == 1  # variance ~1 > 0.01; ~0.0025 and 0 are not
    assert diagnostics.active_units(means, min_variance=1e-3) == 2
    assert not diagnostics.no_active_unit(means)
    assert diagnostics.no_active_unit(means[:, 1:])
    # the rule is "variance above ACTIVE_VARIANCE": not active just below it, active just above
    at_threshold = np.array([[0.0], [2 * np.sqrt(diagnostics.ACTIVE_VARIANCE)]])
    assert np.var(at_threshold) == pytest.approx(diagnostics.ACTIVE_VARIANCE)
    assert diagnostics.active_units(at_threshold * 0.999) == 0
    assert diagnostics.active_units(at_threshold * 1.001) == 1


def test_latent_collapse_is_detected():
    vae = model.build_vae(16, 2, seed=0)
    images = np.random.default_rng(0).random((10, 16, 16, 1)).astype(np.float32)
    assert not diagnostics.latent_collapsed(vae.encoder, images)
    assert diagnostics.latent_collapsed(vae.encoder, images, min_variance=1e6)  # a looser threshold
    # dead hidden layer (what training collapse looks like): every image gets the same latent mean
    dense = vae.encoder.get_layer("dense")
    dense.set_weights([np.zeros_like(w) for w in dense.get_weights()])
    assert diagnostics.latent_collapsed(vae.encoder, images)
    assert diagnostics.no_active_unit(model.encode_mean(vae, images))


# ------------------------------------------------------------------------------ merged clusters


def clouds(centres, spread, n=400, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.asarray(centres, float)
    dims = centres.shape[1]
    points = np.concatenate([c + spread * rng.standard_normal((n, dims)) for c in centres])
    return points, np.repeat(np.arange(len(centres)), n)


def test_cluster_separation_separated_collapsed_partial_and_overlapping():
    separated = diagnostics.cluster_separation(*clouds([[0, 0], [10, 0], [0, 10]], 1.0))
    assert separated["n_clusters"] == 3 and not separated["collapsed"]
    assert separated["verdict"] == "separated"
    assert separated["min_ratio"] == pytest.approx(10 / np.sqrt(2), rel=0.1)
    collapsed = diagnostics.cluster_separation(*clouds([[0, 0], [0.01, 0], [0, 0.01]], 1.0))
    assert collapsed["n_clusters"] == 1 and collapsed["collapsed"] and collapsed["min_ratio"] < 0.1
    assert collapsed["verdict"] == "collapsed"
    # ratio 0.7 merges two
    partial = diagnostics.cluster_separation(*clouds([[0, 0], [1, 0], [20, 0]], 1.0))
    assert partial["n_clusters"] == 2 and partial["collapsed"]
    # ratio ~2.1
    overlapping = diagnostics.cluster_separation(*clouds([[0, 0], [3, 0], [0, 3]], 1.0))
    assert overlapping["n_clusters"] == 3 and overlapping["verdict"] == "overlapping"
    high_dim = diagnostics.cluster_separation(*clouds(np.eye(3, 16) * 10, 1.0))
    assert high_dim["n_clusters"] == 3 and high_dim["spreads"] == pytest.approx([1, 1, 1], rel=0.05)


def test_sampled_latents_follow_the_posterior():
    z_mean = np.array([[1.0, -2.0], [0.0, 3.0]])
    z_log_var = np.log(np.array([[0.25, 0.25], [4.0, 4.0]]))
    points, labels = diagnostics.sample_latents(z_mean, z_log_var, 20000, seed=1)
    assert np.allclose(points[labels == 0].mean(0), z_mean[0], atol=0.02)
    assert np.allclose(points[labels == 1].std(0), [2.0, 2.0], rtol=0.03)
    again, _ = diagnostics.sample_latents(z_mean, z_log_var, 20000, seed=1)
    assert np.array_equal(points, again)


def test_dead_units_on_a_tiny_encoder():
    inputs = keras.Input((2, 2, 1))
    hidden = keras.layers.Dense(4, activation="relu", name="dense")(keras.layers.Flatten()(inputs))
    encoder = keras.Model(inputs, [keras.layers.Dense(2, name="z_mean")(hidden)])
    kernel = np.zeros((4, 4), np.float32)
    kernel[:, 0] = 1.0  # unit 0 follows the (positive) pixel sum: alive
    kernel[:, 1] = -1.0  # unit 1: negative for positive images: dead
    encoder.get_layer("dense").set_weights([kernel, np.array([0.0, 0.0, -1.0, 0.5], np.float32)])
    images = np.random.default_rng(0).uniform(0.1, 1.0, (5, 2, 2, 1)).astype(np.float32)
    # unit 2 has zero weights and bias -1: dead; unit 3 bias 0.5: alive
    assert diagnostics.dead_units(encoder, images) == (2, 4)


# ------------------------------------------------------------------------------- the report


def test_latent_report_of_a_model_on_its_sources():
    vae = model.build_vae(16, 2, seed=3)
    sources = np.random.default_rng(2).random((3, 16, 16, 1)).astype(np.float32)
    report = diagnostics.latent_report(vae.encoder, sources, n_samples=50, seed=1)
    z_mean, z_log_var = model.encode(vae.encoder, sources)
    assert report["z_mean"].dtype == np.float64 and np.array_equal(report["z_mean"], z_mean)
    assert report["points"].shape == (150, 2) and report["n_sources"] == 3
    points, _ = diagnostics.sample_latents(z_mean, z_log_var, 50, seed=1)
    assert np.array_equal(report["points"], points)
    variance = np.exp(report["z_log_var"])
    kl = 0.5 * (variance + report["z_mean"] ** 2 - 1 - np.log(variance)).sum(1)
    assert report["kl"].dtype == np.float64 and np.allclose(report["kl"], kl, rtol=1e-12)
    assert (report["dead"], report["units"]) == diagnostics.dead_units(vae.encoder, sources)
    text = diagnostics.describe_latents(report, ["a", "b", "c"])
    assert f"clusters: {report['n_clusters']} for 3 sources ({report['verdict']})" in text
    assert f"dead encoder units (output <= 0 for every source): {report['dead']}/16" in text
