"""Is a trained model's latent space degenerate? Every rule the project judges that by, with its
thresholds.

Two different things are called "collapsed", and both are kept, each defined once here:

* **No active latent unit** (`active_units`, `no_active_unit`, `latent_collapsed`): the encoder's
  means E[z|x] do not vary over the images, so every image gets (nearly) the same latent point and
  the decoder draws one image for everything. An absolute test on the spread of the means:
  Section 3's `collapsed` (threshold `ACTIVE_VARIANCE`) and the classifier's restart rule (the
  stricter `RESTART_VARIANCE`).
* **Merged clusters** (`cluster_separation`, in `latent_report`): the posteriors of k source images
  cannot be told apart, measured on draws from them relative to their spread (`COLLAPSE_THRESHOLD`,
  `SEPARATION_THRESHOLD`): Section 4's verdict collapsed / overlapping / separated. It asks whether
  an overlay can pick each source, not whether the encoder uses its latent space.

No active unit usually means merged clusters as well (the posteriors of such a model sit near the
prior, sd about 1, far wider than the means' spread), but not always; and clusters merge while the
means still vary whenever each posterior is wider than the distances between the means.
`dead_units` (hidden ReLU units that never fire) is a cause the reports show beside the verdicts,
not a verdict.
"""

from __future__ import annotations

from itertools import combinations

import keras
import numpy as np

from vae_overlay.model import encode, encode_mean, kl_divergence, reparameterize

# a latent unit is active if the variance over images of E[z|x] exceeds this
ACTIVE_VARIANCE = 0.01
# the classifier's VAE is trained again when no latent mean varies more than this (sd 1e-3)
RESTART_VARIANCE = 1e-6
# pooled sd between centres: closer clusters are one (> 24% of draws nearer the other centre)
COLLAPSE_THRESHOLD = 1.0
# "far apart" (the paper's expectation): < 2% of draws nearer the other centre
SEPARATION_THRESHOLD = 3.0


# ------------------------------------------------------------------------- no active latent unit


def active_units(means, min_variance: float = ACTIVE_VARIANCE) -> int:
    """Latent units whose mean E[z|x] varies over the images (`means` (n, d)): variance above
    `min_variance`, computed in the dtype of `means` (Burda et al. 2016's activity measure)."""
    return int((np.var(means, axis=0) > min_variance).sum())


def no_active_unit(means, min_variance: float = ACTIVE_VARIANCE) -> bool:
    """Total collapse: no latent unit is active, every image gets (nearly) one latent point."""
    return active_units(means, min_variance) == 0


def latent_collapsed(encoder, images, min_variance: float = RESTART_VARIANCE) -> bool:
    """True when the encoder maps every image to the same latent mean (`no_active_unit` at
    `min_variance`, on the float32 means): the VAE decodes one image, the training mean, for
    everything."""
    return no_active_unit(encode_mean(encoder, images), min_variance)


# ------------------------------------------------------------------------------ merged clusters


def sample_latents(z_mean, z_log_var, n_per_source: int, seed: int = 0):
    """n_per_source draws z = mean + exp(log_var / 2) * eps (float64) for every source: points
    (k*n, d) and their source labels."""
    z_mean, z_log_var = np.asarray(z_mean, np.float64), np.asarray(z_log_var, np.float64)
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((len(z_mean), n_per_source, z_mean.shape[1]))
    points = reparameterize(z_mean[:, None, :], z_log_var[:, None, :], eps)
    return points.reshape(-1, z_mean.shape[1]), np.repeat(np.arange(len(z_mean)), n_per_source)


def cluster_separation(
    points,
    labels,
    merge_below: float = COLLAPSE_THRESHOLD,
    separated_from: float = SEPARATION_THRESHOLD,
) -> dict:
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
    dims = points.shape[1]
    spreads = np.array(
        [
            np.sqrt(((points[labels == s] - c) ** 2).sum(axis=1).mean() / dims)
            for s, c in zip(sources, centres)
        ]
    )
    k = len(sources)
    ratio = np.full((k, k), np.inf)
    for i, j in combinations(range(k), 2):
        scale = np.sqrt(spreads[i] ** 2 + spreads[j] ** 2)
        distance = np.linalg.norm(centres[i] - centres[j])
        far = np.inf if distance > 0 else 0.0
        ratio[i, j] = ratio[j, i] = distance / scale if scale > 0 else far
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
    apart = "separated" if min_ratio >= separated_from else "overlapping"
    verdict = "collapsed" if collapsed else apart
    return {
        "centres": centres,
        "spreads": spreads,
        "ratio": ratio,
        "min_ratio": min_ratio,
        "n_clusters": n_clusters,
        "n_sources": k,
        "collapsed": collapsed,
        "verdict": verdict,
    }


# --------------------------------------------------------------------- dead units and the report


def dead_units(encoder, images, layer_name: str = "dense") -> tuple[int, int]:
    """(units of the encoder's hidden Dense layer whose output is <= 0 for every image, total
    units).

    For ReLU these units output exactly 0 for all inputs and get no gradient: they are dead. (For a
    leaky ReLU they are merely inactive; they still pass a small gradient.)
    """
    hidden = encoder.get_layer(layer_name).output
    probe = keras.Model(encoder.input, hidden)
    values = np.asarray(probe(np.asarray(images, np.float32), training=False))
    return int((values.max(axis=0) <= 0).sum()), int(values.shape[-1])


def latent_report(encoder, sources, n_samples: int = 500, seed: int = 0) -> dict:
    """Section 4's check of one trained model on its k sources: separation (`cluster_separation`
    on n_samples draws per source), KL per source in nats (float64, summed over dimensions), dead
    units."""
    z_mean, z_log_var = encode(encoder, sources, dtype=np.float64)
    points, labels = sample_latents(z_mean, z_log_var, n_samples, seed)
    report = cluster_separation(points, labels)
    report.update(
        z_mean=z_mean,
        z_log_var=z_log_var,
        points=points,
        labels=labels,
        kl=kl_divergence(z_mean, z_log_var).sum(axis=1),
    )
    report["dead"], report["units"] = dead_units(encoder, sources)
    return report


def describe_latents(report: dict, names) -> str:
    """The printed verdict for one model: separation, KL per source, dead units, 'collapsed'."""
    kl = ", ".join(f"{name} {value:.2f}" for name, value in zip(names, report["kl"]))
    clusters = f"{report['n_clusters']} for {report['n_sources']} sources ({report['verdict']})"
    separation = min(report["min_ratio"], 999)
    return (
        f"clusters: {clusters}\n"
        f"  min separation {separation:.1f} sd (collapsed below {COLLAPSE_THRESHOLD:g}, "
        f"separated from {SEPARATION_THRESHOLD:g})\n"
        f"  KL per source [nats]: {kl}\n"
        "  dead encoder units (output <= 0 for every source): "
        f"{report['dead']}/{report['units']}"
    )
