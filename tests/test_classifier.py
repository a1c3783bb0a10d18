"""Tests for vae_overlay.classifier: splits, the leakage guard, augmentation, metrics and paired statistics."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage, stats

from vae_overlay import classifier

# ----------------------------------------------------------------------------- splits


@pytest.fixture(scope="module")
def mono_task():
    names, labels = classifier.elpv_task("mono")
    return names, labels, dict(zip(names, labels.tolist()))


def test_elpv_task_counts_and_labels(mono_task):
    names, labels, _ = mono_task
    # elpv-dataset 1.0: 313 mono cells with defect probability 1.0 and 588 with 0.0 (0.33/0.67 left out)
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
    assert sum(label_of[n] for n in test) == 156 and len(test) == 156 + 294  # half of 313 and of 588, rounded
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


def test_cell_list_round_trip(tmp_path, mono_task):
    names, _, label_of = mono_task
    path = classifier.write_cell_list(tmp_path / "test_cells.csv", names[:5], label_of, "test")
    assert classifier.read_cell_list(path) == sorted(names[:5])
    assert path.read_text().splitlines()[0] == "name,label,role"


# ----------------------------------------------------------------------------- leakage guard


@pytest.fixture(scope="module")
def real_cells(mono_task):
    names = mono_task[0][:12]
    return names, classifier.load_cells(names, 64)


def test_clean_split_has_no_leak(real_cells):
    names, images = real_cells
    assert classifier.find_leaks(names[:6], images[:6], names[6:], images[6:]) == []
    classifier.assert_no_leakage(names[:6], images[:6], {"training": (names[6:], images[6:])})


def test_a_planted_duplicate_under_another_name_is_caught_by_its_pixels(real_cells):
    names, images = real_cells
    train_names = list(names[6:]) + ["innocent_looking_copy.png"]
    train_images = np.concatenate([images[6:], images[2:3]])  # test cell names[2], renamed
    leaks = classifier.find_leaks(names[:6], images[:6], train_names, train_images)
    assert leaks == [f"training image innocent_looking_copy.png has the same pixels as test cell {names[2]}"]
    with pytest.raises(classifier.LeakageError, match="VAE training: training image innocent_looking_copy"):
        classifier.assert_no_leakage(names[:6], images[:6], {"classifier training": (names[6:], images[6:]),
                                                             "VAE training": (train_names, train_images)})


def test_a_shared_name_and_a_near_copy_are_caught(real_cells):
    names, images = real_cells
    # a re-encoded copy: every pixel off by up to half a grey level, so the 8-bit hash differs
    noise = np.random.default_rng(0).uniform(-0.5 / 255, 0.5 / 255, images[0].shape).astype(np.float32)
    near_copy = np.clip(images[0] + noise + 0.6 / 255, 0, 1)
    assert classifier.pixel_hash(near_copy) != classifier.pixel_hash(images[0])
    leaks = classifier.find_leaks(names[:6], images[:6], [names[3], "near.png"], np.stack([images[7], near_copy]))
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


def test_without_rotation_and_brightness_only_flips_remain():
    images = np.random.default_rng(2).random((20, 8, 8, 1)).astype(np.float32)
    out = classifier.classical_augment(images, np.random.default_rng(3), max_rotation=0, brightness=0)
    kinds = []
    for original, augmented in zip(images[..., 0], out[..., 0]):
        flips = [original, original[:, ::-1], original[::-1], original[::-1, ::-1]]
        matches = [k for k, flipped in enumerate(flips) if np.allclose(augmented, flipped, atol=1e-6)]
        assert matches, "an output is not a flip of its input"
        kinds.append(matches[0])
    assert len(set(kinds)) > 1  # flips are random, not all the same


def test_rotation_matches_scipy():
    image = np.random.default_rng(4).random((1, 24, 24)).astype(np.float32)
    rows, columns = np.meshgrid(np.arange(24) - 11.5, np.arange(24) - 11.5, indexing="ij")
    angle = np.deg2rad(4.0)
    rotated = classifier._bilinear(image, (11.5 + rows * np.cos(angle) - columns * np.sin(angle))[None],
                                   (11.5 + rows * np.sin(angle) + columns * np.cos(angle))[None])
    reference = ndimage.rotate(image[0], -4.0, reshape=False, order=1, mode="nearest")
    assert np.allclose(rotated[0][2:-2, 2:-2], reference[2:-2, 2:-2], atol=1e-5)


def test_brightness_scales_the_image():
    image = np.full((1, 8, 8, 1), 0.5, np.float32)
    out = classifier.classical_augment(image, np.random.default_rng(0), max_rotation=0, brightness=0.1)
    factor = out[0, 0, 0, 0] / 0.5
    assert 0.9 <= factor <= 1.1 and factor != 1.0 and np.allclose(out, out[0, 0, 0, 0])


# ----------------------------------------------------------------------------- metrics


def test_roc_auc_on_a_hand_computed_case():
    labels = [1, 1, 0, 0, 1, 0]
    scores = [0.9, 0.4, 0.4, 0.1, 0.8, 0.7]
    # positives 0.9, 0.4, 0.8 against negatives 0.4, 0.1, 0.7:
    # 0.9 wins 3; 0.4 ties 0.4 (1/2), beats 0.1, loses to 0.7 -> 1.5; 0.8 wins 3. (3 + 1.5 + 3) / 9
    assert classifier.roc_auc(labels, scores) == pytest.approx(7.5 / 9)
    assert classifier.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert classifier.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert classifier.roc_auc([1, 0, 1, 0], [0.5] * 4) == 0.5
    with pytest.raises(ValueError):
        classifier.roc_auc([1, 1], [0.2, 0.3])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=2, max_size=25))
def test_roc_auc_equals_the_pairwise_count(pairs):
    labels = [label for label, _ in pairs]
    scores = [score / 5 for _, score in pairs]
    positives = [s for label, s in zip(labels, scores) if label]
    negatives = [s for label, s in zip(labels, scores) if not label]
    if not positives or not negatives:
        return
    count = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positives, negatives))
    assert classifier.roc_auc(labels, scores) == pytest.approx(count / (len(positives) * len(negatives)))


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
    result = classifier.paired_comparison(baseline, other)
    # differences 0.01..0.05: mean 0.03, sd sqrt(2.5)/100, t = 0.03 / (sd / sqrt 5) = 3 sqrt 2 = 4.2426
    assert result["mean_difference"] == pytest.approx(0.03)
    assert result["std_difference"] == pytest.approx(np.sqrt(2.5) / 100)
    assert result["t"] == pytest.approx(3 * np.sqrt(2))
    assert result["p_value"] == pytest.approx(0.013236, abs=2e-6)  # two-sided, 4 degrees of freedom
    assert result["p_value"] == pytest.approx(stats.ttest_rel(other, baseline).pvalue)
    half_width = 2.776445 * np.sqrt(2.5) / 100 / np.sqrt(5)  # t(0.975, 4) * standard error
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((0.03 - half_width, 0.03 + half_width))
    assert result["improved"] == 5 and result["n"] == 5


def test_paired_comparison_edge_cases():
    same = classifier.paired_comparison([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same["mean_difference"] == 0 and same["p_value"] == 1.0 and same["improved"] == 0
    shifted = classifier.paired_comparison([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])
    assert shifted["mean_difference"] == pytest.approx(-0.1) and shifted["p_value"] < 1e-6
    with pytest.raises(ValueError):
        classifier.paired_comparison([0.5, 0.6], [0.5])
    with pytest.raises(ValueError):
        classifier.paired_comparison([0.5], [0.6])


# ----------------------------------------------------------------------------- classifier and VAE samples


def separable_task(n, seed):
    """Bright cells with a dark vertical line (label 1) against plain bright cells (label 0), 16 px."""
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
    model, record = classifier.train_classifier(train_x, train_y, val_x, val_y, steps=120, batch_size=16,
                                                learning_rate=3e-3, check_every=20, seed=0)
    assert record.steps == 120 and record.check_steps == [20, 40, 60, 80, 100, 120]
    assert record.best_validation_loss == min(record.validation_loss)
    assert record.best_step == record.check_steps[int(np.argmin(record.validation_loss))]
    kept = classifier._binary_cross_entropy(val_y, classifier.predict_scores(model, val_x))
    assert kept == pytest.approx(record.best_validation_loss, abs=1e-5)  # the kept weights are the best check's
    assert classifier.evaluate(test_y, classifier.predict_scores(model, test_x))["roc_auc"] > 0.9
    again, _ = classifier.train_classifier(train_x, train_y, val_x, val_y, steps=20, batch_size=16,
                                           check_every=20, seed=0)
    twice, _ = classifier.train_classifier(train_x, train_y, val_x, val_y, steps=20, batch_size=16,
                                           check_every=20, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(again.get_weights(), twice.get_weights()))


def test_sample_vae_gives_images_in_range():
    from vae_overlay import model

    vae = model.build_vae(16, 2, seed=0)
    images = np.random.default_rng(0).random((10, 16, 16, 1)).astype(np.float32)
    samples = classifier.sample_vae(vae.encoder, vae.decoder, images, 7, seed=1)
    assert samples.shape == (7, 16, 16, 1) and samples.dtype == np.float32
    assert samples.min() >= 0 and samples.max() <= 1
    assert np.array_equal(samples, classifier.sample_vae(vae.encoder, vae.decoder, images, 7, seed=1))


def test_latent_collapse_is_detected():
    from vae_overlay import model

    vae = model.build_vae(16, 2, seed=0)
    images = np.random.default_rng(0).random((10, 16, 16, 1)).astype(np.float32)
    assert not classifier.latent_collapsed(vae.encoder, images)
    # dead hidden layer (what training collapse looks like): every image gets the same latent mean
    dense = vae.encoder.get_layer("dense")
    dense.set_weights([np.zeros_like(w) for w in dense.get_weights()])
    assert classifier.latent_collapsed(vae.encoder, images)


def test_mean_pairwise_rms():
    images = np.stack([np.full((4, 4, 1), v, np.float32) for v in (0.0, 0.1, 0.3)])
    assert classifier.mean_pairwise_rms(images) == pytest.approx((0.1 + 0.3 + 0.2) / 3)
