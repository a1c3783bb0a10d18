"""The paper's proposed next stage: a small CNN defect classifier trained on original vs extended
sets.

Pieces of notebook 06: the ELPV defective/functional task and its seeded splits, the leakage guard
(no test cell, or a copy of it, may reach any training set), classical augmentation, images
sampled from a VAE, the classifier and its fixed-step training with model selection on the
validation set, the test metrics (accuracy, balanced accuracy, ROC AUC) and the paired statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from sklearn import metrics

from vae_overlay.data import as_uint8, square_resize, squared_distances
from vae_overlay.elpv import elpv_image, elpv_labels
from vae_overlay.model import encode_mean
from vae_overlay.runs import atomic_write_text, fingerprint, seed_everything

DEFECTIVE, FUNCTIONAL = 1, 0  # class labels: ELPV defect probability 1.0 -> 1, 0.0 -> 0
MODULE_TYPES = ("mono", "poly", "both")


class LeakageError(AssertionError):
    """A test-set cell, or a copy of it, was found in a set used for training."""


# ----------------------------------------------------------------------------- task and splits


def elpv_task(module_type: str = "mono") -> tuple[list[str], np.ndarray]:
    """(cell names, labels) of ELPV cells with defect probability 1.0 (label 1) or 0.0 (label 0)."""
    if module_type not in MODULE_TYPES:
        raise ValueError(f"module_type must be one of {MODULE_TYPES}, got {module_type!r}")
    names, labels = [], []
    for name, probability, kind in elpv_labels():
        if probability in (0.0, 1.0) and module_type in (kind, "both"):
            names.append(name)
            labels.append(DEFECTIVE if probability == 1.0 else FUNCTIONAL)
    return names, np.array(labels, dtype=np.int32)


def _per_class_draw(names, labels, counts: dict[int, int], rng: np.random.Generator):
    """Draw counts[label] names of each class without replacement; returns (drawn, rest), both
    sorted."""
    names = np.asarray(names)
    drawn = []
    for label, count in counts.items():
        members = np.sort(names[labels == label])
        if count > len(members):
            raise ValueError(
                f"asked for {count} cells of class {label}, only {len(members)} available; "
                "lower the image counts in the parameters cell."
            )
        drawn.extend(rng.choice(members, size=count, replace=False).tolist())
    rest = sorted(set(names.tolist()) - set(drawn))
    return sorted(drawn), rest


def split_test(names, labels, test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A fixed test set (test_fraction of each class, rounded; the classes keep their ratio) and the
    pool of the remaining cells, from which training and validation cells are drawn."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie between 0 and 1, got {test_fraction}")
    labels = np.asarray(labels)
    counts = {
        label: int(round(test_fraction * int((labels == label).sum())))
        for label in (DEFECTIVE, FUNCTIONAL)
    }
    rng = np.random.default_rng([seed, 0])  # depends on the seed only
    return _per_class_draw(names, labels, counts, rng)


def draw_train_val(
    pool, labels_by_name: dict, n_train_per_class: int, n_val_per_class: int, seed: int
) -> tuple[list[str], list[str]]:
    """Balanced training and validation sets drawn from the pool (disjoint), reproducible by
    seed."""
    pool = sorted(pool)
    labels = np.array([labels_by_name[name] for name in pool])
    rng = np.random.default_rng([seed, 1])
    counts = {
        DEFECTIVE: n_train_per_class + n_val_per_class,
        FUNCTIONAL: n_train_per_class + n_val_per_class,
    }
    chosen, _ = _per_class_draw(pool, labels, counts, rng)
    chosen_labels = np.array([labels_by_name[name] for name in chosen])
    val, _ = _per_class_draw(
        chosen, chosen_labels, {DEFECTIVE: n_val_per_class, FUNCTIONAL: n_val_per_class}, rng
    )
    train = sorted(set(chosen) - set(val))
    return train, val


def write_cell_list(path: str | Path, names, labels_by_name: dict, role: str) -> Path:
    """Write a split as CSV (name, label, role), atomically."""
    rows = "".join(f"{name},{labels_by_name[name]},{role}\n" for name in sorted(names))
    atomic_write_text(path, "name,label,role\n" + rows)
    return Path(path)


def read_cells(names, image_size: int) -> tuple[np.ndarray, list[str]]:
    """ELPV cells by name -> (images (n, size, size, 1) float32 in [0, 1], resized with Lanczos as
    in notebook 01; the pixel_hash of each cell at full resolution). Each file is read once."""
    cells = [elpv_image(name) for name in names]
    images = [square_resize(cell, image_size)[..., None] for cell in cells]
    stacked = (
        np.stack(images).astype(np.float32)
        if images
        else np.zeros((0, image_size, image_size, 1), np.float32)
    )
    return stacked, [pixel_hash(cell) for cell in cells]


# ----------------------------------------------------------------------------- leakage guard


def pixel_hash(image) -> str:
    """The `runs.fingerprint` of an image's pixels rounded to 8 bits (`data.as_uint8`), its shape
    included: equal for exact copies, whether float32, float64 or 8-bit."""
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    quantised = as_uint8(array)
    return fingerprint(iter((repr(quantised.shape).encode(), quantised.tobytes())))


def find_leaks(
    test_names, test_images, train_names, train_images, near_copy_rms: float = 1 / 255
) -> list[str]:
    """Every way a test cell reaches a training set: same name, same pixels, or a near copy.

    A near copy is a training image within `near_copy_rms` (root-mean-square pixel difference,
    images in [0, 1]) of a test image: a re-encoded or slightly altered duplicate under another
    name.
    """
    leaks = [f"name {name} is in both sets" for name in sorted(set(test_names) & set(train_names))]
    test_hashes = {pixel_hash(image): name for name, image in zip(test_names, test_images)}
    for name, image in zip(train_names, train_images):
        digest = pixel_hash(image)
        if digest in test_hashes:
            leaks.append(
                f"training image {name} has the same pixels as test cell {test_hashes[digest]}"
            )
    if near_copy_rms > 0 and len(test_images) and len(train_images):
        distances = rms_distances(test_images, train_images)
        for i, j in zip(*np.nonzero(distances <= near_copy_rms)):
            if pixel_hash(test_images[i]) != pixel_hash(train_images[j]):
                leaks.append(
                    f"training image {train_names[j]} is a near copy of test cell {test_names[i]} "
                    f"(RMS difference {distances[i, j]:.4f})"
                )
    return leaks


def rms_distances(images_a, images_b) -> np.ndarray:
    """Root-mean-square pixel difference between every image of a (n, ...) and of b (m, ...): (n,
    m)."""
    a = np.asarray(images_a, dtype=np.float64).reshape(len(images_a), -1)
    b = np.asarray(images_b, dtype=np.float64).reshape(len(images_b), -1)
    squared = squared_distances(a, b)
    return np.sqrt(np.maximum(squared, 0.0) / a.shape[1])


def assert_no_leakage(
    test_names, test_images, training_sets: dict, near_copy_rms: float = 1 / 255
) -> None:
    """Raise LeakageError if any of training_sets {what: (names, images)} holds a test cell or a
    copy."""
    problems = []
    for what, (names, images) in training_sets.items():
        problems += [
            f"{what}: {leak}"
            for leak in find_leaks(test_names, test_images, names, images, near_copy_rms)
        ]
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise LeakageError(f"{len(problems)} test-set leak(s):\n  {shown}{more}")


# ----------------------------------------------------------------------- extending the training set


def augmenter(seed: int, max_rotation: float = 5.0, brightness: float = 0.1):
    """A seeded function images (n, s, s, 1) in [0, 1] -> a new float32 array, same shape: random
    horizontal and vertical flips (each with probability 1/2, independently), a rotation within
    +-max_rotation degrees (bilinear, edges repeated), brightness x (1 +- brightness), clipped to
    [0, 1]. Each call draws new transformations; the sequence of calls is fixed by `seed`.

    Flips keep the busbars horizontal; rotations stay small because ELPV cells are aligned. Two
    RandomFlip layers, because RandomFlip("horizontal_and_vertical") draws one coin for both axes.
    """
    steps = [
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomFlip("vertical", seed=seed + 1),
    ]
    if max_rotation:
        steps.append(
            layers.RandomRotation(
                max_rotation / 360, fill_mode="nearest", interpolation="bilinear", seed=seed + 2
            )
        )
    pipeline = keras.Sequential(steps)
    rng = np.random.default_rng([seed, 4])

    # ~5x faster than eager calls; no Python control flow
    @tf.function(reduce_retracing=True, autograph=False)
    def flip_and_rotate(images):
        return pipeline(images, training=True)

    def augment(images) -> np.ndarray:
        out = np.array(flip_and_rotate(tf.constant(images, dtype=tf.float32)), dtype=np.float32)
        # Multiplicative brightness in NumPy: keras.layers.RandomBrightness adds a delta instead.
        out *= rng.uniform(1 - brightness, 1 + brightness, len(out)).astype(np.float32)[
            :, None, None, None
        ]
        return np.clip(out, 0.0, 1.0)

    return augment


def classical_augment(
    images, rng: np.random.Generator, max_rotation: float = 5.0, brightness: float = 0.1
) -> np.ndarray:
    """One call of an `augmenter` seeded from `rng` (see there): flips, a small rotation,
    brightness."""
    return augmenter(int(rng.integers(2**31 - 3)), max_rotation, brightness)(images)


def copy_paste_cracks(
    sources, targets, n: int, seed: int, quantile: float = 0.97, border: int = 4
) -> np.ndarray:
    """n cells with a pasted crack, no VAE: the crack of a random `sources` cell (pixels whose
    `elpv.ridge_map` is above the `quantile` of that cell's own, `border` px from the edge, grown by
    1 px) pasted onto a random `targets` cell, the darker pixel winning. The non-generative baseline
    for the VAE conditions."""
    return copy_paste_pairs(sources, targets, n, seed, quantile, border)[0]


def copy_paste_pairs(
    sources, targets, n: int, seed: int, quantile: float = 0.97, border: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """(`copy_paste_cracks`, the `targets` cell each crack was pasted on): the same draws, so adding
    both sets adds as many functional cells as cracked ones, the same backgrounds with and without
    the crack."""
    from scipy import ndimage

    from vae_overlay.elpv import ridge_map

    sources, targets = np.asarray(sources, np.float32), np.asarray(targets, np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, *targets.shape[1:]), np.float32)
    backgrounds = np.empty_like(out)
    for k in range(n):
        source, target = (
            sources[rng.integers(len(sources))][..., 0],
            targets[rng.integers(len(targets))],
        )
        ridge = ridge_map(source, sigma=1.0)
        inner = np.zeros(ridge.shape, bool)
        inner[border:-border, border:-border] = True
        mask = ndimage.binary_dilation((ridge > np.quantile(ridge[inner], quantile)) & inner)
        out[k] = np.where(mask[..., None], np.minimum(source[..., None], target), target)
        backgrounds[k] = target
    return out, backgrounds


def mean_pairwise_rms(images) -> float:
    """Mean root-mean-square pixel difference over all pairs of distinct images: how varied a set
    is."""
    distances = rms_distances(images, images)
    return float(distances[~np.eye(len(distances), dtype=bool)].mean())


def sample_vae(encoder, decoder, images, n: int, seed: int) -> np.ndarray:
    """n images decoded from z ~ N(mean, covariance) of the training images' latent means.

    The paper samples a fixed latent rectangle; the occupied region depends on image size and
    training, so the Gaussian fitted to the encoded training images samples where they lie.
    """
    means = encode_mean(encoder, images).astype(np.float64)
    rng = np.random.default_rng([seed, 2])
    covariance = (
        np.atleast_2d(np.cov(means, rowvar=False)) if len(means) > 1 else np.eye(means.shape[1])
    )
    z = rng.multivariate_normal(means.mean(axis=0), covariance, size=n).astype(np.float32)
    return np.asarray(decoder(z, training=False), dtype=np.float32)


# ----------------------------------------------------------------------------- classifier


def build_classifier(image_size: int = 64, seed: int | None = None) -> keras.Model:
    """Small all-convolutional CNN: 4 x [Conv 3x3, stride 2, ReLU] with 16, 32, 64, 64 filters (64
    -> 4 px), global average pool, Dropout 0.3, Dense 1 sigmoid = P(cell is defective); 60,289
    weights.

    Strided convolutions instead of pooling keep a training step at ~20 ms on 2 CPU cores.
    """
    seed_everything(seed)
    inputs = keras.Input(shape=(image_size, image_size, 1), name="cell")
    x = layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(inputs)
    for number, filters in enumerate((16, 32, 64, 64), start=1):
        x = layers.Conv2D(
            filters, 3, strides=2, padding="same", activation="relu", name=f"conv_{number}"
        )(x)
    x = layers.GlobalAveragePooling2D(name="average")(x)
    x = layers.Dropout(0.3, seed=seed, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="defective")(x)
    return keras.Model(inputs, outputs, name="classifier")


@dataclass
class TrainingRecord:
    """What one classifier training did: validation loss at each check, the step kept, the steps
    run."""

    steps: int
    check_steps: list
    validation_loss: list
    best_step: int
    best_validation_loss: float


def predict_scores(model, images, batch_size: int = 256) -> np.ndarray:
    """Defect probabilities (n,) for images (n, s, s, 1)."""
    images = np.asarray(images, dtype=np.float32)
    parts = [
        np.asarray(model(images[i : i + batch_size], training=False)).reshape(-1)
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def validation_loss(model, images, labels) -> float:
    """Mean binary cross-entropy of the model's defect probabilities on (images, labels)."""
    return float(
        metrics.log_loss(
            np.asarray(labels, dtype=int), predict_scores(model, images), labels=[0, 1]
        )
    )


def train_classifier(
    train_images,
    train_labels,
    val_images,
    val_labels,
    *,
    steps: int = 600,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    check_every: int = 25,
    augment: bool = False,
    seed: int = 0,
    image_size: int | None = None,
):
    """Train a new classifier for exactly `steps` Adam steps; keep the weights of the check with the
    lowest validation loss (model selection on validation only). Returns (model, TrainingRecord).

    Minibatches are drawn uniformly at random (with a seeded generator) from the training images;
    with `augment`, each batch is passed through an `augmenter` (seeded by `seed`) first.
    """
    train_images = np.asarray(train_images, dtype=np.float32)
    train_labels = np.asarray(train_labels, dtype=np.float32)
    image_size = image_size or train_images.shape[1]
    model = build_classifier(image_size, seed=seed)
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    loss_function = keras.losses.BinaryCrossentropy()
    weights = model.trainable_weights

    @tf.function(reduce_retracing=True, autograph=False)
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            loss = loss_function(labels, model(images, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss

    rng = np.random.default_rng([seed, 3])
    augment_batch = augmenter(seed) if augment else None
    best = (np.inf, 0, model.get_weights())
    check_steps, losses = [], []
    for step in range(1, steps + 1):
        index = rng.integers(0, len(train_images), size=batch_size)
        batch = train_images[index]
        if augment_batch is not None:
            batch = augment_batch(batch)
        train_step(tf.constant(batch), tf.constant(train_labels[index, None]))
        if step % check_every == 0 or step == steps:
            loss = validation_loss(model, val_images, val_labels)
            check_steps.append(step)
            losses.append(loss)
            if loss < best[0]:
                best = (loss, step, model.get_weights())
    model.set_weights(best[2])
    return model, TrainingRecord(steps, check_steps, losses, best[1], float(best[0]))


# --------------------------------------------------------------------------- metrics and statistics


def evaluate(labels, scores, threshold: float = 0.5) -> dict:
    """accuracy, balanced accuracy (mean of the two class recalls) and ROC AUC of scores against
    labels (sklearn.metrics). Raises ValueError unless both classes are present (ROC AUC is
    undefined then)."""
    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) < 2:
        raise ValueError("ROC AUC needs at least one positive and one negative label")
    predicted = (np.asarray(scores) >= threshold).astype(int)
    return {
        "accuracy": float(metrics.accuracy_score(labels, predicted)),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(labels, predicted)),
        "roc_auc": float(metrics.roc_auc_score(labels, scores)),
    }
