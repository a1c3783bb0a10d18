"""The overlay experiment's tools (paper, Section 4): sources, model variants, cluster checks,
overlays, fidelity.

The paper trains the VAE on many copies of a few defect images, "every minibatch holding samples of
the images to combine", expects one latent cluster per image, and overlays defects by decoding the
sum of latent vectors taken from different clusters. This module holds the pieces notebook 05 (and
the classifier experiment of notebook 06) needs to do that and to check it; `overlay_experiment`
assembles them into notebook 05's sweep, methods and latent-dimension studies.

* `load_sources`, `make_copies` — the source images with their masks, and the copies to train on
  (laid out as `vae_overlay.train.mixed_batches` expects).
* `Variant`, `VARIANTS`, `train_variant` — the paper's recipe and the changes tried to keep its
  latent space from collapsing; every variant trains through `vae_overlay.train.train_vae` (its
  caching rule included).
* `identification_gain` — what telling the sources apart is worth to the reconstruction loss
  (whether the latent space is degenerate: `vae_overlay.diagnostics.latent_report`).
* `generate_overlays` — overlays in bulk by the methods of `vae_overlay.overlay_methods`.
* `fidelity` (`background_estimate`, `defect_threshold`) — how much of each source defect an overlay
  shows, and what it shows that no source has.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from vae_overlay import latent, model, overlay_methods, paper, train
from vae_overlay.data import ImageSkipped, load_image

# an overlay pixel is "defect" if darkened by >= half the sources' typical depth
DEFECT_DEPTH_FRACTION = 0.5
SPURIOUS_TOLERANCE = 1  # px: defect pixels this close to a source mask are not counted as spurious


# ----------------------------------------------------------------------------- sources and copies


def mask_path(image_path: str | Path) -> Path | None:
    """The `<stem>_mask.<ext>` file next to an image (any extension), or None."""
    image_path = Path(image_path)
    found = sorted(image_path.parent.glob(f"{image_path.stem}_mask.*"))
    return found[0] if found else None


class SourcesUnusable(ValueError):
    """Overlay sources that cannot be used (too few, missing, not an image), with the facts
    (`config.advised` adds what to do in the notebooks)."""


def load_sources(paths, size: int):
    """Source images (k, size, size, 1), their masks (k, size, size) bool or None, and names.

    Masks are the `<stem>_mask.*` files beside the images, resized like the images and thresholded
    at 0.5; `masks` is None unless every source has one (fidelity needs all of them).
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise SourcesUnusable(f"the overlay needs at least two source images, got {len(paths)}.")
    images, masks = [], []
    for path in paths:
        if not path.is_file():
            raise SourcesUnusable(f"overlay source {path} does not exist.")
        try:
            images.append(load_image(path, size))
        except ImageSkipped as reason:
            raise SourcesUnusable(f"overlay source {path} cannot be used: {reason}") from None
        found = mask_path(path)
        masks.append(load_image(found, size) > 0.5 if found else None)
    have_masks = all(m is not None for m in masks)
    return (
        np.stack(images)[..., None].astype(np.float32),
        np.stack(masks) if have_masks else None,
        [p.stem for p in paths],
    )


def make_copies(images, copies: int):
    """`copies` copies of each source, grouped by source: (k * copies, s, s, 1) and labels (k *
    copies,).

    This is the layout `vae_overlay.train.mixed_batches(k, copies, batch_size)` samples from."""
    images = np.asarray(images, np.float32)
    if copies < 1:
        raise ValueError(f"copies must be at least 1, got {copies}")
    return np.repeat(images, copies, axis=0), np.repeat(np.arange(len(images)), copies)


# ----------------------------------------------------------------------------- model variants


@dataclass(frozen=True)
class Variant:
    """One recipe for the overlay VAE: model options, KL weight and optimiser; the defaults are the
    paper's."""

    name: str = "paper"
    activation: str = "relu"  # of the encoder's Dense(16) layer
    dense_units: int = 16
    log_var_bias: float = 0.0  # initial bias of z_log_var (0: Keras default zeros)
    # encoder input: per-pixel (x - mean) / std over the training copies
    standardize_input: bool = False
    kl_warmup_epochs: float = 0.0  # KL weight rises linearly from 0 to 1 over this many epochs
    beta: float = 1.0  # weight of the KL term (beta-VAE)
    free_bits: float = 0.0  # nats per latent dimension the encoder may spend without KL cost
    optimizer: str = paper.OPTIMIZER  # or "adam"
    batch_size: int = paper.BATCH_SIZE
    learning_rate: float = paper.LEARNING_RATE

    def describe(self) -> str:
        """Short text: what differs from the paper's recipe."""
        paper = Variant()
        changes = [
            f"{key}={value}"
            for key, value in asdict(self).items()
            if key != "name" and value != getattr(paper, key)
        ]
        return ", ".join(changes) or "paper's recipe"

    def model_options(self) -> dict:
        """train_vae's `model_options`: only the options that differ from the paper's model."""
        keys = ("activation", "dense_units", "log_var_bias", "standardize_input")
        return {
            key: getattr(self, key) for key in keys if getattr(self, key) != getattr(PAPER, key)
        }

    def kl_weight(self) -> train.KLWeight:
        """train_vae's `kl_weight`: beta, warm-up epochs and free bits."""
        return train.KLWeight(
            beta=self.beta, warmup_epochs=self.kl_warmup_epochs, free_bits=self.free_bits
        )


PAPER = Variant()
VARIANTS = {
    "paper": PAPER,
    "leaky ReLU": Variant("leaky ReLU", activation="leaky_relu"),
    "Dense(64)": Variant("Dense(64)", dense_units=64),
    "log-var init -6": Variant("log-var init -6", log_var_bias=-6.0),
    "KL warm-up": Variant("KL warm-up", kl_warmup_epochs=10),
    "batch 30": Variant("batch 30", batch_size=30),
    "standardised input": Variant("standardised input", standardize_input=True),
    "standardised + leaky": Variant(
        "standardised + leaky", standardize_input=True, activation="leaky_relu"
    ),
    "beta 0.5": Variant("beta 0.5", beta=0.5),
    # 0.5 nats per dimension: the two dimensions together get ~ln 3 = 1.1 nats, what telling three
    # sources apart costs
    "free bits": Variant("free bits", free_bits=0.5),
    "Adam 1e-3": Variant("Adam 1e-3", optimizer="adam", learning_rate=1e-3),
    "RMSprop 5e-4": Variant("RMSprop 5e-4", learning_rate=5e-4),
}


def train_variant(
    sources,
    copies: int,
    variant: Variant,
    run_dir,
    *,
    latent_dim: int = paper.LATENT_DIM,
    epochs: int = paper.OVERLAY_EPOCHS,
    seed: int = 42,
    retrain: bool = False,
    verbose: int = 0,
):
    """Train `variant` on `copies` copies of each source with mixed minibatches; returns (vae,
    history).

    A thin call of `train.train_vae` (so its caching rule holds: a finished run in `run_dir` with
    the same settings is loaded; other settings raise runs.RunMismatch unless `retrain`). Every
    minibatch holds every source (`train.mixed_batches`). `history` is train_vae's per-epoch losses.
    """
    images, _ = make_copies(sources, copies)
    return train.train_vae(
        images,
        run_dir,
        latent_dim=latent_dim,
        epochs=epochs,
        batch_size=variant.batch_size,
        learning_rate=variant.learning_rate,
        seed=seed,
        retrain=retrain,
        verbose=verbose,
        batches=train.mixed_batches(len(sources), copies, variant.batch_size),
        optimizer=variant.optimizer,
        kl_weight=variant.kl_weight(),
        model_options=variant.model_options(),
    )


# ---------------------------------------------------------- what telling the sources apart is worth


def identification_gain(sources) -> np.ndarray:
    """Nats per image by which the reconstruction loss falls when the decoder outputs each source
    itself instead of the sources' pixel mean (what a collapsed VAE outputs): sum over pixels of
    KL(Bernoulli(x_i) || Bernoulli(mean)). Telling k sources apart costs at least ln k nats of
    KL."""
    sources = np.clip(np.asarray(sources, np.float64), 1e-7, 1 - 1e-7)
    mean = sources.mean(axis=0, keepdims=True)
    gain = sources * np.log(sources / mean) + (1 - sources) * np.log((1 - sources) / (1 - mean))
    return gain.reshape(len(sources), -1).sum(axis=1)


# ----------------------------------------------------------------------------- overlay methods


def subsets(k: int, sizes=(2, 3)) -> list[tuple[int, ...]]:
    """All index tuples of the given sizes out of k sources (pairs, then triples, ...)."""
    return [combo for size in sizes if size <= k for combo in combinations(range(k), size)]


def generate_overlays(
    encoder,
    decoder,
    images,
    n: int,
    seed: int = 0,
    method: str = "sum",
    pairs: bool = True,
    z_background=None,
    sample: bool = False,
    batch_size: int = 256,
    weight: float = 1.0,
):
    """n overlays of randomly drawn pairs (or triples) of `images`, seeded.

    Returns (overlays float32 (n, s, s, 1), sources int (n, 2 or 3)): the indices into `images` of
    the sources combined in each overlay (distinct, ascending). Latent vectors are the encoder means
    (or, with sample=True, draws from each source's posterior). Methods: those of
    `overlay_methods.METHODS` that need a model: "sum" (the paper), "mean", "offset" and "weighted"
    (background vector `z_background` if given, else the mean latent of all `images`; `weight` for
    "weighted"), and "composite": decode every source's vector and keep the darkest pixel (the
    overlay is made in pixel space; the VAE only supplies the decoded defects).
    """
    images = np.asarray(images, np.float32)
    group = 2 if pairs else 3
    if len(images) < group:
        raise ValueError(
            f"need at least {group} images to overlay {'pairs' if pairs else 'triples'}, "
            f"got {len(images)}"
        )
    with_model = [key for key, found in overlay_methods.METHODS.items() if found.needs_model]
    if method not in with_model:
        raise ValueError(f"method must be one of {with_model}, got {method!r}")
    z_mean, z_log_var = model.encode(encoder, images, batch_size, dtype=np.float64)
    z_bg = z_mean.mean(axis=0) if z_background is None else np.asarray(z_background, np.float64)
    rng = np.random.default_rng(seed)
    sources = np.zeros((n, group), np.int64)
    for row in range(n):
        sources[row] = np.sort(rng.choice(len(images), size=group, replace=False))
    chosen = z_mean[sources]  # (n, group, d)
    if sample:
        chosen = model.reparameterize(chosen, z_log_var[sources], rng.standard_normal(chosen.shape))
    size = int(decoder.outputs[0].shape[1])
    if overlay_methods.METHODS[method].space == "decoded":
        flat = chosen.reshape(-1, chosen.shape[-1])
        decoded = latent.decode_batched(decoder, flat, batch_size, dtype=np.float32)
        decoded = decoded.reshape(n, group, size, size, 1)
        combined = [overlay_methods.combine(method, decodes) for decodes in decoded]
        return np.array(combined, np.float32).reshape(n, size, size, 1), sources
    latents = [overlay_methods.combine(method, z, z_bg, weight) for z in chosen]
    latents = np.array(latents, np.float64).reshape(n, z_mean.shape[1])
    return latent.decode_batched(decoder, latents, batch_size, dtype=np.float32), sources


# ----------------------------------------------------------------------- fidelity against the masks


def background_estimate(sources, masks) -> np.ndarray:
    """The defect-free surface: per pixel, the mean of the sources whose mask does not cover it.

    Where every mask covers a pixel (no source shows the surface there) the sources' maximum is
    used. For sources that share one surface (the synthetic trio) this is the surface itself.
    """
    sources = (
        np.asarray(sources, np.float64)[..., 0]
        if np.ndim(sources) == 4
        else np.asarray(sources, np.float64)
    )
    clear = ~np.asarray(masks, bool)
    count = clear.sum(axis=0)
    total = np.where(clear, sources, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), sources.max(axis=0))


def defect_threshold(
    sources, masks, background=None, fraction: float = DEFECT_DEPTH_FRACTION
) -> float:
    """Darkening that makes an overlay pixel a defect pixel: `fraction` of the median darkening
    (background - source) over all source mask pixels."""
    sources = (
        np.asarray(sources, np.float64)[..., 0]
        if np.ndim(sources) == 4
        else np.asarray(sources, np.float64)
    )
    masks = np.asarray(masks, bool)
    background = background_estimate(sources, masks) if background is None else background
    depth = (background[None] - sources)[masks]
    if depth.size == 0:
        raise ValueError("the masks are empty: fidelity needs at least one defect pixel")
    return float(fraction * np.median(depth))


def fidelity(
    overlay, masks, background, threshold: float, tolerance: int = SPURIOUS_TOLERANCE
) -> dict:
    """Per-source recall, spurious fraction and one score for an overlay image.

    A pixel is shown as defect when `background - overlay > threshold`. recall[i]: the fraction of
    mask i shown as defect. spurious: the fraction of the shown defect pixels farther than
    `tolerance` px (chessboard distance) from every mask (0 when nothing is shown). score:
    mean recall x (1 - spurious): 1 for an overlay that shows every defect and nothing else, 0 for
    one that shows nothing or only spurious pixels.
    """
    from scipy import ndimage

    overlay = np.asarray(overlay, np.float64).reshape(np.shape(background))
    masks = np.asarray(masks, bool)
    shown = (np.asarray(background, np.float64) - overlay) > threshold
    recall = np.array([shown[m].mean() if m.any() else np.nan for m in masks])
    union = masks.any(axis=0)
    if tolerance > 0:
        union = ndimage.binary_dilation(
            union, structure=np.ones((3, 3), bool), iterations=tolerance
        )
    spurious = float((shown & ~union).sum() / shown.sum()) if shown.any() else 0.0
    mean_recall = float(np.nanmean(recall))
    return {
        "recall": recall,
        "mean_recall": mean_recall,
        "min_recall": float(np.nanmin(recall)),
        "spurious": spurious,
        "score": mean_recall * (1.0 - spurious),
        "shown": shown,
    }
