"""The overlay experiment's tools (paper, Section 4): sources, model variants, cluster checks, overlays, fidelity.

The paper trains the VAE on many copies of a few defect images, "every minibatch holding samples of
the images to combine", expects one latent cluster per image, and overlays defects by decoding the
sum of latent vectors taken from different clusters. This module holds the pieces notebook 05 (and the
classifier experiment of notebook 06) needs to do that and to check it; `overlay_experiment` assembles
them into notebook 05's sweep, methods and latent-dimension studies.

* `load_sources`, `make_copies` — the source images with their masks, and the copies to train on (laid out
  as `vae_overlay.train.mixed_batches` expects).
* `Variant`, `VARIANTS`, `train_variant` — the paper's recipe and the changes tried to keep its latent space
  from collapsing; every variant trains through `vae_overlay.train.train_vae` (its caching rule included).
* `latent_report` (`cluster_separation`, `kl_per_source`, `dead_units`) — is the latent space degenerate?
* `decode`, `generate_overlays` — decoding, and overlays in bulk by the methods of
  `vae_overlay.overlay_methods`.
* `fidelity` (`background_estimate`, `defect_threshold`) — how much of each source defect an overlay
  shows, and what it shows that no source has.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

import keras
import numpy as np

from vae_overlay import overlay_methods, train
from vae_overlay.data import ImageSkipped, load_image

COLLAPSE_THRESHOLD = 1.0  # pooled sd between centres: closer clusters are one (> 24% of draws nearer the other centre)
SEPARATION_THRESHOLD = 3.0  # "far apart" (the paper's expectation): < 2% of draws nearer the other centre
DEFECT_DEPTH_FRACTION = 0.5  # an overlay pixel is "defect" if darkened by >= half the sources' typical depth
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

    Masks are the `<stem>_mask.*` files beside the images, resized like the images and thresholded at
    0.5; `masks` is None unless every source has one (fidelity needs all of them).
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
    return (np.stack(images)[..., None].astype(np.float32),
            np.stack(masks) if have_masks else None,
            [p.stem for p in paths])


def make_copies(images, copies: int):
    """`copies` copies of each source, grouped by source: (k * copies, s, s, 1) and labels (k * copies,).

    This is the layout `vae_overlay.train.mixed_batches(k, copies, batch_size)` samples from."""
    images = np.asarray(images, np.float32)
    if copies < 1:
        raise ValueError(f"copies must be at least 1, got {copies}")
    return np.repeat(images, copies, axis=0), np.repeat(np.arange(len(images)), copies)


# ----------------------------------------------------------------------------- model variants

@dataclass(frozen=True)
class Variant:
    """One recipe for the overlay VAE: model options, KL weight and optimiser; the defaults are the paper's."""

    name: str = "paper"
    activation: str = "relu"  # of the encoder's Dense(16) layer
    dense_units: int = 16
    log_var_bias: float = 0.0  # initial bias of z_log_var (0: Keras default zeros)
    standardize_input: bool = False  # encoder input: per-pixel (x - mean) / std over the training copies
    kl_warmup_epochs: float = 0.0  # KL weight rises linearly from 0 to 1 over this many epochs
    beta: float = 1.0  # weight of the KL term (beta-VAE)
    free_bits: float = 0.0  # nats per latent dimension the encoder may spend without KL cost
    optimizer: str = "rmsprop"  # "rmsprop" (the paper) or "adam"
    batch_size: int = 10
    learning_rate: float = 2e-3

    def describe(self) -> str:
        """Short text: what differs from the paper's recipe."""
        paper = Variant()
        changes = [f"{key}={value}" for key, value in asdict(self).items()
                   if key != "name" and value != getattr(paper, key)]
        return ", ".join(changes) or "paper's recipe"

    def model_options(self) -> dict:
        """train_vae's `model_options`: only the options that differ from the paper's model."""
        keys = ("activation", "dense_units", "log_var_bias", "standardize_input")
        return {key: getattr(self, key) for key in keys if getattr(self, key) != getattr(PAPER, key)}

    def kl_weight(self) -> train.KLWeight:
        """train_vae's `kl_weight`: beta, warm-up epochs and free bits."""
        return train.KLWeight(beta=self.beta, warmup_epochs=self.kl_warmup_epochs, free_bits=self.free_bits)


PAPER = Variant()
VARIANTS = {
    "paper": PAPER,
    "leaky ReLU": Variant("leaky ReLU", activation="leaky_relu"),
    "Dense(64)": Variant("Dense(64)", dense_units=64),
    "log-var init -6": Variant("log-var init -6", log_var_bias=-6.0),
    "KL warm-up": Variant("KL warm-up", kl_warmup_epochs=10),
    "batch 30": Variant("batch 30", batch_size=30),
    "standardised input": Variant("standardised input", standardize_input=True),
    "standardised + leaky": Variant("standardised + leaky", standardize_input=True, activation="leaky_relu"),
    "beta 0.5": Variant("beta 0.5", beta=0.5),
    # 0.5 nats per dimension: the two dimensions together get ~ln 3 = 1.1 nats, what telling three sources apart costs
    "free bits": Variant("free bits", free_bits=0.5),
    "Adam 1e-3": Variant("Adam 1e-3", optimizer="adam", learning_rate=1e-3),
    "RMSprop 5e-4": Variant("RMSprop 5e-4", learning_rate=5e-4),
}


def train_variant(sources, copies: int, variant: Variant, run_dir, *, latent_dim: int = 2, epochs: int = 20,
                  seed: int = 42, retrain: bool = False, verbose: int = 0):
    """Train `variant` on `copies` copies of each source with mixed minibatches; returns (vae, history).

    A thin call of `train.train_vae` (so its caching rule holds: a finished run in `run_dir` with the same
    settings is loaded; other settings raise runs.RunMismatch unless `retrain`). Every minibatch holds
    every source (`train.mixed_batches`). `history` is train_vae's per-epoch losses.
    """
    images, _ = make_copies(sources, copies)
    return train.train_vae(
        images, run_dir, latent_dim=latent_dim, epochs=epochs, batch_size=variant.batch_size,
        learning_rate=variant.learning_rate, seed=seed, retrain=retrain, verbose=verbose,
        batches=train.mixed_batches(len(sources), copies, variant.batch_size), optimizer=variant.optimizer,
        kl_weight=variant.kl_weight(), model_options=variant.model_options())


# ----------------------------------------------------------------------------- is the latent space degenerate?

def posterior(encoder, images):
    """(z_mean, z_log_var) of images (n, s, s, 1) as float64 arrays (n, d)."""
    z_mean, z_log_var = encoder(np.asarray(images, np.float32), training=False)[:2]
    return np.asarray(z_mean, np.float64), np.asarray(z_log_var, np.float64)


def sample_latents(z_mean, z_log_var, n_per_source: int, seed: int = 0):
    """n_per_source draws z = mean + exp(log_var / 2) * eps for every source: points (k*n, d), labels."""
    z_mean, z_log_var = np.asarray(z_mean, np.float64), np.asarray(z_log_var, np.float64)
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((len(z_mean), n_per_source, z_mean.shape[1]))
    points = z_mean[:, None, :] + np.exp(0.5 * z_log_var)[:, None, :] * eps
    return points.reshape(-1, z_mean.shape[1]), np.repeat(np.arange(len(z_mean)), n_per_source)


def kl_per_source(z_mean, z_log_var) -> np.ndarray:
    """KL(q(z|x_i) || N(0, I)) in nats for every source (summed over latent dimensions)."""
    z_mean, z_log_var = np.asarray(z_mean, np.float64), np.asarray(z_log_var, np.float64)
    return (-0.5 * (1.0 + z_log_var - z_mean**2 - np.exp(z_log_var))).sum(axis=1)


def cluster_separation(points, labels, merge_below: float = COLLAPSE_THRESHOLD,
                       separated_from: float = SEPARATION_THRESHOLD) -> dict:
    """How far apart the clusters of labelled latent points are, relative to their spread.

    For clusters i, j with centres c and spreads s (per-axis standard deviation: the RMS distance to
    the centre over sqrt(d)), ratio[i, j] = |c_i - c_j| / sqrt(s_i^2 + s_j^2). For two isotropic
    Gaussian clusters of equal spread, a point drawn from one lies nearer the other's centre with
    probability Phi(-ratio / sqrt(2)): 50% when the centres coincide, 24% at ratio 1, 7.9% at 2,
    1.7% at 3. Clusters closer than `merge_below` are merged (connected components) and the model is
    "collapsed" when fewer clusters than sources remain; "separated" when every pair is at least
    `separated_from` apart; "overlapping" in between (distinct centres whose draws mix).
    """
    points = np.asarray(points, np.float64)
    labels = np.asarray(labels)
    sources = np.unique(labels)
    centres = np.stack([points[labels == s].mean(axis=0) for s in sources])
    spreads = np.array([np.sqrt(((points[labels == s] - c) ** 2).sum(axis=1).mean() / points.shape[1])
                        for s, c in zip(sources, centres)])
    k = len(sources)
    ratio = np.full((k, k), np.inf)
    for i, j in combinations(range(k), 2):
        scale = np.sqrt(spreads[i] ** 2 + spreads[j] ** 2)
        distance = np.linalg.norm(centres[i] - centres[j])
        ratio[i, j] = ratio[j, i] = distance / scale if scale > 0 else (np.inf if distance > 0 else 0.0)
    parent = list(range(k))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j in combinations(range(k), 2):
        if ratio[i, j] < merge_below:
            parent[root(i)] = root(j)
    n_clusters = len({root(i) for i in range(k)})
    min_ratio = float(ratio[np.triu_indices(k, 1)].min()) if k > 1 else float("inf")
    collapsed = n_clusters < k
    verdict = "collapsed" if collapsed else ("separated" if min_ratio >= separated_from else "overlapping")
    return {"centres": centres, "spreads": spreads, "ratio": ratio, "min_ratio": min_ratio,
            "n_clusters": n_clusters, "n_sources": k, "collapsed": collapsed, "verdict": verdict}


def dead_units(encoder, images, layer_name: str = "dense") -> tuple[int, int]:
    """(units of the encoder's hidden Dense layer whose output is <= 0 for every image, total units).

    For ReLU these units output exactly 0 for all inputs and get no gradient: they are dead. (For a
    leaky ReLU they are merely inactive; they still pass a small gradient.)
    """
    hidden = encoder.get_layer(layer_name).output
    probe = keras.Model(encoder.input, hidden)
    values = np.asarray(probe(np.asarray(images, np.float32), training=False))
    return int((values.max(axis=0) <= 0).sum()), int(values.shape[-1])


def latent_report(encoder, sources, n_samples: int = 500, seed: int = 0) -> dict:
    """Separation (on n_samples draws per source), KL per source and dead units of one trained model."""
    z_mean, z_log_var = posterior(encoder, sources)
    points, labels = sample_latents(z_mean, z_log_var, n_samples, seed)
    report = cluster_separation(points, labels)
    report.update(z_mean=z_mean, z_log_var=z_log_var, points=points, labels=labels,
                  kl=kl_per_source(z_mean, z_log_var))
    report["dead"], report["units"] = dead_units(encoder, sources)
    return report


def describe_latents(report: dict, names) -> str:
    """The printed verdict for one model: separation, KL per source, dead units, 'collapsed'."""
    kl = ", ".join(f"{name} {value:.2f}" for name, value in zip(names, report["kl"]))
    return (f"clusters: {report['n_clusters']} for {report['n_sources']} sources ({report['verdict']})\n"
            f"  min separation {min(report['min_ratio'], 999):.1f} sd (collapsed below {COLLAPSE_THRESHOLD:g}, "
            f"separated from {SEPARATION_THRESHOLD:g})\n"
            f"  KL per source [nats]: {kl}\n"
            f"  dead encoder units (output <= 0 for every source): {report['dead']}/{report['units']}")


def identification_gain(sources) -> np.ndarray:
    """Nats per image by which the reconstruction loss falls when the decoder outputs each source
    itself instead of the sources' pixel mean (what a collapsed VAE outputs): sum over pixels of
    KL(Bernoulli(x_i) || Bernoulli(mean)). Telling k sources apart costs at least ln k nats of KL."""
    sources = np.clip(np.asarray(sources, np.float64), 1e-7, 1 - 1e-7)
    mean = sources.mean(axis=0, keepdims=True)
    gain = sources * np.log(sources / mean) + (1 - sources) * np.log((1 - sources) / (1 - mean))
    return gain.reshape(len(sources), -1).sum(axis=1)


# ----------------------------------------------------------------------------- overlay methods

def decode(decoder, z) -> np.ndarray:
    """Decode latent points (n, d) to float images (n, s, s, 1) in one call."""
    z = np.atleast_2d(np.asarray(z, np.float32))
    return np.asarray(decoder(z, training=False), np.float32)


def subsets(k: int, sizes=(2, 3)) -> list[tuple[int, ...]]:
    """All index tuples of the given sizes out of k sources (pairs, then triples, ...)."""
    return [combo for size in sizes if size <= k for combo in combinations(range(k), size)]


def generate_overlays(encoder, decoder, images, n: int, seed: int = 0, method: str = "sum", pairs: bool = True,
                      z_background=None, sample: bool = False, batch_size: int = 256,
                      weight: float = 1.0):
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
        raise ValueError(f"need at least {group} images to overlay {'pairs' if pairs else 'triples'}, "
                         f"got {len(images)}")
    with_model = [key for key, found in overlay_methods.METHODS.items() if found.needs_model]
    if method not in with_model:
        raise ValueError(f"method must be one of {with_model}, got {method!r}")
    parts = [posterior(encoder, images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    z_mean = np.concatenate([part[0] for part in parts])
    z_log_var = np.concatenate([part[1] for part in parts])
    z_bg = z_mean.mean(axis=0) if z_background is None else np.asarray(z_background, np.float64)
    rng = np.random.default_rng(seed)
    sources = np.zeros((n, group), np.int64)
    for row in range(n):
        sources[row] = np.sort(rng.choice(len(images), size=group, replace=False))
    chosen = z_mean[sources]  # (n, group, d)
    if sample:
        chosen = chosen + np.exp(0.5 * z_log_var[sources]) * rng.standard_normal(chosen.shape)
    size = int(decoder.outputs[0].shape[1])
    if overlay_methods.METHODS[method].space == "decoded":
        flat = chosen.reshape(-1, chosen.shape[-1])
        decoded = [decode(decoder, flat[i:i + batch_size]) for i in range(0, len(flat), batch_size)]
        decoded = np.concatenate(decoded) if decoded else np.zeros((0, size, size, 1), np.float32)
        decoded = decoded.reshape(n, group, size, size, 1)
        combined = [overlay_methods.combine(method, decodes) for decodes in decoded]
        return np.array(combined, np.float32).reshape(n, size, size, 1), sources
    latents = [overlay_methods.combine(method, z, z_bg, weight) for z in chosen]
    latents = np.array(latents, np.float64).reshape(n, z_mean.shape[1])
    overlays = np.empty((n, size, size, 1), np.float32)
    for start in range(0, n, batch_size):
        overlays[start:start + batch_size] = decode(decoder, latents[start:start + batch_size])
    return overlays, sources


# ----------------------------------------------------------------------------- fidelity against the masks

def background_estimate(sources, masks) -> np.ndarray:
    """The defect-free surface: per pixel, the mean of the sources whose mask does not cover it.

    Where every mask covers a pixel (no source shows the surface there) the sources' maximum is used.
    For sources that share one surface (the synthetic trio) this is the surface itself.
    """
    sources = np.asarray(sources, np.float64)[..., 0] if np.ndim(sources) == 4 else np.asarray(sources, np.float64)
    clear = ~np.asarray(masks, bool)
    count = clear.sum(axis=0)
    total = np.where(clear, sources, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), sources.max(axis=0))


def defect_threshold(sources, masks, background=None, fraction: float = DEFECT_DEPTH_FRACTION) -> float:
    """Darkening that makes an overlay pixel a defect pixel: `fraction` of the median darkening
    (background - source) over all source mask pixels."""
    sources = np.asarray(sources, np.float64)[..., 0] if np.ndim(sources) == 4 else np.asarray(sources, np.float64)
    masks = np.asarray(masks, bool)
    background = background_estimate(sources, masks) if background is None else background
    depth = (background[None] - sources)[masks]
    if depth.size == 0:
        raise ValueError("the masks are empty: fidelity needs at least one defect pixel")
    return float(fraction * np.median(depth))


def fidelity(overlay, masks, background, threshold: float, tolerance: int = SPURIOUS_TOLERANCE) -> dict:
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
        union = ndimage.binary_dilation(union, structure=np.ones((3, 3), bool), iterations=tolerance)
    spurious = float((shown & ~union).sum() / shown.sum()) if shown.any() else 0.0
    mean_recall = float(np.nanmean(recall))
    return {"recall": recall, "mean_recall": mean_recall, "min_recall": float(np.nanmin(recall)),
            "spurious": spurious, "score": mean_recall * (1.0 - spurious), "shown": shown}
