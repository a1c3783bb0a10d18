"""The overlay experiment's tools: batch sampler, cluster checks, fidelity score, overlay generation."""
from pathlib import Path

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vae_overlay import model, overlay

ROOT = Path(__file__).resolve().parents[1]
TRIO = [ROOT / "data" / "synthetic" / f"{name}.png" for name in ("crack_1", "crack_2", "pore")]


# ----------------------------------------------------------------------------- batch sampler

def check_epoch(batches, n_sources, copies, batch_size):
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(n_sources * copies))  # every copy exactly once
    for batch in batches:
        assert len(batch) <= batch_size
        assert set((batch // copies).tolist()) == set(range(n_sources))  # every source in every batch
    sizes = [len(b) for b in batches]
    assert len(batches) == -(-n_sources * copies // batch_size) and max(sizes) - min(sizes) <= 1


def test_mixed_batches_paper_setting():
    sampler = overlay.mixed_batches(3, 500, 10)
    epoch = sampler(0, np.random.default_rng([42, 0]))
    check_epoch(epoch, 3, 500, 10)
    assert {len(b) for b in epoch} == {10}
    counts = np.array([np.bincount(b // 500, minlength=3) for b in epoch])
    assert counts.min() >= 1 and len({tuple(c) for c in counts}) > 3  # compositions vary beyond 4/3/3


@settings(max_examples=60, deadline=None)
@given(n_sources=st.integers(1, 6), copies=st.integers(1, 40), extra=st.integers(0, 12),
       seed=st.integers(0, 2**32 - 1))
def test_mixed_batches_guarantee(n_sources, copies, extra, seed):
    batch_size = n_sources + extra
    sampler = overlay.mixed_batches(n_sources, copies, batch_size)
    check_epoch(sampler(3, np.random.default_rng(seed)), n_sources, copies, batch_size)


def test_mixed_batches_deterministic_by_rng_and_varying_by_epoch():
    sampler = overlay.mixed_batches(3, 50, 10)
    first = sampler(0, np.random.default_rng([7, 0]))
    again = sampler(0, np.random.default_rng([7, 0]))
    other = sampler(1, np.random.default_rng([7, 1]))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_mixed_batches_refuses_too_small_batches():
    with pytest.raises(ValueError, match="cannot hold all 3 sources"):
        overlay.mixed_batches(3, 10, 2)


def test_make_copies_layout_matches_the_sampler():
    images = np.arange(3, dtype=np.float32)[:, None, None, None] * np.ones((3, 4, 4, 1), np.float32)
    copies, labels = overlay.make_copies(images, 5)
    assert copies.shape == (15, 4, 4, 1) and labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert np.array_equal(copies[:, 0, 0, 0], labels.astype(np.float32))  # index // copies is the source


# ----------------------------------------------------------------------------- fidelity

def hand_made():
    """A flat surface with two defect masks and a pore-like third; threshold 0.1."""
    background = np.full((10, 10), 0.6)
    masks = np.zeros((3, 10, 10), bool)
    masks[0, 1, 1:9] = True  # a horizontal crack: 8 px
    masks[1, 3:9, 7] = True  # a vertical crack: 6 px
    masks[2, 7:9, 1:3] = True  # a pore: 4 px
    return background, masks


def test_fidelity_perfect_overlay_scores_one():
    background, masks = hand_made()
    perfect = np.where(masks.any(axis=0), 0.2, background)
    result = overlay.fidelity(perfect, masks, background, threshold=0.1)
    assert result["recall"].tolist() == [1.0, 1.0, 1.0]
    assert result["spurious"] == 0.0 and result["score"] == 1.0


def test_fidelity_empty_overlay_scores_zero():
    background, masks = hand_made()
    result = overlay.fidelity(background.copy(), masks, background, threshold=0.1)
    assert result["recall"].tolist() == [0.0, 0.0, 0.0] and result["spurious"] == 0.0 and result["score"] == 0.0


def test_fidelity_spurious_only_scores_zero():
    background, masks = hand_made()
    image = background.copy()
    image[5, 2:5] = 0.0  # 3 dark pixels at least 2 px from every mask
    result = overlay.fidelity(image, masks, background, threshold=0.1)
    assert result["mean_recall"] == 0.0 and result["spurious"] == 1.0 and result["score"] == 0.0


def test_fidelity_partial_case_with_known_numbers():
    background, masks = hand_made()
    image = background.copy()
    image[masks[0]] = 0.45  # darkened by 0.15 > 0.1: shown
    image[masks[1]] = 0.55  # darkened by 0.05 < 0.1: not shown
    image[7, 1] = 0.3  # one of the pore's 4 pixels
    image[5, 2:5] = 0.0  # 3 spurious pixels
    image[2, 4] = 0.0  # next to crack 0: inside the 1 px tolerance, not spurious
    result = overlay.fidelity(image, masks, background, threshold=0.1)
    assert np.allclose(result["recall"], [1.0, 0.0, 0.25])
    shown = 8 + 1 + 3 + 1
    assert result["spurious"] == pytest.approx(3 / shown)
    assert result["score"] == pytest.approx((1.25 / 3) * (1 - 3 / shown))
    assert result["min_recall"] == 0.0
    strict = overlay.fidelity(image, masks, background, threshold=0.1, tolerance=0)
    assert strict["spurious"] == pytest.approx(4 / shown)


def test_background_and_threshold_recover_the_shared_surface():
    rng = np.random.default_rng(0)
    surface = rng.uniform(0.4, 0.7, (12, 12))
    masks = np.pad(hand_made()[1], ((0, 0), (0, 2), (0, 2)))
    depths = (0.2, 0.3, 0.5)
    sources = np.stack([np.where(m, surface - d, surface) for m, d in zip(masks, depths)])
    estimate = overlay.background_estimate(sources[..., None], masks)
    assert np.allclose(estimate, surface)
    # median darkening over all 18 mask pixels: 8 at 0.2, 6 at 0.3, 4 at 0.5 -> 0.3; half of it
    assert overlay.defect_threshold(sources, masks) == pytest.approx(0.15)
    assert overlay.fidelity(overlay.pixel_overlay(sources, "darkest"), masks, estimate, 0.15)["score"] == 1.0
    mean = overlay.fidelity(overlay.pixel_overlay(sources, "mean"), masks, estimate, 0.15)
    assert mean["recall"].tolist() == [0.0, 0.0, 1.0]  # only the pore's 0.5 / 3 > 0.15


def test_fidelity_on_the_committed_trio_ranks_compositing_above_the_mean():
    sources, masks, names = overlay.load_sources(TRIO, 64)
    assert names == ["crack_1", "crack_2", "pore"] and masks.shape == (3, 64, 64)
    background = overlay.background_estimate(sources, masks)
    threshold = overlay.defect_threshold(sources, masks, background)
    assert 0.02 < threshold < 0.2
    darkest = overlay.fidelity(overlay.pixel_overlay(sources, "darkest"), masks, background, threshold)
    mean = overlay.fidelity(overlay.pixel_overlay(sources, "mean"), masks, background, threshold)
    assert darkest["min_recall"] > 0.7 and darkest["spurious"] < 0.05
    assert darkest["score"] > mean["score"] + 0.2
    for i in range(3):  # a source scored against its own mask shows its defect and little else
        alone = overlay.fidelity(sources[i], masks[i:i + 1], background, threshold)
        assert alone["score"] > 0.7


def test_load_sources_without_masks_and_with_missing_files(tmp_path):
    for name in ("a", "b"):
        Image.fromarray(np.full((20, 30), 128, np.uint8)).save(tmp_path / f"{name}.png")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "a_mask.png")
    images, masks, names = overlay.load_sources([tmp_path / "a.png", tmp_path / "b.png"], 16)
    assert images.shape == (2, 16, 16, 1) and masks is None and names == ["a", "b"]
    with pytest.raises(FileNotFoundError, match="OVERLAY_IMAGES"):
        overlay.load_sources([tmp_path / "a.png", tmp_path / "nope.png"], 16)
    with pytest.raises(ValueError, match="at least two"):
        overlay.load_sources([tmp_path / "a.png"], 16)


# ----------------------------------------------------------------------------- cluster checks

def clouds(centres, spread, n=400, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.asarray(centres, float)
    points = np.concatenate([c + spread * rng.standard_normal((n, centres.shape[1])) for c in centres])
    return points, np.repeat(np.arange(len(centres)), n)


def test_cluster_separation_separated_collapsed_partial_and_overlapping():
    separated = overlay.cluster_separation(*clouds([[0, 0], [10, 0], [0, 10]], 1.0))
    assert separated["n_clusters"] == 3 and not separated["collapsed"] and separated["verdict"] == "separated"
    assert separated["min_ratio"] == pytest.approx(10 / np.sqrt(2), rel=0.1)
    collapsed = overlay.cluster_separation(*clouds([[0, 0], [0.01, 0], [0, 0.01]], 1.0))
    assert collapsed["n_clusters"] == 1 and collapsed["collapsed"] and collapsed["min_ratio"] < 0.1
    assert collapsed["verdict"] == "collapsed"
    partial = overlay.cluster_separation(*clouds([[0, 0], [1, 0], [20, 0]], 1.0))  # ratio 0.7 merges two
    assert partial["n_clusters"] == 2 and partial["collapsed"]
    overlapping = overlay.cluster_separation(*clouds([[0, 0], [3, 0], [0, 3]], 1.0))  # ratio ~2.1
    assert overlapping["n_clusters"] == 3 and overlapping["verdict"] == "overlapping"
    high_dim = overlay.cluster_separation(*clouds(np.eye(3, 16) * 10, 1.0))
    assert high_dim["n_clusters"] == 3 and high_dim["spreads"] == pytest.approx([1, 1, 1], rel=0.05)


def test_sampled_latents_follow_the_posterior():
    z_mean = np.array([[1.0, -2.0], [0.0, 3.0]])
    z_log_var = np.log(np.array([[0.25, 0.25], [4.0, 4.0]]))
    points, labels = overlay.sample_latents(z_mean, z_log_var, 20000, seed=1)
    assert np.allclose(points[labels == 0].mean(0), z_mean[0], atol=0.02)
    assert np.allclose(points[labels == 1].std(0), [2.0, 2.0], rtol=0.03)
    again, _ = overlay.sample_latents(z_mean, z_log_var, 20000, seed=1)
    assert np.array_equal(points, again)


def test_kl_per_source_closed_form():
    assert overlay.kl_per_source([[0.0, 0.0]], [[0.0, 0.0]]).tolist() == [0.0]
    # one dimension with mean 2 and variance 0.5: 0.5 * (0.5 + 4 - 1 - ln 0.5)
    value = overlay.kl_per_source([[2.0]], [[np.log(0.5)]])[0]
    assert value == pytest.approx(0.5 * (0.5 + 4 - 1 - np.log(0.5)))


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
    assert overlay.dead_units(encoder, images) == (2, 4)


# ----------------------------------------------------------------------------- overlay methods and generation

def test_overlay_latent_methods_agree_with_their_definitions():
    z = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    z_bg = np.array([1.0, 1.0])
    assert np.allclose(overlay.overlay_latent(z, "sum"), [4.5, 1.5])
    assert np.allclose(overlay.overlay_latent(z, "mean"), [1.5, 0.5])
    assert np.allclose(overlay.overlay_latent(z, "offset", z_bg), z_bg + (z - z_bg).sum(0))
    assert np.allclose(overlay.overlay_latent(z, "offset"), overlay.overlay_latent(z, "sum"))
    assert np.allclose(overlay.overlay_latent(z, "weighted", np.zeros(2), 1 / 3), overlay.overlay_latent(z, "mean"))
    with pytest.raises(ValueError, match="method"):
        overlay.overlay_latent(z, "product")


def tiny_vae(size=8, latent_dim=2, seed=0):
    return model.build_vae(size, latent_dim, seed=seed)


def test_generate_overlays_shapes_determinism_and_definition():
    vae = tiny_vae()
    images = np.random.default_rng(1).uniform(0, 1, (6, 8, 8, 1)).astype(np.float32)
    overlays, sources = overlay.generate_overlays(vae.encoder, vae.decoder, images, 7, seed=3)
    assert overlays.shape == (7, 8, 8, 1) and overlays.dtype == np.float32 and sources.shape == (7, 2)
    assert (sources[:, 0] < sources[:, 1]).all() and sources.min() >= 0 and sources.max() < 6
    again, same = overlay.generate_overlays(vae.encoder, vae.decoder, images, 7, seed=3)
    assert np.array_equal(overlays, again) and np.array_equal(sources, same)
    other, _ = overlay.generate_overlays(vae.encoder, vae.decoder, images, 7, seed=4)
    assert not np.array_equal(overlays, other)
    z_mean = overlay.posterior(vae.encoder, images)[0]
    expected = overlay.decode(vae.decoder, z_mean[sources[0]].sum(0))
    assert np.allclose(overlays[0], expected[0], atol=1e-6)
    triples, combos = overlay.generate_overlays(vae.encoder, vae.decoder, images, 4, seed=3, pairs=False,
                                                method="offset")
    assert triples.shape == (4, 8, 8, 1) and combos.shape == (4, 3)
    z_bg = z_mean.mean(0)
    expected = overlay.decode(vae.decoder, z_bg + (z_mean[combos[1]] - z_bg).sum(0))
    assert np.allclose(triples[1], expected[0], atol=1e-6)
    sampled, _ = overlay.generate_overlays(vae.encoder, vae.decoder, images, 3, seed=3, sample=True)
    assert sampled.shape == (3, 8, 8, 1) and not np.allclose(sampled, overlays[:3])
    composite, pairs = overlay.generate_overlays(vae.encoder, vae.decoder, images, 5, seed=3, method="composite")
    assert np.array_equal(pairs, sources[:5])  # same seed, same draws
    expected = overlay.decode(vae.decoder, z_mean[pairs[2]]).min(axis=0)
    assert np.allclose(composite[2], expected, atol=1e-6)
    with pytest.raises(ValueError, match="method"):
        overlay.generate_overlays(vae.encoder, vae.decoder, images, 2, method="product")


def test_identification_gain_and_table_format():
    same = np.full((3, 4, 4), 0.5)
    assert np.allclose(overlay.identification_gain(same), 0.0)
    two = np.stack([np.full((2, 2), 0.2), np.full((2, 2), 0.6)])  # mean 0.4
    expected = 4 * (0.2 * np.log(0.2 / 0.4) + 0.8 * np.log(0.8 / 0.6))
    assert overlay.identification_gain(two)[0] == pytest.approx(expected)
    text = overlay.format_table(["method", "score"], [["pixel mean", 0.4321], ["sum", 1]])
    assert text.splitlines() == ["method      score", "----------  -----", "pixel mean   0.43", "sum             1"]


def test_subsets_lists_pairs_then_triples():
    assert overlay.subsets(3) == [(0, 1), (0, 2), (1, 2), (0, 1, 2)]
    assert overlay.subsets(2) == [(0, 1)]


# ----------------------------------------------------------------------------- variants and training

def test_paper_variant_is_the_model_modules_vae():
    ours = overlay.build_variant(overlay.PAPER, 16, 2, seed=5)
    theirs = model.build_vae(16, 2, seed=5)
    assert [layer.name for layer in ours.encoder.layers] == [layer.name for layer in theirs.encoder.layers]
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        assert np.array_equal(a, b)


def test_variants_build_what_they_say():
    images = np.random.default_rng(0).uniform(0, 1, (4, 16, 16, 1)).astype(np.float32)
    vae = overlay.build_variant(overlay.VARIANTS["standardised + leaky"], 16, 3, images)
    assert vae.encoder.get_layer("dense").get_config()["activation"] == "leaky_relu"
    standardized = keras.Model(vae.encoder.input, vae.encoder.get_layer("standardize").output)(images)
    assert np.allclose(np.asarray(standardized).mean(0), 0, atol=1e-5)
    wide = overlay.build_variant(overlay.VARIANTS["Dense(64)"], 16, 2)
    assert wide.encoder.get_layer("dense").units == 64
    init = overlay.build_variant(overlay.VARIANTS["log-var init -6"], 16, 2)
    assert np.allclose(init.encoder.get_layer("z_log_var").get_weights()[1], -6.0)
    assert overlay.VARIANTS["KL warm-up"].describe() == "kl_warmup_epochs=10"


@pytest.mark.slow
def test_train_variant_matches_train_vae_and_caches(tmp_path):
    sources = np.random.default_rng(2).uniform(0, 1, (3, 8, 8, 1)).astype(np.float32)
    copies, _ = overlay.make_copies(sources, 4)
    sampler = overlay.mixed_batches(3, 4, 6)
    ours, info = overlay.train_variant(copies, sampler, overlay.PAPER, epochs=2, seed=9, path=tmp_path / "m.keras")
    theirs, history = model.train_vae(copies, tmp_path / "run", epochs=2, batch_size=6, seed=9,
                                      batches=sampler, verbose=0)
    assert np.allclose(info["history"]["kl_loss"], np.array(history["kl_loss"]), rtol=1e-4)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        assert np.allclose(a, b, atol=1e-5)
    loaded, again = overlay.train_variant(copies, sampler, overlay.PAPER, epochs=2, seed=9, path=tmp_path / "m.keras")
    assert again["seconds"] == info["seconds"]  # loaded, not retrained
    assert np.allclose(loaded.decoder(np.zeros((1, 2), np.float32)), ours.decoder(np.zeros((1, 2), np.float32)))
    warm, record = overlay.train_variant(copies, sampler, overlay.VARIANTS["KL warm-up"], epochs=1, seed=9)
    assert len(record["history"]["kl_loss"]) == 1
    fixed, _ = overlay.train_variant(copies, sampler, overlay.VARIANTS["standardised + leaky"], epochs=1, seed=9,
                                     path=tmp_path / "fixed.keras")
    reloaded = model.load_vae(tmp_path / "fixed.keras")
    assert np.allclose(overlay.posterior(reloaded.encoder, sources)[0], overlay.posterior(fixed.encoder, sources)[0],
                       atol=1e-6)
