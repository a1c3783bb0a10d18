"""The `realism` kind: does a higher latent dimension make the *samples* more realistic (paper,
Section 4)?

The paper says "the realism of the image can be increased by increasing the dimension of the hidden
space". On the three images of Section 4 there is nothing left for more dimensions to capture, so
this kind tests the claim where it can show: a VAE trained at the paper's settings on the 80 ELPV
crack patches (the `section3` kind's training, shared with it: `section3_study.train`), at several
latent dimensions, judged on images it *generates*, against real crack patches it has never seen.

One run draws `SAMPLES` latent points from the Gaussian fitted to the training images' latent means
(the project's one sampler, `classifier.sample_vae`: it samples where the encodings lie), decodes
them and measures:

* `kd_samples`: the kernel distance (squared maximum mean discrepancy, unbiased, Gaussian kernel)
  between the samples and the held-out patches (`elpv.load_held_out_patches`: the next 80 crack
  cells by crack score);
* `kd_real`: the same distance from the 80 training patches to the held-out ones, the floor real
  cracks reach;
* `kd_mean`: from copies of the training pixel mean, what a collapsed model generates;
* `realism` = (kd_mean - kd_samples) / (kd_mean - kd_real): 1 when the samples are as close to
  unseen cracks as real training cracks are, 0 when no closer than the pixel mean (below 0:
  farther);
* `sharpness`: the samples' mean gradient magnitude over the held-out patches' (VAE samples are
  blurred: < 1);
* `crack_like`: the share of samples scoring like a training crack (`section3_study.crack_scores`,
  the same threshold as the Section 3 study; on ELPV the score fails collapsed decodes).

The kernel's width is the median distance between held-out patches, fixed by the data, so every run
and every dimension is measured with one ruler. `summarize` compares each dimension with the lowest,
seed by seed (the training run is the unit), Holm-corrected over the dimensions.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from vae_overlay import runs, section3_study, study
from vae_overlay.data import squared_distances
from vae_overlay.stats import holm, paired_comparison, t_interval

SAMPLES = 200  # generated images per run
HELD_OUT = 80  # unseen crack patches, as many as the training patches
DATA = ("elpv-crack-patches",)  # sources with held-out images of the same kind
MEASURES = ("realism", "kd_samples", "kd_real", "kd_mean", "sharpness", "crack_like")
SECONDS_MEASURING = 15.0  # sampling, decoding and the distances, on 2 cores


@lru_cache(maxsize=4)
def held_out(data: str, image_size: int) -> np.ndarray:
    """The held-out real images of a data source (cached per process)."""
    if data not in DATA:
        raise study.StudyError(
            f"the realism kind has held-out images for {list(DATA)} only, not {data!r}"
        )
    from vae_overlay.elpv import load_held_out_patches

    return load_held_out_patches(image_size, HELD_OUT).images


def data_fingerprint(config: dict) -> str:
    """The training images and the held-out ones (both decide a run's numbers)."""
    training = section3_study.training_images(config["data"], config["image_size"])
    return runs.fingerprint([training, held_out(config["data"], config["image_size"])])


def seconds(config: dict) -> float:
    return section3_study.section3_seconds(config) + SECONDS_MEASURING


def flat(images) -> np.ndarray:
    return np.asarray(images, np.float64).reshape(len(images), -1)


def kernel_width(images) -> float:
    """The median distance between distinct images of a set: the Gaussian kernel's width."""
    distances = squared_distances(flat(images), flat(images))
    return float(np.sqrt(np.median(distances[~np.eye(len(distances), dtype=bool)])))


def kernel_distance(x, y, width: float) -> float:
    """Unbiased squared maximum mean discrepancy between two image sets under a Gaussian kernel of
    `width` (Gretton et al. 2012): 0 in expectation when both are drawn from one distribution."""
    x, y = flat(x), flat(y)

    def mean_kernel(a, b, same: bool) -> float:
        k = np.exp(-squared_distances(a, b) / (2.0 * width**2))
        if same:
            return float((k.sum() - np.trace(k)) / (len(a) * (len(a) - 1)))
        return float(k.mean())

    return mean_kernel(x, x, True) + mean_kernel(y, y, True) - 2.0 * mean_kernel(x, y, False)


def sharpness(images) -> float:
    """Mean gradient magnitude of a set of images (n, s, s, 1) in [0, 1]."""
    rows, cols = np.gradient(np.asarray(images, np.float64)[..., 0], axis=(1, 2))
    return float(np.hypot(rows, cols).mean())


def realism(samples, training, unseen, seed: int = 0) -> dict:
    """The measures of the module docstring for `samples` against the `unseen` real images."""
    width = kernel_width(unseen)
    mean_image = np.repeat(np.asarray(training).mean(axis=0, keepdims=True), len(samples), axis=0)
    row = {
        "kd_samples": kernel_distance(samples, unseen, width),
        "kd_real": kernel_distance(training, unseen, width),
        "kd_mean": kernel_distance(mean_image, unseen, width),
    }
    row["realism"] = (row["kd_mean"] - row["kd_samples"]) / (row["kd_mean"] - row["kd_real"])
    row["sharpness"] = sharpness(samples) / sharpness(unseen)
    threshold = np.quantile(section3_study.crack_scores(training), section3_study.CRACK_QUANTILE)
    row["crack_like"] = float((section3_study.crack_scores(samples) >= threshold).mean())
    return row


def run(config: dict, artifacts_dir: str) -> dict:
    """One run: the Section 3 training of `config`, its samples and their `realism`."""
    from vae_overlay import diagnostics, model
    from vae_overlay.classifier import sample_vae

    vae, images, recorded = section3_study.train(config, artifacts_dir)
    samples = sample_vae(vae.encoder, vae.decoder, images, SAMPLES, config["seed"])
    means = model.encode_mean(vae, images).astype(np.float64)
    row = {
        **recorded,
        "active_units": diagnostics.active_units(means),
        "collapsed": diagnostics.no_active_unit(means),
        "dead_units": diagnostics.dead_units(vae.encoder, images)[0],
        **realism(samples, images, held_out(config["data"], config["image_size"])),
    }
    return {
        key: round(float(value), 6) if isinstance(value, (float, np.floating)) else value
        for key, value in row.items()
    }


KIND = study.register(
    "realism",
    study.Kind(
        defaults=section3_study.KIND_DEFAULTS | {"data": DATA[0]},
        run=run,
        data=data_fingerprint,
        seconds=seconds,
        allowed={"loss": section3_study.KIND.allowed["loss"], "data": DATA},
        text_columns=("data", "loss"),
    ),
)


def summarize(rows: list[dict], measure: str = "realism") -> list[dict]:
    """Per latent dimension: runs, collapsed runs, the mean of each of MEASURES with its 95 % t
    interval over runs, and `measure`'s paired difference from the lowest dimension over the seeds
    both have (mean, 95 % interval, p) with Holm's adjustment over the dimensions compared."""
    groups = study.grouped(rows, ("latent_dim",))
    if not groups:
        return []
    lowest = {row["seed"]: row[measure] for row in groups[0][1]}
    summary = []
    for values, group in groups:
        entry = {
            **values,
            "runs": len(group),
            "collapsed": sum(bool(r["collapsed"]) for r in group),
        }
        for name in MEASURES:
            column = [r[name] for r in group]
            low, high = t_interval(column)
            entry.update({name: float(np.mean(column)), f"{name}_low": low, f"{name}_high": high})
        seeds = sorted(set(lowest) & {r["seed"] for r in group})
        if values["latent_dim"] != groups[0][0]["latent_dim"] and len(seeds) >= 2:
            by_seed = {r["seed"]: r[measure] for r in group}
            compared = paired_comparison([lowest[s] for s in seeds], [by_seed[s] for s in seeds])
            entry.update(
                diff=compared["mean_difference"],
                diff_low=compared["ci_low"],
                diff_high=compared["ci_high"],
                p=compared["p_value"],
            )
        summary.append(entry)
    adjusted = holm([entry.get("p", np.nan) for entry in summary])
    for entry, p in zip(summary, adjusted):
        entry["p_holm"] = p
    return summary


def figure(rows: list[dict]):
    """Per latent dimension, each run's realism, sharpness and share of crack-like samples (dots,
    red when the run collapsed) with the mean over runs and its 95 % interval. Returns the
    figure."""
    import matplotlib.pyplot as plt

    summary = summarize(rows)
    dims = [s["latent_dim"] for s in summary]
    panels = (
        ("realism", "realism of samples\n(1 = real cracks, 0 = pixel mean)"),
        ("sharpness", "sharpness of samples\n(gradient / real patches')"),
        ("crack_like", "samples scoring like\na training crack (share)"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(11.2, 3.6))
    for ax, (name, title) in zip(axes, panels):
        for position, (_, group) in enumerate(study.grouped(rows, ("latent_dim",))):
            colours = ["tab:red" if r["collapsed"] else "0.4" for r in group]
            ax.scatter(
                np.full(len(group), position) + np.linspace(-0.12, 0.12, len(group)),
                [r[name] for r in group],
                s=16,
                color=colours,
            )
        means = [s[name] for s in summary]
        errors = [
            [m - s[f"{name}_low"] for m, s in zip(means, summary)],
            [s[f"{name}_high"] - m for m, s in zip(means, summary)],
        ]
        ax.errorbar(
            np.arange(len(dims)) + 0.3,
            means,
            yerr=np.nan_to_num(errors),
            fmt="D",
            color="C0",
            capsize=3,
            ms=5,
        )
        ax.set_xticks(np.arange(len(dims)), [str(d) for d in dims])
        ax.set_xlabel("latent dimension", fontsize=10)
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=9)
    axes[0].axhline(1, color="k", ls="--", lw=1)
    axes[0].axhline(0, color="k", lw=1)
    runs = sum(s["runs"] for s in summary)
    fig.suptitle(
        f"{runs} trainings on 80 crack patches: samples against {HELD_OUT} unseen patches "
        "(dots: runs, red: collapsed; diamonds: mean, 95 %)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
