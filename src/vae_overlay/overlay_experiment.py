"""Notebook 05's experiment drivers: train and check a variant, the overlay-method table, the latent
plane, the verdict and the summary that `vae_overlay.report` reads (the variant and latent-dimension
grids over seeds are studies: `vae_overlay.overlay_study`).

Each driver returns plain values (a run dict, lists of row dicts, dicts of numbers) that the
notebook shows as tables and plots, and that the tests check; the pieces they combine are in
`vae_overlay.overlay`.

* `prepare` / `Setup` — the sources, their masks, the defect-free background and the defect
  threshold, and the folder the experiment's models go to (one run folder per configuration, see
  `run_folder`).
* `train_and_check` — train (or load) one variant and check its latent space
  (`diagnostics.latent_report`).
* `self_fidelity` — how much of its own defect each decoded cluster centre shows.
* `method_overlay`, `evaluate`, `weight_scores`, `overlay_methods`, `method_rows` — the methods of
  `vae_overlay.overlay_methods` as functions of a subset of sources, and their fidelity table.
* `verdict`, `training_seconds`, `summary` — the key numbers the notebook prints and records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vae_overlay import data, datasets, diagnostics, latent, model, overlay, paper, runs, train
from vae_overlay.overlay_methods import METHODS, combine, lookup

PIXEL_MEAN = METHODS["pixel mean"].label  # the method table's rows of the pixel methods
PIXEL_COMPOSITING = METHODS["pixel darkest"].label
DECODED_COMPOSITING = "fixed: decoded compositing"


@dataclass
class Setup:
    """What every run of the overlay experiment shares: the sources (k, s, s, 1), their masks (or
    None), their names, the folder for the models, and the training length, latent dimension and
    latent draws per source.

    `background` is the defect-free surface (`overlay.background_estimate`; without masks each
    pixel's median over the sources) and `threshold` the darkening that makes a pixel a defect pixel
    (None without masks).
    """

    sources: np.ndarray
    masks: np.ndarray | None
    names: list[str]
    folder: Path
    epochs: int = paper.OVERLAY_EPOCHS
    latent_dim: int = paper.LATENT_DIM
    retrain: bool = False
    n_samples: int = 500
    background: np.ndarray = field(init=False, repr=False)
    threshold: float | None = field(init=False)

    def __post_init__(self):
        self.sources = np.asarray(self.sources, np.float32)
        self.folder = Path(self.folder)
        if self.masks is not None:
            self.background = overlay.background_estimate(self.sources, self.masks)
            self.threshold = overlay.defect_threshold(self.sources, self.masks, self.background)
        else:  # the defect-free surface, if the sources share one
            self.background = np.median(self.sources[..., 0], axis=0)
            self.threshold = None

    @property
    def k(self) -> int:
        return len(self.sources)

    @property
    def have_masks(self) -> bool:
        return self.masks is not None

    @property
    def combos(self) -> list[tuple[int, ...]]:
        """The overlays scored: every pair, then all three (`overlay.subsets`)."""
        return overlay.subsets(self.k)

    def combo_name(self, combo) -> str:
        """'crack_1+pore' for a subset; 'all' for the subset of every source."""
        return "all" if len(combo) == self.k else "+".join(self.names[i] for i in combo)


# data/synthetic/: the paper's Figure 4 stand-in
PAPER_TRIO = ("crack_1.png", "crack_2.png", "pore.png")


def choose_sources(
    overlay_images, dataset: str, k: int = 3, pool: int = 400
) -> tuple[list[str], str]:
    """(source paths, why these): `overlay_images` as given; else the paper's trio for the built-in
    sets; else, for a folder, `k` of its images that differ most (greedy farthest points in pixels
    at 16 px, starting from the image farthest from the mean, over an even sample of at most `pool`
    images)."""
    if overlay_images:
        return [str(p) for p in overlay_images], "OVERLAY_IMAGES"
    if dataset in datasets.BUILT_IN:
        trio = [str(data.project_root() / "data" / "synthetic" / name) for name in PAPER_TRIO]
        return trio, "the paper's trio (two cracks and a pore on one surface, data/synthetic/)"
    files = [
        f for f in data.list_folder(data.resolve_folder(dataset))[0] if not f.stem.endswith("_mask")
    ]
    files = [
        files[i]
        for i in np.unique(np.linspace(0, len(files) - 1, min(pool, len(files))).astype(int))
    ]
    small, usable = [], []
    for path in files:
        try:
            small.append(data.load_image(path, 16).ravel())
            usable.append(path)
        except data.ImageSkipped:
            continue
    small, files = np.array(small), usable
    if len(small) < 2:
        raise ValueError(
            f"DATASET {dataset!r} has {len(small)} usable image(s); the overlay needs at least two:"
            " set OVERLAY_IMAGES to a list of image paths."
        )
    chosen = [int(((small - small.mean(axis=0)) ** 2).sum(axis=1).argmax())]
    while len(chosen) < min(k, len(small)):
        distance = np.min([((small - small[c]) ** 2).sum(axis=1) for c in chosen], axis=0)
        chosen.append(int(distance.argmax()))
    return [
        str(files[i]) for i in chosen
    ], f"the {len(chosen)} most different images of {dataset} (in pixels)"


def prepare(paths, image_size: int, artifacts_dir, dataset: str, **settings) -> Setup:
    """Load the sources (`overlay.load_sources`) and name their folder:
    <artifacts>/<dataset>/overlay-<8 hex of the sources' fingerprint>. `settings`: Setup's epochs,
    latent_dim, retrain, n_samples."""
    sources, masks, names = overlay.load_sources(paths, image_size)
    folder = runs.named_folder(datasets.run_dir(artifacts_dir, dataset), "overlay", sources, 8)
    return Setup(sources, masks, names, folder, **settings)


# ---------------------------------------------------------------------------- training and checking


def run_folder(
    setup: Setup, variant: overlay.Variant, seed: int, copies: int, latent_dim: int
) -> Path:
    """One folder per configuration: a readable slug and 6 hex of the variant's fingerprint."""
    slug = f"{runs.safe_name(variant.name)}-d{latent_dim}-c{copies}-e{setup.epochs}-s{seed}"
    return runs.named_folder(setup.folder, slug, asdict(variant), 6)


def train_and_check(
    setup: Setup, variant, seed: int, copies: int, latent_dim: int | None = None, verbose: int = 0
) -> dict:
    """Train (or load, if finished) `variant` (a Variant or a key of overlay.VARIANTS) on `copies`
    copies of each source and check its latent space. Returns the run: name, seed, copies,
    latent_dim, vae, history, report (`diagnostics.latent_report`), seconds (of training, as
    recorded when it was trained), steps."""
    variant = overlay.VARIANTS[variant] if isinstance(variant, str) else variant
    latent_dim = setup.latent_dim if latent_dim is None else int(latent_dim)
    folder = run_folder(setup, variant, seed, copies, latent_dim)
    vae, history = overlay.train_variant(
        setup.sources,
        copies,
        variant,
        folder,
        latent_dim=latent_dim,
        epochs=setup.epochs,
        seed=seed,
        retrain=setup.retrain,
        verbose=verbose,
    )
    seconds = float(sum(train.read_history(folder / train.HISTORY_FILE)["epoch_seconds"]))
    report = diagnostics.latent_report(vae.encoder, setup.sources, setup.n_samples, seed=seed)
    # mixed_batches: ceil(n / batch) per epoch
    steps = -(-setup.k * copies // variant.batch_size) * setup.epochs
    return {
        "name": variant.name,
        "variant": variant,
        "seed": seed,
        "copies": copies,
        "latent_dim": latent_dim,
        "vae": vae,
        "history": history,
        "report": report,
        "seconds": seconds,
        "steps": steps,
    }


def self_fidelity(setup: Setup, run: dict) -> float:
    """Mean over sources of the fidelity of each decoded cluster centre to its own mask (nan without
    masks)."""
    if not setup.have_masks:
        return float("nan")
    decoded = latent.decode_batched(run["vae"].decoder, run["report"]["z_mean"], dtype=np.float32)
    return float(
        np.mean(
            [
                overlay.fidelity(
                    decoded[i], setup.masks[i : i + 1], setup.background, setup.threshold
                )["score"]
                for i in range(setup.k)
            ]
        )
    )


# --------------------------------------------------------------- overlay methods and their fidelity


def encoded_background(setup: Setup, encoder) -> np.ndarray:
    """z_bg of the latent methods by default: the latent mean (d,) of the defect-free background."""
    return model.encode(encoder, setup.background[None, ..., None], dtype=np.float64)[0][0]


def method_overlay(
    setup: Setup, run: dict | None, key: str, weight: float = 1.0, background_from: str = "image"
):
    """combo -> the overlay of those sources by the method `key` of `overlay_methods.METHODS`, made
    from the run's cluster centres (latent and decoded methods; `run` is None for the pixel
    methods) or from the sources (pixel methods). z_bg of the latent methods is the encoding of the
    background image ("image") or the mean of the cluster centres ("centres"); `weight` is the
    weighted offset sum's w."""
    space = lookup(key).space
    if space == "pixel":
        return lambda combo: combine(key, setup.sources[list(combo)])
    z_mean, vae = run["report"]["z_mean"], run["vae"]
    if space == "decoded":

        def decoded(combo):
            return latent.decode_batched(vae.decoder, z_mean[list(combo)], dtype=np.float32)

        return lambda combo: combine(key, decoded(combo))
    if background_from == "image":
        z_bg = encoded_background(setup, vae.encoder)
    elif background_from == "centres":
        z_bg = z_mean.mean(axis=0)
    else:
        raise ValueError(f"background_from must be 'image' or 'centres', got {background_from!r}")

    def make(combo):
        z = combine(key, z_mean[list(combo)], z_bg, weight)
        return latent.decode_batched(vae.decoder, z, dtype=np.float32)[0]

    return make


def evaluate(setup: Setup, make_overlay) -> dict:
    """Fidelity of `make_overlay(combo)` for every combo of the setup: {"results": [overlay.fidelity
    dicts] (None each without masks), "mean_score": their mean score (nan without masks)}."""
    if not setup.have_masks:
        return {"results": [None] * len(setup.combos), "mean_score": float("nan")}
    results = [
        overlay.fidelity(
            make_overlay(combo), setup.masks[list(combo)], setup.background, setup.threshold
        )
        for combo in setup.combos
    ]
    return {"results": results, "mean_score": float(np.mean([r["score"] for r in results]))}


def weight_scores(setup: Setup, run: dict, weights) -> dict:
    """Mean fidelity of the weighted offset sum z_bg + w * sum(z_i - z_bg) (z_bg: encoded
    background) per weight."""
    return {
        w: evaluate(setup, method_overlay(setup, run, "weighted", w))["mean_score"] for w in weights
    }


def overlay_methods(setup: Setup, paper: dict, fixed: dict, best_weight: float) -> dict:
    """The methods compared in notebook 05: name -> {"run": the run whose model it uses (None for
    pixel methods), "make": combo -> overlay image}."""

    def entry(run, make):
        return {"run": run, "make": make}

    return {
        PIXEL_MEAN: entry(None, method_overlay(setup, None, "pixel mean")),
        PIXEL_COMPOSITING: entry(None, method_overlay(setup, None, "pixel darkest")),
        "paper: latent sum": entry(paper, method_overlay(setup, paper, "sum")),
        "paper: latent mean": entry(paper, method_overlay(setup, paper, "mean")),
        "fixed: latent sum": entry(fixed, method_overlay(setup, fixed, "sum")),
        "fixed: latent mean": entry(fixed, method_overlay(setup, fixed, "mean")),
        "fixed: offset, z_bg image": entry(fixed, method_overlay(setup, fixed, "offset")),
        "fixed: offset, z_bg centres": entry(
            fixed, method_overlay(setup, fixed, "offset", background_from="centres")
        ),
        f"fixed: weighted, w={best_weight:g}": entry(
            fixed, method_overlay(setup, fixed, "weighted", best_weight)
        ),
        DECODED_COMPOSITING: entry(fixed, method_overlay(setup, fixed, "composite")),
    }


def method_rows(setup: Setup, methods: dict) -> list[dict]:
    """One row per method (none without masks): the score of every overlay (keyed by `combo_name`),
    their mean, the recall of every source and the spurious fraction on the overlay of all sources,
    and whether it counts: "-" for pixel methods, "yes" if its model has not collapsed and it beats
    the pixel mean, else "no"."""
    if not setup.have_masks:
        return []
    scored = {name: evaluate(setup, entry["make"]) for name, entry in methods.items()}
    baseline = scored[PIXEL_MEAN]["mean_score"]
    rows = []
    for name, entry in methods.items():
        results, mean = scored[name]["results"], scored[name]["mean_score"]
        run = entry["run"]
        counts = (
            "-"
            if run is None
            else ("yes" if not run["report"]["collapsed"] and mean > baseline else "no")
        )
        rows.append(
            {
                "method": name,
                **{setup.combo_name(c): r["score"] for c, r in zip(setup.combos, results)},
                "mean": mean,
                **{f"rec {n}": float(v) for n, v in zip(setup.names, results[-1]["recall"])},
                "spurious": results[-1]["spurious"],
                "counts": counts,
            }
        )
    return rows


def latent_plane(setup: Setup, run: dict, tiles_per_axis: int = 9) -> dict:
    """Where the overlays land in a 2-D latent plane: the cluster centres, z_bg (the encoded
    background), the latent sums and offset sums of every overlay in setup.combos, and decoded tiles
    over a square-stepped grid covering them all (half a unit of margin; `tiles_per_axis` on the
    longer side: 9 keeps a 64 px tile about its own size in a figure 900 px wide): {centres, z_bg,
    sums, offsets, z1, z2, tiles (n1, n2, s, s) uint8}."""
    centres, vae = run["report"]["z_mean"], run["vae"]
    z_bg = encoded_background(setup, vae.encoder)
    sums = np.array([combine("sum", centres[list(c)]) for c in setup.combos])
    offsets = np.array([combine("offset", centres[list(c)], z_bg) for c in setup.combos])
    everything = np.concatenate([centres, z_bg[None], sums, offsets])
    low, high = everything.min(axis=0) - 0.5, everything.max(axis=0) + 0.5
    step = max(float(np.round((high - low).max() / (tiles_per_axis - 1), 2)), 0.01)
    low = np.floor(low / step) * step  # whole steps from a multiple of the step
    high = low + np.ceil((high - low) / step - 1e-9) * step
    z1, z2, points = latent.latent_grid(
        *[(round(float(a), 6), round(float(b), 6)) for a, b in zip(low, high)], step
    )
    tiles = latent.decode_batched(vae.decoder, points).reshape(
        len(z1), len(z2), *setup.sources.shape[1:3]
    )
    return {
        "centres": centres,
        "z_bg": z_bg,
        "sums": sums,
        "offsets": offsets,
        "z1": z1,
        "z2": z2,
        "tiles": tiles,
    }


# --------------------------------------------------------------------------- verdict, cost, summary


def verdict(setup: Setup, fixed: dict, rows: list[dict]) -> dict:
    """The key numbers: the paper's latent sum, the pixel mean, the best latent-arithmetic method
    (compositing excluded), decoded and pixel compositing (mean scores; nan without masks), the
    fixed model's self-fidelity."""
    score = {row["method"]: row["mean"] for row in rows}
    latent = [row for row in rows if row["counts"] != "-" and "compositing" not in row["method"]]
    best = max(latent, key=lambda row: row["mean"]) if latent else None
    nan = float("nan")
    return {
        "paper_sum": score.get("paper: latent sum", nan),
        "pixel_mean": score.get(PIXEL_MEAN, nan),
        "best_latent": best["method"] if best else None,
        "best_latent_score": best["mean"] if best else nan,
        "decoded_compositing": score.get(DECODED_COMPOSITING, nan),
        "pixel_compositing": score.get(PIXEL_COMPOSITING, nan),
        "fixed_recon_fidelity": self_fidelity(setup, fixed),
    }


def training_seconds(paper: dict, fixed: dict) -> dict:
    """Seconds of training per model, as recorded when it was trained (a loaded model keeps its
    time)."""
    return {"paper": paper["seconds"], "fixed": fixed["seconds"]}


def _latent_summary(run: dict) -> dict:
    report = run["report"]
    return {
        "training_seconds": round(run["seconds"], 1),
        "n_clusters": int(report["n_clusters"]),
        "verdict": report["verdict"],
        "min_separation": float(report["min_ratio"]),
        "kl_per_source": [float(v) for v in report["kl"]],
        "dead_units": int(report["dead"]),
    }


def summary(
    setup: Setup,
    *,
    image_size: int,
    copies: int,
    paper: dict,
    fixed: dict,
    methods: list[dict],
    seconds: dict,
    run_minutes: float,
) -> dict:
    """What notebook 05 records in results/summary.json (read by `vae_overlay.findings`: the default
    run); the studies' tables are read by notebook 05b and by `findings` themselves."""
    return {
        "image_size": image_size,
        "copies": copies,
        "epochs": setup.epochs,
        "latent_dim": setup.latent_dim,
        "paper_recipe": _latent_summary(paper),
        "fixed_variant": {"name": fixed["name"], **_latent_summary(fixed)},
        "defect_threshold": setup.threshold,
        "fidelity_mean_score": {row["method"]: round(row["mean"], 4) for row in methods},
        "training_minutes": round(sum(seconds.values()) / 60, 2),
        "run_minutes": round(run_minutes, 2),
    }
