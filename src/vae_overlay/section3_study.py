"""The Section 3 study's runs: one training at the paper's settings and what is measured on it; the
verdicts.

`train_and_measure` is the `section3` kind's run (study.py runs it on Dask): it trains on the 80
images of a data source and `measure`s the latent means' spread, dead units, active latent units,
total collapse, whether the paper's box is reached, and how much of the decoded latent plane looks
like the training cracks. `summarize` turns a table into verdicts as distributions: counts with 95 %
Wilson intervals per configuration.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from vae_overlay import datasets, model, paper, runs, study
from vae_overlay.stats import wilson
from vae_overlay.study import run_key

# what train_vae is given
TRAIN_KEYS = ("latent_dim", "epochs", "batch_size", "learning_rate", "seed", "loss")
# a run "reaches the paper's box" if some |mean z1| >= 10 or |mean z2| >= 7 (2/3 of it)
BOX_REACHED = (10.0, 7.0)
# the box's own edges: |z1| = 15, |z2| = 10 (`extents`)
PAPER_EXTENT = (paper.Z1_RANGE[1], paper.Z2_RANGE[1])
# decodes per axis of the crack-region grids (21 x 21 over the box and over the occupied region)
GRID_POINTS = 21
# a decode "scores like a training crack" at or above this quantile of the training scores
CRACK_QUANTILE = 0.1
CONFIGURATION = ("data", "image_size", "loss")  # what `summarize` groups by, and the figures' rows
# measured: 100 epochs x 80 images at 64 px in 38 s on 2 idle cores
SECONDS_PER_IMAGE_EPOCH = 0.0048


@lru_cache(maxsize=8)
def training_images(data: str, image_size: int) -> np.ndarray:
    """The 80 training images of a data source at `image_size` px (cached per process)."""
    return datasets.load_source(data, image_size).images


def images_fingerprint(config: dict) -> str:
    return runs.fingerprint(training_images(config["data"], config["image_size"]))


def section3_seconds(config: dict, n_images: int = 80) -> float:
    """Cost grows with the pixel count."""
    return SECONDS_PER_IMAGE_EPOCH * n_images * config["epochs"] * (config["image_size"] / 64) ** 2


def crack_scores(images) -> np.ndarray:
    """The project's ridge (crack) score of each image (n, s, s, 1), scaled to the image size."""
    from vae_overlay.elpv import crack_score

    size = images.shape[1]
    return np.array(
        [crack_score(image[..., 0], sigma=1.0, border=max(1, size // 15)) for image in images]
    )


def measure(vae, images) -> dict:
    """Everything a study row records about one trained VAE and its training images."""
    from vae_overlay import diagnostics, latent

    means = model.encode_mean(vae, images).astype(np.float64)
    row = {}
    for d in range(means.shape[1]):
        values = means[:, d]
        row.update(
            {
                f"z{d + 1}_min": values.min(),
                f"z{d + 1}_max": values.max(),
                f"z{d + 1}_std": values.std(),
                f"z{d + 1}_p01": np.percentile(values, 1),
                f"z{d + 1}_p99": np.percentile(values, 99),
            }
        )
    row["dead_units"], row["dense_units"] = diagnostics.dead_units(vae.encoder, images)
    row["active_units"] = diagnostics.active_units(means)
    row["collapsed"] = diagnostics.no_active_unit(means)
    reach = np.abs(means).max(axis=0)
    row["box_reached"] = bool(
        len(reach) >= 2 and (reach[0] >= BOX_REACHED[0] or reach[1] >= BOX_REACHED[1])
    )
    row["crack_threshold"] = float(np.quantile(crack_scores(images), CRACK_QUANTILE))
    if means.shape[1] == 2:
        low, high = np.percentile(means, 1, axis=0), np.percentile(means, 99, axis=0)
        regions = {"box": paper.BOX, "occupied": tuple(zip(low, np.maximum(high, low + 1e-3)))}
        for name, ((z1_low, z1_high), (z2_low, z2_high)) in regions.items():
            z1, z2 = np.meshgrid(
                np.linspace(z1_low, z1_high, GRID_POINTS), np.linspace(z2_low, z2_high, GRID_POINTS)
            )
            decoded = (
                latent.decode_batched(vae.decoder, np.stack([z1.ravel(), z2.ravel()], axis=1))
                / 255.0
            )
            row[f"crack_fraction_{name}"] = float(
                (crack_scores(decoded) >= row["crack_threshold"]).mean()
            )
    return {
        key: round(float(value), 6) if isinstance(value, (float, np.floating)) else value
        for key, value in row.items()
    }


def run_folder(artifacts_dir, key: str) -> Path:
    """The folder of the study run whose table key is `key`: `artifacts_dir/<key>/`."""
    return runs.named_folder(artifacts_dir, key)


def train(config: dict, artifacts_dir: str) -> tuple:
    """(vae, training images, what the training recorded) of a Section 3 run: trained (or resumed,
    or loaded) in `run_folder`, keyed as a `section3` run, so that another kind asking for the same
    training (realism_study.py) finds it there."""
    from vae_overlay import train as training

    images = training_images(config["data"], config["image_size"])
    folder = run_folder(artifacts_dir, run_key({key: config[key] for key in KIND_DEFAULTS}))
    vae, history = training.train_vae(
        images, folder, verbose=0, **{key: config[key] for key in TRAIN_KEYS}
    )
    record = training.read_history(folder / training.HISTORY_FILE)
    recorded = dict(
        n_images=len(images),
        final_reconstruction=round(history["reconstruction_loss"][-1], 4),
        final_kl=round(history["kl_loss"][-1], 4),
        train_seconds=round(sum(record["epoch_seconds"]), 2),
    )
    return vae, images, recorded


def train_and_measure(config: dict, artifacts_dir: str) -> dict:
    """A Section 3 run: `train` and `measure`."""
    vae, images, recorded = train(config, artifacts_dir)
    return {**recorded, **measure(vae, images)}


KIND_DEFAULTS = {
    "data": "elpv-cracks",
    "image_size": 64,
    "loss": "sum",
    "seed": 0,
    **paper.TRAINING,
}
KIND = study.register(
    "section3",
    study.Kind(
        defaults=KIND_DEFAULTS,
        run=train_and_measure,
        data=images_fingerprint,
        seconds=section3_seconds,
        allowed={"loss": model.LOSSES, "data": datasets.BUILT_IN},
        text_columns=("data", "loss"),
    ),
)


def reach(row: dict) -> float:
    """The largest |latent mean| of a run over z1 and z2: how far its encodings spread from the
    origin."""
    return max(abs(row[f"z{d}_{end}"]) for d in (1, 2) for end in ("min", "max"))


def extents(row: dict) -> dict:
    """How far a run's latent means reach against the paper's box, from its table row, four ways:
    `box_reached` (the lenient rule recorded since the study began: some |z1| >= 10 or |z2| >= 7),
    `extent_any` (some mean at the box's edge: |z1| >= 15 or |z2| >= 10), `extent_both` (the edge on
    both axes) and `extent_any_1_99` (the edge reached by the 1st or 99th percentile of the means,
    so not by one outlier)."""
    (z1, z2), far = PAPER_EXTENT, {}
    for name, ends in (("all", ("min", "max")), ("1_99", ("p01", "p99"))):
        far[name] = [max(abs(row[f"z{d}_{end}"]) for end in ends) for d in (1, 2)]
    return {
        "box_reached": bool(row["box_reached"]),
        "extent_any": far["all"][0] >= z1 or far["all"][1] >= z2,
        "extent_both": far["all"][0] >= z1 and far["all"][1] >= z2,
        "extent_any_1_99": far["1_99"][0] >= z1 or far["1_99"][1] >= z2,
    }


def summarize(rows: list[dict], by=CONFIGURATION) -> list[dict]:
    """One dict per configuration (`by`): finished runs; collapse, one-axis, two-axis counts and the
    four reach counts of `extents` with their rates and 95 % Wilson intervals
    (scipy.stats.binomtest); median and largest reach; median crack-region fractions. Failed runs
    are left out."""
    summary = []
    for values, group in study.grouped(rows, by):
        entry = {**values, "runs": len(group)}
        flags = {
            "collapsed": [r["collapsed"] for r in group],
            "one_axis": [r["active_units"] == 1 for r in group],
            "two_axes": [r["active_units"] == 2 for r in group],
        }
        flags.update({name: [extents(r)[name] for r in group] for name in extents(group[0])})
        for name, hits in flags.items():
            low, high = wilson(sum(hits), len(hits))
            entry.update(
                {
                    name: sum(hits),
                    f"{name}_rate": sum(hits) / len(hits),
                    f"{name}_low": low,
                    f"{name}_high": high,
                }
            )
        reaches = [reach(r) for r in group]
        entry.update(reach_median=float(np.median(reaches)), reach_max=float(max(reaches)))
        for region in ("box", "occupied"):
            entry[f"crack_fraction_{region}_median"] = float(
                np.median([r[f"crack_fraction_{region}"] for r in group])
            )
        summary.append(entry)
    return summary


def load_run(row: dict, artifacts_dir) -> tuple:
    """(vae, training images) of a study row: its model loaded from `artifacts_dir/<key>/`, or
    trained again there (same settings and seed, so the same model on this CPU) when this checkout
    does not have it."""
    from vae_overlay import train

    images = training_images(row["data"], row["image_size"])
    vae, _ = train.train_vae(
        images,
        run_folder(artifacts_dir, row["key"]),
        verbose=0,
        **{key: row[key] for key in TRAIN_KEYS},
    )
    return vae, images


# ----------------------------------------------------------------------------- the study on Dask


# ---------------------------------------------------------------------------- figures (notebook 07)

# by units
UNITS = {0: ("tab:red", "collapsed"), 1: ("tab:orange", "one axis"), 2: ("tab:blue", "two axes")}


def configuration_label(entry: dict) -> str:
    """'<data>, <size> px, <loss>': a configuration's row label, written horizontally."""
    return f"{entry['data']}, {entry['image_size']} px, {entry['loss']}"


def reach_figure(rows: list[dict]):
    """Each finished run's largest |latent mean| (log scale; at least 1e-3), one row per
    configuration (the order of `summarize`), coloured by its active latent units (`UNITS`), with
    the box rule's lower bound dashed. Returns the figure."""
    import matplotlib.pyplot as plt

    groups = study.grouped(rows, CONFIGURATION)
    n = len(groups)
    fig, ax = plt.subplots(figsize=(11.2, 2.0 + 0.42 * max(n, 1)))
    for i, (_, group) in enumerate(groups):
        jitter = np.linspace(-0.25, 0.25, len(group)) if len(group) > 1 else [0.0]
        for dy, row in zip(jitter, group):
            colour = UNITS[min(row["active_units"], 2)][0]
            ax.scatter(max(reach(row), 1e-3), n - 1 - i + dy, s=24, color=colour)
    for y in range(n - 1):
        ax.axhline(y + 0.5, color="0.85", lw=0.8, zorder=0)
    for colour, name in UNITS.values():
        ax.scatter([], [], color=colour, label=name)
    (z1, z2), runs = BOX_REACHED, sum(len(group) for _, group in groups)
    ax.axvline(
        min(z1, z2),
        color="k",
        ls="--",
        lw=1,
        label=f"{min(z1, z2):g}: the box rule's lower bound (|z1| ≥ {z1:g} or |z2| ≥ {z2:g})",
    )
    ax.set_xscale("log")
    ax.set_yticks(
        np.arange(n)[::-1], [configuration_label(values) for values, _ in groups], fontsize=10
    )
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlabel("largest |latent mean| over z1 and z2, per run (log scale)", fontsize=10)
    ax.tick_params(axis="x", labelsize=9)
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.06 - 0.5 / max(n, 1)),
        ncol=4,
        fontsize=9,
        frameon=False,
    )
    ax.set_title(
        f"{runs} trainings at the paper's settings: how far the latent means spread", fontsize=10
    )
    fig.tight_layout()
    return fig


def rates_figure(summary: list[dict]):
    """Per configuration of `summary`: the share of runs that collapsed and that reached the paper's
    box, each with its 95 % Wilson interval, and the median share of decodes scoring like training
    cracks over the paper's box and over the occupied region; one row per configuration, labelled
    once on the left. Returns the figure."""
    import matplotlib.pyplot as plt

    from vae_overlay import plots

    labels = [configuration_label(s) for s in summary]
    height = 2.3 + 0.42 * max(len(summary), 1)
    fig, axes = plt.subplots(1, 3, figsize=(11.2, height), sharey=True)
    for ax, name, what in zip(
        axes, ("collapsed", "box_reached"), ("total collapse", "paper's box reached")
    ):
        ends = ([s[f"{name}_{end}"] for s in summary] for end in ("rate", "low", "high"))
        plots.forest(
            labels,
            *ends,
            zero=None,
            annotate=None,
            ax=ax,
            xlabel="share of runs",
            title=f"{what}:\nshare of runs, 95 % interval",
        )
    regions = ("box", "occupied")
    nan = np.full((len(summary), len(regions)), np.nan)
    plots.forest(
        labels,
        [[s[f"crack_fraction_{r}_median"] for r in regions] for s in summary],
        nan,
        nan,
        zero=None,
        annotate=None,
        series=("over the paper's box", "over the occupied region"),
        ax=axes[2],
        title="decodes scoring like training\ncracks: median share",
        xlabel="share of decodes",
    )
    for j, ax in enumerate(axes):
        ax.set_xlim(-0.05, 1.05)
        ax.tick_params(axis="y", labelleft=j == 0)
    handles, names = axes[2].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower right", ncol=2, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1))
    return fig


def representatives_figure(picked: dict, artifacts_dir, tiles: int = 5):
    """The runs of `picked` ({kind: table row}) side by side, each decoded on a `tiles` x `tiles`
    grid over the 1-99 % range of its latent means (a model from `load_run`), titled with its kind,
    configuration and seed. Returns the figure."""
    import matplotlib.pyplot as plt

    from vae_overlay import latent, plots

    fig, axes = plt.subplots(1, max(1, len(picked)), figsize=(11.2, 4.6), squeeze=False)
    for ax, (kind, row) in zip(axes[0], picked.items()):
        vae, _ = load_run(row, artifacts_dir)
        size = row["image_size"]
        z1, z2 = (
            np.linspace(row[f"z{d}_p01"], max(row[f"z{d}_p99"], row[f"z{d}_p01"] + 0.1), tiles)
            for d in (1, 2)
        )
        points = np.array([(a, b) for a in z1 for b in z2], np.float32)
        grid = latent.decode_batched(vae.decoder, points).reshape(tiles, tiles, size, size)
        plots.decoded_grid(ax, grid, z1, z2, gutter=max(1, size // 32))
        ax.locator_params(nbins=4)
        ax.tick_params(labelsize=9)
        title = f"{kind}: {row['data']},\n{size} px, loss {row['loss']}, seed {row['seed']}"
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
