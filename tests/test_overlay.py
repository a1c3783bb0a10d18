"""The overlay experiment: mixed batches, variants trained through train_vae, fidelity, overlays,
and notebook 05's drivers (overlay_experiment) on small images and one or two epochs."""

from pathlib import Path

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vae_overlay import latent, model, overlay, overlay_methods, report, runs, train
from vae_overlay import overlay_experiment as experiment

ROOT = Path(__file__).resolve().parents[1]
TRIO = [ROOT / "data" / "synthetic" / f"{name}.png" for name in ("crack_1", "crack_2", "pore")]


# ----------------------------------------------------------------------------- batch sampler


def check_epoch(batches, n_sources, copies, batch_size):
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(n_sources * copies))  # every copy exactly once
    for batch in batches:
        assert len(batch) <= batch_size
        # every source in every batch
        assert set((batch // copies).tolist()) == set(range(n_sources))
    sizes = [len(b) for b in batches]
    assert len(batches) == -(-n_sources * copies // batch_size) and max(sizes) - min(sizes) <= 1


def test_mixed_batches_paper_setting():
    sampler = train.mixed_batches(3, 500, 10)
    epoch = sampler(0, np.random.default_rng([42, 0]))
    check_epoch(epoch, 3, 500, 10)
    assert {len(b) for b in epoch} == {10}
    counts = np.array([np.bincount(b // 500, minlength=3) for b in epoch])
    # compositions vary beyond 4/3/3
    assert counts.min() >= 1 and len({tuple(c) for c in counts}) > 3


@settings(max_examples=60, deadline=None)
@given(
    n_sources=st.integers(1, 6),
    copies=st.integers(1, 40),
    extra=st.integers(0, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_mixed_batches_guarantee(n_sources, copies, extra, seed):
    batch_size = n_sources + extra
    sampler = train.mixed_batches(n_sources, copies, batch_size)
    check_epoch(sampler(3, np.random.default_rng(seed)), n_sources, copies, batch_size)


def test_mixed_batches_deterministic_by_rng_and_varying_by_epoch():
    sampler = train.mixed_batches(3, 50, 10)
    first = sampler(0, np.random.default_rng([7, 0]))
    again = sampler(0, np.random.default_rng([7, 0]))
    other = sampler(1, np.random.default_rng([7, 1]))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_mixed_batches_refuses_too_small_batches():
    with pytest.raises(ValueError, match="cannot hold all 3 sources"):
        train.mixed_batches(3, 10, 2)


def test_make_copies_layout_matches_the_sampler():
    images = np.arange(3, dtype=np.float32)[:, None, None, None] * np.ones((3, 4, 4, 1), np.float32)
    copies, labels = overlay.make_copies(images, 5)
    assert copies.shape == (15, 4, 4, 1) and labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    # index // copies is the source
    assert np.array_equal(copies[:, 0, 0, 0], labels.astype(np.float32))


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
    assert (
        result["recall"].tolist() == [0.0, 0.0, 0.0]
        and result["spurious"] == 0.0
        and result["score"] == 0.0
    )


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
    darkest = overlay_methods.pixel_overlay(sources, "darkest")
    assert overlay.fidelity(darkest, masks, estimate, 0.15)["score"] == 1.0
    mean = overlay.fidelity(overlay_methods.pixel_overlay(sources, "mean"), masks, estimate, 0.15)
    assert mean["recall"].tolist() == [0.0, 0.0, 1.0]  # only the pore's 0.5 / 3 > 0.15


def test_fidelity_on_the_committed_trio_ranks_compositing_above_the_mean():
    sources, masks, names = overlay.load_sources(TRIO, 64)
    assert names == ["crack_1", "crack_2", "pore"] and masks.shape == (3, 64, 64)
    background = overlay.background_estimate(sources, masks)
    threshold = overlay.defect_threshold(sources, masks, background)
    assert 0.02 < threshold < 0.2
    darkest = overlay.fidelity(
        overlay_methods.pixel_overlay(sources, "darkest"), masks, background, threshold
    )
    mean = overlay.fidelity(
        overlay_methods.pixel_overlay(sources, "mean"), masks, background, threshold
    )
    assert darkest["min_recall"] > 0.7 and darkest["spurious"] < 0.05
    assert darkest["score"] > mean["score"] + 0.2
    for i in range(3):  # a source scored against its own mask shows its defect and little else
        alone = overlay.fidelity(sources[i], masks[i : i + 1], background, threshold)
        assert alone["score"] > 0.7


def test_load_sources_without_masks_and_with_missing_files(tmp_path):
    for name in ("a", "b"):
        Image.fromarray(np.full((20, 30), 128, np.uint8)).save(tmp_path / f"{name}.png")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "a_mask.png")
    images, masks, names = overlay.load_sources([tmp_path / "a.png", tmp_path / "b.png"], 16)
    assert images.shape == (2, 16, 16, 1) and masks is None and names == ["a", "b"]
    with pytest.raises(overlay.SourcesUnusable, match=r"nope\.png does not exist"):
        overlay.load_sources([tmp_path / "a.png", tmp_path / "nope.png"], 16)
    with pytest.raises(ValueError, match="at least two"):
        overlay.load_sources([tmp_path / "a.png"], 16)


# ------------------------------------------------------------------- overlay methods and generation


def test_overlay_latent_methods_agree_with_their_definitions():
    z = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    z_bg = np.array([1.0, 1.0])
    assert np.allclose(overlay_methods.overlay_latent(z, "sum"), [4.5, 1.5])
    assert np.allclose(overlay_methods.overlay_latent(z, "mean"), [1.5, 0.5])
    assert np.allclose(overlay_methods.overlay_latent(z, "offset", z_bg), z_bg + (z - z_bg).sum(0))
    assert np.allclose(
        overlay_methods.overlay_latent(z, "offset"), overlay_methods.overlay_latent(z, "sum")
    )
    assert np.allclose(
        overlay_methods.overlay_latent(z, "weighted", np.zeros(2), 1 / 3),
        overlay_methods.overlay_latent(z, "mean"),
    )
    with pytest.raises(ValueError, match="method"):
        overlay_methods.overlay_latent(z, "product")


def tiny_vae(size=8, latent_dim=2, seed=0):
    return model.build_vae(size, latent_dim, seed=seed)


def test_generate_overlays_shapes_determinism_and_definition():
    vae = tiny_vae()
    images = np.random.default_rng(1).uniform(0, 1, (6, 8, 8, 1)).astype(np.float32)
    overlays, sources = overlay.generate_overlays(vae.encoder, vae.decoder, images, 7, seed=3)
    assert (
        overlays.shape == (7, 8, 8, 1) and overlays.dtype == np.float32 and sources.shape == (7, 2)
    )
    assert (sources[:, 0] < sources[:, 1]).all() and sources.min() >= 0 and sources.max() < 6
    again, same = overlay.generate_overlays(vae.encoder, vae.decoder, images, 7, seed=3)
    assert np.array_equal(overlays, again) and np.array_equal(sources, same)
    other, _ = overlay.generate_overlays(vae.encoder, vae.decoder, images, 7, seed=4)
    assert not np.array_equal(overlays, other)
    z_mean = model.encode(vae.encoder, images, dtype=np.float64)[0]
    expected = latent.decode_batched(vae.decoder, z_mean[sources[0]].sum(0), dtype=np.float32)
    assert np.allclose(overlays[0], expected[0], atol=1e-6)
    triples, combos = overlay.generate_overlays(
        vae.encoder, vae.decoder, images, 4, seed=3, pairs=False, method="offset"
    )
    assert triples.shape == (4, 8, 8, 1) and combos.shape == (4, 3)
    z_bg = z_mean.mean(0)
    offset = z_bg + (z_mean[combos[1]] - z_bg).sum(0)
    expected = latent.decode_batched(vae.decoder, offset, dtype=np.float32)
    assert np.allclose(triples[1], expected[0], atol=1e-6)
    sampled, _ = overlay.generate_overlays(vae.encoder, vae.decoder, images, 3, seed=3, sample=True)
    assert sampled.shape == (3, 8, 8, 1) and not np.allclose(sampled, overlays[:3])
    composite, pairs = overlay.generate_overlays(
        vae.encoder, vae.decoder, images, 5, seed=3, method="composite"
    )
    assert np.array_equal(pairs, sources[:5])  # same seed, same draws
    expected = latent.decode_batched(vae.decoder, z_mean[pairs[2]], dtype=np.float32).min(axis=0)
    assert np.allclose(composite[2], expected, atol=1e-6)
    with pytest.raises(ValueError, match="method"):
        overlay.generate_overlays(vae.encoder, vae.decoder, images, 2, method="product")


def test_identification_gain():
    same = np.full((3, 4, 4), 0.5)
    assert np.allclose(overlay.identification_gain(same), 0.0)
    two = np.stack([np.full((2, 2), 0.2), np.full((2, 2), 0.6)])  # mean 0.4
    expected = 4 * (0.2 * np.log(0.2 / 0.4) + 0.8 * np.log(0.8 / 0.6))
    assert overlay.identification_gain(two)[0] == pytest.approx(expected)


def test_subsets_lists_pairs_then_triples():
    assert overlay.subsets(3) == [(0, 1), (0, 2), (1, 2), (0, 1, 2)]
    assert overlay.subsets(2) == [(0, 1)]


# -------------------------------------------------------------- variants, trained through train_vae


def test_variants_say_how_train_vae_trains_them():
    assert overlay.PAPER.describe() == "paper's recipe" and overlay.PAPER.model_options() == {}
    assert overlay.PAPER.kl_weight() == train.KLWeight() and overlay.PAPER.optimizer == "rmsprop"
    assert all(variant.name == key for key, variant in overlay.VARIANTS.items())
    assert overlay.VARIANTS["standardised + leaky"].model_options() == {
        "activation": "leaky_relu",
        "standardize_input": True,
    }
    assert overlay.VARIANTS["Dense(64)"].model_options() == {"dense_units": 64}
    assert overlay.VARIANTS["log-var init -6"].model_options() == {"log_var_bias": -6.0}
    assert overlay.VARIANTS["KL warm-up"].kl_weight() == train.KLWeight(warmup_epochs=10)
    assert overlay.VARIANTS["KL warm-up"].describe() == "kl_warmup_epochs=10"
    assert overlay.VARIANTS["beta 0.5"].kl_weight() == train.KLWeight(beta=0.5)
    assert overlay.VARIANTS["free bits"].kl_weight() == train.KLWeight(free_bits=0.5)
    assert overlay.VARIANTS["Adam 1e-3"].describe() == "optimizer=adam, learning_rate=0.001"
    assert overlay.VARIANTS["RMSprop 5e-4"].describe() == "learning_rate=0.0005"
    assert overlay.VARIANTS["batch 30"].batch_size == 30


@pytest.mark.slow
def test_train_variant_is_train_vae_with_mixed_batches_and_its_caching_rule(tmp_path):
    sources = np.random.default_rng(2).uniform(0, 1, (3, 16, 16, 1)).astype(np.float32)
    ours, history = overlay.train_variant(
        sources, 4, overlay.PAPER, tmp_path / "a", epochs=2, seed=9
    )
    copies, _ = overlay.make_copies(sources, 4)
    theirs, expected = train.train_vae(
        copies,
        tmp_path / "b",
        epochs=2,
        batch_size=10,
        seed=9,
        verbose=0,
        batches=train.mixed_batches(3, 4, 10),
    )
    assert history == expected
    assert all(np.array_equal(a, b) for a, b in zip(ours.get_weights(), theirs.get_weights()))
    record = train.read_history(tmp_path / "a" / train.HISTORY_FILE)
    assert record["finished"] and record["settings"]["batches"] == "custom: mixed_batches(3, 4, 10)"
    # finished: loaded
    overlay.train_variant(sources, 4, overlay.PAPER, tmp_path / "a", epochs=2, seed=9)
    assert (
        train.read_history(tmp_path / "a" / train.HISTORY_FILE)["epoch_seconds"]
        == record["epoch_seconds"]
    )
    with pytest.raises(runs.RunMismatch, match="kl_weight"):
        overlay.train_variant(
            sources, 4, overlay.VARIANTS["beta 0.5"], tmp_path / "a", epochs=2, seed=9
        )


@pytest.mark.slow
def test_variants_train_what_they_say(tmp_path):
    sources = np.random.default_rng(3).uniform(0, 1, (3, 16, 16, 1)).astype(np.float32)
    fixed, _ = overlay.train_variant(
        sources, 2, overlay.VARIANTS["standardised + leaky"], tmp_path / "fixed", epochs=1
    )
    assert fixed.encoder.get_layer("dense").get_config()["activation"] == "leaky_relu"
    standardized = keras.Model(fixed.encoder.input, fixed.encoder.get_layer("standardize").output)(
        sources
    )
    assert np.allclose(np.asarray(standardized).mean(0), 0, atol=1e-5)
    settings = train.read_history(tmp_path / "fixed" / train.HISTORY_FILE)["settings"]
    assert (
        settings["model"] == {"activation": "leaky_relu", "standardize_input": True}
        and "kl_weight" not in settings
    )
    reloaded = model.load_vae(tmp_path / "fixed" / train.MODEL_FILE)
    reloaded_means = model.encode_mean(reloaded, sources)
    assert np.allclose(reloaded_means, model.encode_mean(fixed, sources), atol=1e-6)
    for name, key, value in [
        ("free bits", "kl_weight", {"beta": 1.0, "warmup_epochs": 0.0, "free_bits": 0.5}),
        ("Adam 1e-3", "optimizer", "adam"),
    ]:
        vae, history = overlay.train_variant(
            sources, 2, overlay.VARIANTS[name], tmp_path / name, epochs=1
        )
        assert train.read_history(tmp_path / name / train.HISTORY_FILE)["settings"][key] == value
        assert np.isfinite(history["loss"]).all()


# ---------------------------------------------------------------------------- notebook 05's drivers


@pytest.fixture(scope="module")
def trio_runs(tmp_path_factory):
    """The committed trio at 32 px, and the paper's recipe and the fixed variant trained 1 epoch on
    4 copies."""
    setup = experiment.prepare(
        TRIO, 32, tmp_path_factory.mktemp("artifacts"), "synthetic", epochs=1, n_samples=30
    )
    paper = experiment.train_and_check(setup, "paper", 42, 4)
    fixed = experiment.train_and_check(setup, "standardised + leaky", 42, 4)
    return setup, paper, fixed


@pytest.mark.slow
def test_prepare_and_train_and_check(trio_runs):
    setup, paper, fixed = trio_runs
    assert setup.names == ["crack_1", "crack_2", "pore"] and setup.k == 3 and setup.have_masks
    assert setup.combos == [(0, 1), (0, 2), (1, 2), (0, 1, 2)]
    assert setup.combo_name((0, 2)) == "crack_1+pore" and setup.combo_name((0, 1, 2)) == "all"
    assert (
        setup.folder.name == f"overlay-{runs.fingerprint(setup.sources)[:8]}"
        and setup.folder.parent.name == "synthetic"
    )
    assert 0 < setup.threshold < 0.3 and setup.background.shape == (32, 32)
    # 12 images, batch 10
    assert paper["steps"] == 2 and len(paper["history"]["loss"]) == 1 and paper["seconds"] > 0
    assert paper["report"]["n_sources"] == 3 and paper["report"]["points"].shape == (90, 2)
    assert (
        fixed["name"] == "standardised + leaky"
        and fixed["latent_dim"] == 2
        and fixed["copies"] == 4
    )
    folder = experiment.run_folder(setup, overlay.PAPER, 42, 4, 2)
    assert (folder / train.MODEL_FILE).is_file()
    others = {
        experiment.run_folder(setup, overlay.VARIANTS["beta 0.5"], 42, 4, 2),
        experiment.run_folder(setup, overlay.PAPER, 43, 4, 2),
        experiment.run_folder(setup, overlay.PAPER, 42, 4, 3),
        folder,
    }
    assert len(others) == 4  # every configuration has its own folder
    # the same configuration: loaded
    again = experiment.train_and_check(setup, overlay.Variant(), 42, 4)
    assert again["seconds"] == paper["seconds"]
    assert np.allclose(again["report"]["z_mean"], paper["report"]["z_mean"], atol=1e-6)


@pytest.mark.slow
def test_self_fidelity_and_the_latent_sum_follow_their_definitions(trio_runs):
    setup, _, fixed = trio_runs
    decoder, z_mean = fixed["vae"].decoder, fixed["report"]["z_mean"]
    decoded = latent.decode_batched(decoder, z_mean, dtype=np.float32)
    expected = np.mean(
        [
            overlay.fidelity(decoded[i], setup.masks[i : i + 1], setup.background, setup.threshold)[
                "score"
            ]
            for i in range(3)
        ]
    )
    assert experiment.self_fidelity(setup, fixed) == pytest.approx(expected)
    image = latent.decode_batched(decoder, z_mean[[0, 2]].sum(0), dtype=np.float32)[0]
    expected = overlay.fidelity(image, setup.masks[[0, 2]], setup.background, setup.threshold)[
        "score"
    ]
    scored = experiment.evaluate(setup, experiment.method_overlay(setup, fixed, "sum"))
    assert scored["results"][1]["score"] == pytest.approx(expected)


@pytest.mark.slow
def test_overlay_methods_and_their_fidelity_table(trio_runs):
    setup, paper, fixed = trio_runs
    weights = experiment.weight_scores(setup, fixed, [0.5, 2.0])
    assert list(weights) == [0.5, 2.0] and all(0 <= score <= 1 for score in weights.values())
    methods = experiment.overlay_methods(setup, paper, fixed, 0.5)
    rows = experiment.method_rows(setup, methods)
    assert [row["method"] for row in rows] == list(methods) and len(rows) == 10
    assert rows[0]["method"] == "pixel mean (baseline)" and "fixed: weighted, w=0.5" in methods
    assert list(rows[0]) == [
        "method",
        "crack_1+crack_2",
        "crack_1+pore",
        "crack_2+pore",
        "all",
        "mean",
        "rec crack_1",
        "rec crack_2",
        "rec pore",
        "spurious",
        "counts",
    ]
    by_name = {row["method"]: row for row in rows}
    darkest = overlay.fidelity(
        overlay_methods.pixel_overlay(setup.sources, "darkest"),
        setup.masks,
        setup.background,
        setup.threshold,
    )
    assert by_name["pixel compositing (darkest)"]["all"] == pytest.approx(darkest["score"])
    assert by_name["pixel compositing (darkest)"]["all"] > by_name["pixel mean (baseline)"]["all"]
    baseline = by_name["pixel mean (baseline)"]["mean"]
    for row in rows:
        assert all(0 <= row[key] <= 1 for key in row if key not in ("method", "counts"))
        run = methods[row["method"]]["run"]
        assert row["counts"] == (
            "-"
            if run is None
            else "yes"
            if not run["report"]["collapsed"] and row["mean"] > baseline
            else "no"
        )
    decoder, z = fixed["vae"].decoder, fixed["report"]["z_mean"]
    composite = latent.decode_batched(decoder, z[[0, 1]], dtype=np.float32).min(0)
    assert np.allclose(methods["fixed: decoded compositing"]["make"]((0, 1)), composite)
    centre = z.mean(0)
    offset = latent.decode_batched(decoder, centre + (z - centre).sum(0), dtype=np.float32)[0]
    assert np.allclose(methods["fixed: offset, z_bg centres"]["make"]((0, 1, 2)), offset, atol=1e-6)
    with pytest.raises(ValueError, match="background_from"):
        experiment.method_overlay(setup, fixed, "sum", background_from="corner")


@pytest.mark.slow
def test_verdict_and_summary(trio_runs, tmp_path):
    setup, paper, fixed = trio_runs
    methods = experiment.method_rows(setup, experiment.overlay_methods(setup, paper, fixed, 1.0))
    outcome = experiment.verdict(setup, fixed, methods)
    assert outcome["pixel_compositing"] > outcome["pixel_mean"]
    assert outcome["best_latent"] in {row["method"] for row in methods} - {
        "fixed: decoded compositing"
    }
    seconds = experiment.training_seconds(paper, fixed)
    assert seconds == {"paper": paper["seconds"], "fixed": fixed["seconds"]}
    summary = experiment.summary(
        setup,
        image_size=32,
        copies=4,
        paper=paper,
        fixed=fixed,
        methods=methods,
        seconds=seconds,
        run_minutes=0.5,
    )
    assert set(summary) == {
        "image_size",
        "copies",
        "epochs",
        "latent_dim",
        "paper_recipe",
        "fixed_variant",
        "defect_threshold",
        "fidelity_mean_score",
        "training_minutes",
        "run_minutes",
    }
    assert summary["fixed_variant"]["name"] == "standardised + leaky"
    report.record("05_overlay_defects", summary, tmp_path)
    text = report.write_report(tmp_path).read_text()
    assert "| overlay, paper's recipe " in text and "cluster(s), separation" in text


@pytest.mark.slow
def test_without_masks_nothing_is_scored(trio_runs):
    setup, paper, fixed = trio_runs
    blind = experiment.Setup(setup.sources, None, setup.names, setup.folder, epochs=1, n_samples=30)
    assert blind.threshold is None and blind.background.shape == (32, 32) and not blind.have_masks
    assert np.isnan(experiment.self_fidelity(blind, fixed))
    scored = experiment.evaluate(blind, experiment.method_overlay(blind, None, "pixel mean"))
    assert scored["results"] == [None] * 4 and np.isnan(scored["mean_score"])
    assert experiment.method_rows(blind, experiment.overlay_methods(blind, paper, fixed, 1.0)) == []
    outcome = experiment.verdict(blind, fixed, [])
    assert (
        outcome["best_latent"] is None
        and np.isnan(outcome["paper_sum"])
        and np.isnan(outcome["pixel_mean"])
    )
