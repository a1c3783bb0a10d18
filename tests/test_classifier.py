"""Tests for vae_overlay.classifier (splits, the leakage guard, augmentation, metrics, paired
statistics) and vae_overlay.classifier_experiment (notebook 06's one-seed run and its summary), at
small sizes."""

import csv
import itertools

import matplotlib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage, stats
from sklearn.metrics import log_loss

from vae_overlay import classifier, diagnostics, runs
from vae_overlay import classifier_experiment as experiment
from vae_overlay.elpv import elpv_image
from vae_overlay.stats import (
    equivalence,
    mean_above,
    minimum_detectable_effect,
    paired_comparison,
    paired_differences,
    verdict,
    word,
)

matplotlib.use("Agg")

# ----------------------------------------------------------------------------- splits


@pytest.fixture(scope="module")
def mono_task():
    names, labels = classifier.elpv_task("mono")
    return names, labels, dict(zip(names, labels.tolist()))


def test_elpv_task_counts_and_labels(mono_task):
    names, labels, _ = mono_task
    # elpv-dataset 1.0: 313 mono cells with defect probability 1.0 and 588 with 0.0 (0.33/0.67 left
    # out)
    assert (int((labels == 1).sum()), int((labels == 0).sum())) == (313, 588)
    assert len(set(names)) == len(names)
    poly_names, _ = classifier.elpv_task("poly")
    both_names, _ = classifier.elpv_task("both")
    assert set(both_names) == set(names) | set(poly_names) and not set(names) & set(poly_names)
    with pytest.raises(ValueError, match="module_type"):
        classifier.elpv_task("amorphous")


def test_splits_are_disjoint_balanced_and_fixed_by_seed(mono_task):
    names, labels, label_of = mono_task
    test, pool = classifier.split_test(names, labels, 0.5, seed=42)
    assert not set(test) & set(pool) and set(test) | set(pool) == set(names)
    # half of 313 and of 588, rounded
    assert sum(label_of[n] for n in test) == 156 and len(test) == 156 + 294
    assert classifier.split_test(names, labels, 0.5, seed=42) == (test, pool)
    assert classifier.split_test(names, labels, 0.5, seed=43)[0] != test

    train, val = classifier.draw_train_val(pool, label_of, 80, 20, seed=7)
    assert len(train) == 160 and len(val) == 40
    assert sum(label_of[n] for n in train) == 80 and sum(label_of[n] for n in val) == 20
    assert not set(train) & set(val)
    assert not (set(train) | set(val)) & set(test)
    assert classifier.draw_train_val(pool, label_of, 80, 20, seed=7) == (train, val)
    assert classifier.draw_train_val(pool, label_of, 80, 20, seed=8)[0] != train
    # the pool's order does not matter, only its content
    assert classifier.draw_train_val(pool[::-1], label_of, 80, 20, seed=7) == (train, val)


def test_asking_for_more_cells_than_exist_says_so(mono_task):
    names, labels, label_of = mono_task
    with pytest.raises(ValueError, match="between 0 and 1"):
        classifier.split_test(names, labels, 1.0, seed=0)
    _, pool = classifier.split_test(names, labels, 0.5, seed=0)
    with pytest.raises(ValueError, match="only 157 available"):
        classifier.draw_train_val(pool, label_of, 150, 20, seed=0)


def read_rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_cell_list_is_a_csv_of_name_label_role(tmp_path, mono_task):
    names, _, label_of = mono_task
    path = classifier.write_cell_list(
        tmp_path / "test_cells.csv", names[:5][::-1], label_of, "test"
    )
    assert path.read_text().splitlines()[0] == "name,label,role"
    assert read_rows(path) == [
        {"name": n, "label": str(label_of[n]), "role": "test"} for n in sorted(names[:5])
    ]


# ----------------------------------------------------------------------------- leakage guard


@pytest.fixture(scope="module")
def real_cells(mono_task):
    names = mono_task[0][:12]
    return names, classifier.read_cells(names, 64)[0]


def test_read_cells_resizes_and_hashes_at_full_resolution(real_cells):
    names, images = real_cells
    small, hashes = classifier.read_cells(names[:2], 32)
    assert (
        images.shape == (12, 64, 64, 1)
        and small.shape == (2, 32, 32, 1)
        and small.dtype == np.float32
    )
    assert 0 <= small.min() and small.max() <= 1
    assert hashes == [classifier.pixel_hash(elpv_image(name)) for name in names[:2]]
    assert hashes[0] != classifier.pixel_hash(small[0])


def test_clean_split_has_no_leak(real_cells):
    names, images = real_cells
    assert classifier.find_leaks(names[:6], images[:6], names[6:], images[6:]) == []
    classifier.assert_no_leakage(names[:6], images[:6], {"training": (names[6:], images[6:])})


def test_a_planted_duplicate_under_another_name_is_caught_by_its_pixels(real_cells):
    names, images = real_cells
    train_names = list(names[6:]) + ["innocent_looking_copy.png"]
    train_images = np.concatenate([images[6:], images[2:3]])  # test cell names[2], renamed
    leaks = classifier.find_leaks(names[:6], images[:6], train_names, train_images)
    assert leaks == [
        f"training image innocent_looking_copy.png has the same pixels as test cell {names[2]}"
    ]
    with pytest.raises(
        classifier.LeakageError, match="VAE training: training image innocent_looking_copy"
    ):
        classifier.assert_no_leakage(
            names[:6],
            images[:6],
            {
                "classifier training": (names[6:], images[6:]),
                "VAE training": (train_names, train_images),
            },
        )


def test_a_shared_name_and_a_near_copy_are_caught(real_cells):
    names, images = real_cells
    # a re-encoded copy: every pixel off by up to half a grey level, so the 8-bit hash differs
    noise = (
        np.random.default_rng(0).uniform(-0.5 / 255, 0.5 / 255, images[0].shape).astype(np.float32)
    )
    near_copy = np.clip(images[0] + noise + 0.6 / 255, 0, 1)
    assert classifier.pixel_hash(near_copy) != classifier.pixel_hash(images[0])
    leaks = classifier.find_leaks(
        names[:6], images[:6], [names[3], "near.png"], np.stack([images[7], near_copy])
    )
    assert leaks[0] == f"name {names[3]} is in both sets"
    assert leaks[1].startswith(f"training image near.png is a near copy of test cell {names[0]}")
    assert len(leaks) == 2
    # distinct real cells are further apart than the near-copy tolerance
    distances = classifier.rms_distances(images, images)
    assert distances[~np.eye(len(images), dtype=bool)].min() > 1 / 255


def test_rms_distances_against_a_direct_computation():
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 5, 5, 1)), rng.random((4, 5, 5, 1))
    direct = np.array([[np.sqrt(np.mean((x - y) ** 2)) for y in b] for x in a])
    assert np.allclose(classifier.rms_distances(a, b), direct)


# ----------------------------------------------------------------------------- augmentation


def test_classical_augmentation_keeps_shape_range_and_is_seeded():
    rng = np.random.default_rng(0)
    images = rng.random((16, 32, 32, 1)).astype(np.float32)
    before = images.copy()
    out = classifier.classical_augment(images, np.random.default_rng(5))
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert not np.allclose(out, images)
    assert np.array_equal(out, classifier.classical_augment(images, np.random.default_rng(5)))
    assert np.array_equal(images, before)  # the input is left as it was


def test_without_rotation_and_brightness_only_flips_remain_and_the_two_flips_are_independent():
    images = np.random.default_rng(2).random((20, 8, 8, 1)).astype(np.float32)
    out = classifier.classical_augment(
        images, np.random.default_rng(3), max_rotation=0, brightness=0
    )
    kinds = []
    for original, augmented in zip(images[..., 0], out[..., 0]):
        flips = [original, original[:, ::-1], original[::-1], original[::-1, ::-1]]
        matches = [
            k for k, flipped in enumerate(flips) if np.allclose(augmented, flipped, atol=1e-6)
        ]
        assert matches, "an output is not a flip of its input"
        kinds.append(matches[0])
    # all four: left-right and up-down are drawn separately (RandomFlip("horizontal_and_vertical")
    # would flip both or neither)
    assert set(kinds) == {0, 1, 2, 3}


def best_rotation_match(original, augmented, max_rotation):
    """(largest pixel difference away from the border, angle): the closest scipy rotation of a flip
    of `original` within +-max_rotation degrees (0.05 degree steps) to `augmented`."""
    best = (np.inf, None)
    for flipped in (original, original[:, ::-1], original[::-1], original[::-1, ::-1]):
        for angle in np.arange(-max_rotation, max_rotation + 1e-9, 0.05):
            reference = ndimage.rotate(flipped, angle, reshape=False, order=1, mode="nearest")
            best = min(best, (float(np.abs(reference - augmented)[3:-3, 3:-3].max()), float(angle)))
    return best


def test_rotation_is_bilinear_within_the_limit_like_scipy():
    smooth = ndimage.gaussian_filter(np.random.default_rng(4).random((24, 24)), 1.5).astype(
        np.float32
    )
    out = classifier.augmenter(5, max_rotation=5.0, brightness=0)(
        np.repeat(smooth[None, ..., None], 6, axis=0)
    )
    matches = [best_rotation_match(smooth, augmented, 5.0) for augmented in out[..., 0]]
    # edges repeated, bilinear, as scipy's order=1
    assert all(difference < 2e-3 for difference, _ in matches)
    assert len({round(angle) for _, angle in matches}) > 1  # angles are drawn, not fixed


def test_augmenter_is_seeded_and_draws_anew_on_every_call():
    images = np.random.default_rng(0).random((8, 16, 16, 1)).astype(np.float32)
    first, second = classifier.augmenter(11), classifier.augmenter(11)
    a, b = first(images), first(images)
    assert not np.allclose(a, b)
    assert np.array_equal(a, second(images)) and np.array_equal(b, second(images))


def test_brightness_scales_the_image():
    image = np.full((1, 8, 8, 1), 0.5, np.float32)
    out = classifier.classical_augment(
        image, np.random.default_rng(0), max_rotation=0, brightness=0.1
    )
    factor = out[0, 0, 0, 0] / 0.5
    assert 0.9 <= factor <= 1.1 and factor != 1.0 and np.allclose(out, out[0, 0, 0, 0])


# ----------------------------------------------------------------------------- metrics


def test_roc_auc_on_a_hand_computed_case():
    labels = [1, 1, 0, 0, 1, 0]
    scores = [0.9, 0.4, 0.4, 0.1, 0.8, 0.7]
    # positives 0.9, 0.4, 0.8 against negatives 0.4, 0.1, 0.7:
    # 0.9 wins 3; 0.4 ties 0.4 (1/2), beats 0.1, loses to 0.7 -> 1.5; 0.8 wins 3. (3 + 1.5 + 3) / 9
    assert classifier.evaluate(labels, scores)["roc_auc"] == pytest.approx(7.5 / 9)
    assert classifier.evaluate([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4])["roc_auc"] == 1.0
    assert classifier.evaluate([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4])["roc_auc"] == 0.0
    assert classifier.evaluate([1, 0, 1, 0], [0.5] * 4)["roc_auc"] == 0.5
    with pytest.raises(ValueError):
        classifier.evaluate([1, 1], [0.2, 0.3])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=2, max_size=25))
def test_roc_auc_equals_the_pairwise_count(pairs):
    labels = [label for label, _ in pairs]
    scores = [score / 5 for _, score in pairs]
    positives = [s for label, s in zip(labels, scores) if label]
    negatives = [s for label, s in zip(labels, scores) if not label]
    if not positives or not negatives:
        return
    count = sum(
        1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positives, negatives)
    )
    assert classifier.evaluate(labels, scores)["roc_auc"] == pytest.approx(
        count / (len(positives) * len(negatives))
    )


def test_evaluate_accuracy_and_balanced_accuracy():
    labels = [1, 1, 1, 1, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.2, 0.6, 0.1]  # 3 of 4 defective right, 1 of 2 functional right
    metrics = classifier.evaluate(labels, scores)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    # positives 0.9, 0.8, 0.7 beat both negatives (6 pairs); 0.2 beats 0.1 and loses to 0.6 (1 pair)
    assert metrics["roc_auc"] == pytest.approx(7 / 8)


# ----------------------------------------------------------------------------- paired statistics


def test_paired_comparison_on_a_known_case():
    baseline = np.array([0.70, 0.72, 0.74, 0.76, 0.78])
    other = baseline + np.array([1, 2, 3, 4, 5]) / 100
    result = paired_comparison(baseline, other)
    # differences 0.01..0.05: mean 0.03, sd sqrt(2.5)/100, t = 0.03 / (sd / sqrt 5) = 3 sqrt 2 =
    # 4.2426
    assert result["mean_difference"] == pytest.approx(0.03)
    assert result["std_difference"] == pytest.approx(np.sqrt(2.5) / 100)
    assert result["t"] == pytest.approx(3 * np.sqrt(2))
    assert result["p_value"] == pytest.approx(0.013236, abs=2e-6)  # two-sided, 4 degrees of freedom
    assert result["p_value"] == pytest.approx(stats.ttest_rel(other, baseline).pvalue)
    half_width = 2.776445 * np.sqrt(2.5) / 100 / np.sqrt(5)  # t(0.975, 4) * standard error
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(
        (0.03 - half_width, 0.03 + half_width)
    )
    assert result["improved"] == 5 and result["n"] == 5


def test_paired_comparison_edge_cases():
    same = paired_comparison([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same["mean_difference"] == 0 and same["p_value"] == 1.0 and same["improved"] == 0
    shifted = paired_comparison([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])
    assert shifted["mean_difference"] == pytest.approx(-0.1) and shifted["p_value"] < 1e-6
    with pytest.raises(ValueError):
        paired_comparison([0.5, 0.6], [0.5])
    with pytest.raises(ValueError):
        paired_comparison([0.5], [0.6])
    # a pair with a missing value is left out of the comparison, as paired_differences leaves it out
    missing = paired_comparison([0.5, 0.6, np.nan, 0.7], [0.6, 0.8, 0.9, 0.8])
    assert missing["n"] == 3 and missing == paired_comparison([0.5, 0.6, 0.7], [0.6, 0.8, 0.8])
    with pytest.raises(ValueError, match="two pairs"):
        paired_comparison([0.5, np.nan], [0.6, 0.7])


def test_paired_differences_flatten_and_leave_out_missing_pairs():
    baseline = np.array([[0.5, 0.5], [np.nan, 0.4]])
    other = np.array([[0.7, 0.4], [0.9, np.inf]])
    assert paired_differences(baseline, other) == pytest.approx([0.2, -0.1])


def test_equivalence_is_two_one_sided_t_tests_and_its_interval():
    differences = np.array([0.001, -0.004, 0.003, 0.002, -0.001, 0.000])
    tost = equivalence(differences, 0.02)
    lower = stats.ttest_1samp(differences, -0.02, alternative="greater").pvalue
    upper = stats.ttest_1samp(differences, 0.02, alternative="less").pvalue
    assert tost["p"] == pytest.approx(max(lower, upper)) and tost["p"] < 0.001
    interval = stats.t.interval(0.90, 5, differences.mean(), stats.sem(differences))
    assert (tost["low"], tost["high"]) == pytest.approx(interval)
    assert equivalence(differences + 0.03, 0.02)["p"] > 0.5  # all beyond the margin: not equivalent
    assert equivalence([0.01, 0.01, 0.01], 0.02)["p"] == 0.0  # no spread, inside the margin
    assert equivalence([0.03, 0.03, 0.03], 0.02)["p"] == 1.0  # no spread, outside


def test_mean_above_is_a_one_sided_t_test_and_1_without_spread():
    values = np.array([0.55, 0.62, 0.58, 0.7])
    expected = stats.ttest_1samp(values, 0.5, alternative="greater").pvalue
    assert mean_above(values, 0.5) == pytest.approx(expected) and mean_above(values, 0.5) < 0.05
    assert mean_above(values, 0.9) > 0.95 and mean_above([0.6, 0.6, 0.6], 0.5) == 1.0


def test_minimum_detectable_effect_is_the_t_quantiles_times_the_standard_error():
    expected = (stats.t.ppf(0.975, 19) + stats.t.ppf(0.8, 19)) * 0.05 / np.sqrt(20)
    assert minimum_detectable_effect(20, 0.05) == pytest.approx(expected)
    assert minimum_detectable_effect(20, 0.05, power=0.9) > minimum_detectable_effect(20, 0.05)


def test_verdict_words_an_interval_against_a_threshold_and_a_margin():
    assert verdict(0.6, 0.9, 0.5) == "holds" and verdict(0.1, 0.4, 0.5) == "fails"
    assert verdict(0.3, 0.7, 0.5) == "undecided" and verdict(np.nan, np.nan) == "undecided"
    assert verdict(0.01, 0.03, words=("better", "worse")) == "better"
    assert verdict(-0.01, 0.01, equivalent_within="within ±2 pp") == "equivalent within ±2 pp"
    assert (
        verdict(-0.02, -0.01, words=("better", "worse"), equivalent_within="within ±5 pp")
        == "worse, but within ±5 pp"
    )
    assert [word(True, False), word(False, True)] == ["holds", "fails"]
    assert word(False, False) == "undecided"
    assert word(False, False, "not supported") == "not supported"


# ----------------------------------------------------------------------- classifier and VAE samples


def separable_task(n, seed):
    """Bright cells with a dark vertical line (label 1) against plain bright cells (label 0), 16
    px."""
    rng = np.random.default_rng(seed)
    images = 0.6 + 0.1 * rng.random((n, 16, 16, 1)).astype(np.float32)
    labels = np.arange(n) % 2
    for k in np.flatnonzero(labels):
        images[k, :, rng.integers(3, 13), 0] = 0.1
    return images, labels


@pytest.mark.slow
def test_classifier_learns_a_separable_task_and_keeps_the_best_validation_check():
    train_x, train_y = separable_task(40, 0)
    val_x, val_y = separable_task(20, 1)
    test_x, test_y = separable_task(40, 2)
    model, record = classifier.train_classifier(
        train_x,
        train_y,
        val_x,
        val_y,
        steps=120,
        batch_size=16,
        learning_rate=3e-3,
        check_every=20,
        seed=0,
    )
    assert record.steps == 120 and record.check_steps == [20, 40, 60, 80, 100, 120]
    assert record.best_validation_loss == min(record.validation_loss)
    assert record.best_step == record.check_steps[int(np.argmin(record.validation_loss))]
    kept = classifier.validation_loss(model, val_x, val_y)
    # the kept weights are the best check's
    assert kept == pytest.approx(record.best_validation_loss, abs=1e-5)
    assert kept == pytest.approx(log_loss(val_y, classifier.predict_scores(model, val_x)), abs=1e-6)
    assert classifier.evaluate(test_y, classifier.predict_scores(model, test_x))["roc_auc"] > 0.9
    again, _ = classifier.train_classifier(
        train_x, train_y, val_x, val_y, steps=20, batch_size=16, check_every=20, seed=0
    )
    twice, _ = classifier.train_classifier(
        train_x, train_y, val_x, val_y, steps=20, batch_size=16, check_every=20, seed=0
    )
    assert all(np.array_equal(a, b) for a, b in zip(again.get_weights(), twice.get_weights()))


def test_sample_vae_gives_images_in_range():
    from vae_overlay import model

    vae = model.build_vae(16, 2, seed=0)
    images = np.random.default_rng(0).random((10, 16, 16, 1)).astype(np.float32)
    samples = classifier.sample_vae(vae.encoder, vae.decoder, images, 7, seed=1)
    assert samples.shape == (7, 16, 16, 1) and samples.dtype == np.float32
    assert samples.min() >= 0 and samples.max() <= 1
    assert np.array_equal(
        samples, classifier.sample_vae(vae.encoder, vae.decoder, images, 7, seed=1)
    )


def test_mean_pairwise_rms():
    images = np.stack([np.full((4, 4, 1), v, np.float32) for v in (0.0, 0.1, 0.3)])
    assert classifier.mean_pairwise_rms(images) == pytest.approx((0.1 + 0.3 + 0.2) / 3)


# ----------------------------------------------------------------------- notebook 06's one-seed run

TINY = experiment.Settings(
    n_train_per_class=6,
    n_val_per_class=3,
    n_generated_per_class=5,
    epochs=1,
    batch_size=4,
    vae_attempts=2,
    classifier_steps=4,
    classifier_batch_size=8,
    check_every=2,
)


def tiny_task(crack_images, n_per_class=20, size=16):
    """A Task of synthetic cells: crossed by a dark line (defective) or plain noise (functional)."""
    defective = crack_images(n_per_class, size, seed=1)
    functional = np.clip(
        0.8 + np.random.default_rng(2).normal(0, 0.03, (n_per_class, size, size, 1)), 0, 1
    )
    images = np.concatenate([defective, functional.astype(np.float32)])
    names = [f"cell{i:03d}.png" for i in range(len(images))]
    labels = np.array([1] * n_per_class + [0] * n_per_class)
    test_names, pool = classifier.split_test(names, labels, 0.5, seed=0)
    return experiment.Task(
        dict(zip(names, labels.tolist())),
        dict(zip(names, images)),
        {name: classifier.pixel_hash(image) for name, image in zip(names, images)},
        test_names,
        pool,
    )


@pytest.fixture(scope="module")
def tiny_run(crack_images, tmp_path_factory):
    task = tiny_task(crack_images)
    folder = tmp_path_factory.mktemp("experiment")
    return task, folder, experiment.run_seed(task, 3, folder, TINY)


def test_run_seed_gives_one_row_per_condition(tiny_run):
    task, _, result = tiny_run
    rows = result["rows"]
    assert [row["condition"] for row in rows] == list(experiment.CONDITIONS)
    # 6 + 6 real, + 5 generated per class
    assert [row["n_train"] for row in rows] == [12, 12, 22, 22, 22]
    for row in rows:
        assert row["seed"] == 3 and row["best_step"] in (2, 4)
        assert all(0 <= row[metric] <= 1 for metric in experiment.METRICS)
    assert [(run["class"], run["seed"]) for run in result["vae_runs"]] == [
        ("defective", 3),
        ("functional", 3),
    ]
    assert {check["set"] for check in result["generated_checks"]} == {
        "real defective",
        "real functional",
        "defective samples",
        "functional samples",
        "defective overlays",
    }
    assert result["closest_rms"] > 1 / 255 and result["timing"]["seed"] == 3
    generated = result["examples"]["generated"]
    assert {kind: images.shape for kind, images in generated.items()} == {
        kind: (5, 16, 16, 1)
        for kind in ("defective samples", "functional samples", "defective overlays")
    }


def test_run_seed_saves_disjoint_cell_lists(tiny_run):
    task, folder, result = tiny_run
    seed_dir = folder / "seed3-train6-val3"
    train = {row["name"]: row["label"] for row in read_rows(seed_dir / "train_cells.csv")}
    val = {row["name"] for row in read_rows(seed_dir / "validation_cells.csv")}
    assert len(train) == 12 and sorted(train.values()).count("1") == 6 and len(val) == 6
    assert not (set(train) | val) & set(task.test_names) and not set(train) & val
    for class_name, label in (("defective", "1"), ("functional", "0")):
        vae_folder = seed_dir / f"vae-{class_name}"
        restarts = {run["class"]: run["restarts"] for run in result["vae_runs"]}[class_name]
        if restarts:
            vae_folder = vae_folder.with_name(f"{vae_folder.name}-restart{restarts}")
        vae_cells = {row["name"] for row in read_rows(vae_folder / "vae_training_cells.csv")}
        assert vae_cells == {name for name, value in train.items() if value == label}
        assert (vae_folder / "vae.keras").is_file()


def test_run_seed_reuses_its_vaes_and_repeats_its_numbers(tiny_run):
    task, folder, result = tiny_run
    again = experiment.run_seed(task, 3, folder, TINY)
    keys = ("condition", "n_train", "best_step", "accuracy", "balanced_accuracy", "roc_auc")
    assert [{k: row[k] for k in keys} for row in again["rows"]] == [
        {k: row[k] for k in keys} for row in result["rows"]
    ]
    # one caching rule: other settings raise
    with pytest.raises(runs.RunMismatch, match="learning_rate"):
        experiment.run_seed(
            task, 3, folder, experiment.Settings(**{**vars(TINY), "learning_rate": 1e-3})
        )


def test_a_collapsed_vae_is_trained_again_in_its_own_folder(crack_images, tmp_path):
    task = tiny_task(crack_images)
    same = [name for name in task.pool if task.label_of[name] == 1][:4]
    for name in same:  # identical images: every encoding is the same point, in every attempt
        task.image_of[name] = task.image_of[same[0]]
    vae, restarts, collapsed = experiment.train_class_vae(
        task, same, tmp_path / "vae-defective", 0, TINY
    )
    assert (restarts, collapsed) == (1, True)
    assert diagnostics.latent_collapsed(vae.encoder, task.images(same))
    assert (tmp_path / "vae-defective-restart1" / "vae.keras").is_file()


def test_check_leakage_catches_names_pixels_generated_images_and_full_resolution_hashes(
    crack_images,
):
    task = tiny_task(crack_images)
    train, val = task.pool[:6], task.pool[6:9]
    vae_names = {"defective": train[:3], "functional": train[3:]}
    clean = {"defective samples": np.full((2, 16, 16, 1), 0.5, np.float32)}
    assert experiment.check_leakage(task, train, val, vae_names, clean) > 1 / 255
    with pytest.raises(classifier.LeakageError, match="validation: name"):
        experiment.check_leakage(task, train, val + [task.test_names[0]], vae_names, clean)
    with pytest.raises(
        classifier.LeakageError, match="generated defective samples: training image"
    ):
        experiment.check_leakage(
            task, train, val, vae_names, {"defective samples": task.test_images[:1]}
        )
    with pytest.raises(classifier.LeakageError, match="VAE \\(functional\\)"):
        experiment.check_leakage(
            task, train, val, {**vae_names, "functional": [task.test_names[1]]}, clean
        )
    # same cell at full resolution, other 16-px pixels
    task.full_hash[train[0]] = task.full_hash[task.test_names[2]]
    with pytest.raises(classifier.LeakageError, match="full-resolution"):
        experiment.check_leakage(task, train, val, vae_names, clean)


def test_training_set_adds_the_generated_sets_with_their_labels():
    real, labels = np.zeros((4, 8, 8, 1), np.float32), np.array([1, 1, 0, 0], np.float32)
    generated = {
        kind: np.full((3, 8, 8, 1), k, np.float32)
        for k, kind in enumerate(experiment.GENERATED_LABEL)
    }
    images, set_labels, augment = experiment.training_set(
        "(5) classical + overlays", real, labels, generated
    )
    assert augment and images.shape == (10, 8, 8, 1)
    assert set_labels.tolist() == [1, 1, 0, 0] + [1] * 3 + [0] * 3
    assert np.array_equal(images[4:7], generated["defective overlays"])
    images, set_labels, augment = experiment.training_set("(1) original", real, labels, generated)
    assert not augment and np.array_equal(images, real) and np.array_equal(set_labels, labels)


def fake_result(seed, accuracies):
    rows = [
        {
            "seed": seed,
            "condition": c,
            "n_train": 10,
            "accuracy": a,
            "balanced_accuracy": a,
            "roc_auc": a,
        }
        for c, a in zip(experiment.CONDITIONS, accuracies)
    ]
    return {
        "rows": rows,
        "vae_runs": [{"seed": seed, "class": "defective", "restarts": 0, "collapsed": False}],
        "generated_checks": [
            {"seed": seed, "set": "real defective", "diversity": 0.1, "called_defective": 0.5}
        ],
        "closest_rms": 0.1,
        "timing": {"seed": seed, "vae_seconds": 1.0, "seconds": 2.0},
    }


def test_summarise_pairs_the_seeds_and_compares_with_the_original_set():
    accuracies = [
        [0.70, 0.80, 0.60, 0.70, 0.75],
        [0.72, 0.81, 0.64, 0.70, 0.70],
        [0.74, 0.83, 0.65, 0.74, 0.71],
    ]
    summary = experiment.summarise([fake_result(seed, a) for seed, a in zip((5, 6, 7), accuracies)])
    original = summary["conditions"]["(1) original"]["accuracy"]
    assert original["per_seed"] == [0.70, 0.72, 0.74] and original["mean"] == pytest.approx(0.72)
    assert original["std"] == pytest.approx(0.02)
    paired = summary["paired_vs_original"]
    assert list(paired) == list(experiment.CONDITIONS)[1:]
    assert paired["(2) classical augmentation"]["roc_auc"] == paired_comparison(
        [0.70, 0.72, 0.74], [0.80, 0.81, 0.83]
    )
    assert paired["(4) + VAE overlays"]["accuracy"]["mean_difference"] == pytest.approx(-0.02 / 3)
    assert [t["seed"] for t in summary["timings"]] == [5, 6, 7] and len(
        summary["vae_restarts"]
    ) == 3
    frame = experiment.results_frame(summary, {c: 10 for c in experiment.CONDITIONS})
    assert (
        list(frame["condition"]) == list(experiment.CONDITIONS)
        and frame.loc[0, "accuracy better in"] == "—"
    )
    assert (
        frame.loc[1, "accuracy better in"] == "3 of 3 seeds"
        and frame.loc[1, "Δ accuracy vs (1), pp [95 % CI]"][0] == "+"
    )
    assert frame.loc[3, "Δ accuracy vs (1), pp [95 % CI]"].startswith("-0.7 [")
    assert len(experiment.plot_conditions(summary).axes) == 3
    rows = {"real": np.zeros((3, 8, 8, 1)), "generated": np.ones((2, 8, 8, 1))}
    assert len(experiment.plot_training_examples(rows, "examples", per_row=3).axes) == 6
