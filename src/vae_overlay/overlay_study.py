"""Section 4 as a study: the overlay recipe and its variants over seeds and source sets, on the
study runner.

One run (`run`) trains one overlay model at full length (the paper's 500 copies per source, 20
epochs, every minibatch holding every source) through `overlay_experiment.train_and_check`, then
records:

* the latent check: clusters found, verdict (collapsed / overlapping / separated), the smallest
  separation, dead units of the encoder's Dense layer, the KL of each source;
* for every overlay method (`METHODS`) and every overlay (each pair of sources, then all three),
  three scores:
  - `fidelity`: the project's score (`overlay.fidelity`: defect pixels shown inside the masks, by a
    darkening threshold, times one minus the spurious fraction);
  - `contrast`: threshold-free contrast retention: for each source in the overlay, the darkening of
    its mask against a ring of pixels around the mask, relative to the same darkening in the source
    itself, averaged over the sources (1: every defect as deep as in its source; 0: gone; clipped
    to [0, 1.5]);
  - `ssim`: the structural similarity (scikit-image) of the overlay with each of its sources
    outside the union of their masks, averaged: blur and a changed background lower it, which the
    fidelity score never sees.

Source sets (`SOURCE_SETS`): `paper-trio`, the committed synthetic trio (two cracks and a pore on
one surface, differing in about 130 of 4,096 pixels at 64 px: nearly a worst case for the paper's
premise of "significantly different images"), and `distinct`, three defects on three different
surfaces (`synth.make_sample`, written once into the study's artifacts folder with their masks).
Because the source set, not the seed, decides the claim, three families of drawn sets replicate them
(`ARMS`; each set written once into the artifacts folder):

* `same-surface/K`: two cracks and a pore on one surface,
  `synth.make_overlay_trio(seed=SAME_SURFACE_SEED + K)` (the paper trio's own rule with another
  seed);
* `distinct/K`: a crack, a pore and a crack, each on its own surface, `synth.make_sample` with seeds
  `DISTINCT_SEED + 3 K + j` for j = 0, 1, 2;
* `elpv/K`: three real crack patches (128 px crops around each cell's crack,
  `elpv.load_elpv_patches`) of three different ELPV cells, drawn without replacement by
  `numpy.random.default_rng(ELPV_SEED + K)` among the `ELPV_POOL` patches with the clearest crack
  (highest `elpv.crack_score`); their masks are the pixels of each patch's strongest thin-dark-line
  response (`elpv_mask`), since ELPV has no defect masks. These images are the ELPV dataset's (CC
  BY-NC-SA 4.0) and stay in the ignored artifacts folder.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from vae_overlay import overlay, overlay_methods, paper, runs, study, synth
from vae_overlay import overlay_experiment as experiment
from vae_overlay.data import as_uint8
from vae_overlay.stats import holm, paired_comparison, paired_differences, t_interval, wilson

# synth.make_sample kinds and seeds: three surfaces
DISTINCT = (("crack", 11), ("pore", 12), ("crack", 13))
# the drawn families' seed rules (module docstring)
SAME_SURFACE_SEED, DISTINCT_SEED, ELPV_SEED = (3000, 4000, 5000)
FAMILY_SIZE = 20  # drawn sets K = 0 .. 19 of each family are valid names
# elpv/K draws among the 40 of the 80 crack patches with the highest elpv.crack_score
ELPV_POOL = 40
# an ELPV patch's mask: ridge response >= 0.4 x its 99.5th percentile (elpv_mask)
ELPV_MASK_LEVEL = 0.4
ARMS = {
    "same-surface": ("paper-trio", "same-surface"),
    "distinct": ("distinct", "distinct"),
    "elpv": ("elpv",),
}
# what each arm's sets are, for a reader (the claims' titles)
ARM_TITLES = {
    "same-surface": "same-surface synthetic",
    "distinct": "distinct-surface synthetic",
    "elpv": "real ELPV crack-patch",
}
SOURCE_SETS = (
    "paper-trio",
    "distinct",
    *(
        f"{family}/{k}"
        for family in ("same-surface", "distinct", "elpv")
        for k in range(FAMILY_SIZE)
    ),
)
# the methods scored, as keys of overlay_methods.METHODS, and their names (the tables' columns)
STUDIED = ("pixel mean", "pixel darkest", "sum", "mean", "offset", "composite")
METHODS = tuple(overlay_methods.METHODS[key].name for key in STUDIED)
SCORES = ("fidelity", "contrast", "ssim")
SECONDS_PER_STEP = 0.11  # measured: 3,000 steps of batch 10 at 64 px in 169-348 s on 2 shared cores


def arm(name: str) -> str:
    """The arm of the design a source set belongs to: "same-surface", "distinct" or "elpv"
    (`ARMS`)."""
    family = name.split("/")[0]
    return next(arm_ for arm_, members in ARMS.items() if family in members)


def elpv_mask(patch: np.ndarray, level: float = ELPV_MASK_LEVEL, smallest: int = 20) -> np.ndarray:
    """A crack patch's defect mask: the pixels whose `elpv.ridge_map` response (thin dark lines
    across the busbars' direction) reaches `level` times the patch's 99.5th percentile, in connected
    pieces of at least `smallest` pixels, dilated by one pixel."""
    from scipy import ndimage

    from vae_overlay import elpv

    ridge = elpv.ridge_map(patch)
    strong = ridge >= level * np.quantile(ridge, 0.995)
    pieces, count = ndimage.label(strong, structure=np.ones((3, 3), bool))
    sizes = ndimage.sum(strong, pieces, index=np.arange(1, count + 1))
    kept = np.isin(pieces, 1 + np.flatnonzero(sizes >= smallest))
    return ndimage.binary_dilation(kept, structure=np.ones((3, 3), bool))


def draw_set(name: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(stem, image (128, 128) float32, mask bool) of each source of a drawn or the `distinct`
    set."""
    family, _, index = name.partition("/")
    if name == "distinct" or family == "distinct":
        draws = (
            DISTINCT
            if name == "distinct"
            else [
                (kind, DISTINCT_SEED + 3 * int(index) + j)
                for j, kind in enumerate(("crack", "pore", "crack"))
            ]
        )
        return [
            (f"{kind}_{seed}", *synth.make_sample(kind, size=128, seed=seed))
            for kind, seed in draws
        ]
    if family == "same-surface":
        trio = synth.make_overlay_trio(size=128, seed=SAME_SURFACE_SEED + int(index))
        return [(stem, image, mask) for stem, (image, mask) in trio.items()]
    if family == "elpv":
        from vae_overlay import elpv

        patches = elpv.load_elpv_patches(128)
        scores = [elpv.crack_score(patch[..., 0], border=8) for patch in patches.images]
        # the clearest cracks: a mask can find them
        pool = np.argsort(scores, kind="stable")[::-1][:ELPV_POOL]
        chosen = pool[
            np.random.default_rng(ELPV_SEED + int(index)).choice(ELPV_POOL, 3, replace=False)
        ]
        return [
            (
                runs.safe_name(patches.names[i]),
                patches.images[i, ..., 0],
                elpv_mask(patches.images[i, ..., 0]),
            )
            for i in chosen
        ]
    raise ValueError(
        f"unknown source set {name!r}; known: paper-trio, distinct, same-surface/K, distinct/K,"
        " elpv/K"
    )


def source_paths(name: str, folder) -> list[str]:
    """Image paths of a source set (masks beside them as `<stem>_mask.png`); all but `paper-trio`
    are drawn (`draw_set`) and written once into `folder`."""
    if name not in SOURCE_SETS:
        raise ValueError(
            f"unknown source set {name!r}; known: paper-trio, distinct, and K = 0 .. "
            f"{FAMILY_SIZE - 1} of same-surface/K, distinct/K, elpv/K"
        )
    if name == "paper-trio":
        return experiment.choose_sources(None, "synthetic")[0]
    from PIL import Image

    folder = Path(folder) / (
        "distinct-sources" if name == "distinct" else f"source-sets/{name.replace('/', '-')}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, image, mask in draw_set(name):
        path = folder / f"{stem}.png"
        if not path.is_file():  # the mask first: an image without its mask is never left behind
            with runs.atomic_path(folder / f"{stem}_mask.png", ".png") as tmp:
                Image.fromarray(mask.astype(np.uint8) * 255).save(tmp)
            with runs.atomic_path(path, ".png") as tmp:
                Image.fromarray(as_uint8(image)).save(tmp)
        paths.append(path)
    return [str(path) for path in paths]


def data_fingerprint(config: dict) -> str:
    """The fingerprint of a run's source images (what the run key covers besides its settings)."""
    return sources_fingerprint(config["sources"], config["image_size"])


@lru_cache(maxsize=16)
def sources_fingerprint(name: str, image_size: int) -> str:
    """Cached per process: a study keys every configuration, and `distinct` is drawn and written to
    read it."""
    sources, masks = load_set(name, image_size)
    return runs.fingerprint(np.concatenate([sources.ravel(), masks.ravel().astype(np.float32)]))


def load_set(name: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """A source set's images and masks at `image_size` (`distinct` drawn into a temporary
    folder)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        sources, masks, _ = overlay.load_sources(source_paths(name, folder), image_size)
    return sources, masks


def reconstruction_floor(name: str, image_size: int = 64) -> float:
    """The smallest final reconstruction term a decoder can reach on source set `name`: the mean
    over its sources of their summed pixel entropy (the binary cross-entropy of an image with
    itself; Keras clips at 1e-7 as here). A run's `final_reconstruction` minus this is what its
    decoder still misses: near 0, it reproduces the sources."""
    x = np.clip(load_set(name, image_size)[0].astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-(x * np.log(x) + (1 - x) * np.log1p(-x)).reshape(len(x), -1).sum(axis=1).mean())


def seconds(config: dict) -> float:
    """Expected training seconds: 3 sources x copies / batch 10 x epochs steps."""
    return (
        SECONDS_PER_STEP
        * -(-3 * config["copies"] // 10)
        * config["epochs"]
        * (config["image_size"] / 64) ** 2
    )


# -------------------------------------------------------------------- the two second-opinion scores


def ring(mask, width: int = 2, neighbours: int = 8) -> np.ndarray:
    """The pixels within `width` px of a mask but outside it: by chessboard distance (`neighbours`
    8) or by city-block distance (4; with width 1 the mask's contour, as the overlay explorer draws
    it)."""
    from scipy import ndimage

    if neighbours not in (4, 8):
        raise ValueError(f"neighbours must be 4 or 8, got {neighbours}")
    structure = ndimage.generate_binary_structure(2, 2 if neighbours == 8 else 1)
    mask = np.asarray(mask, bool)
    return ndimage.binary_dilation(mask, structure=structure, iterations=width) & ~mask


def contrast_retention(image, sources, masks) -> float:
    """Mean over sources of (ring - mask mean intensity in `image`) / (the same in the source),
    clipped to [0, 1.5]."""
    image = np.asarray(image, np.float64).reshape(masks.shape[1:])
    kept = []
    for source, mask in zip(np.asarray(sources, np.float64).reshape(masks.shape), masks):
        around = ring(mask)
        own = source[around].mean() - source[mask].mean()
        if own > 1e-6 and around.any():
            kept.append(np.clip((image[around].mean() - image[mask].mean()) / own, 0.0, 1.5))
    return float(np.mean(kept)) if kept else float("nan")


def background_ssim(image, sources, masks) -> float:
    """Mean over sources of the SSIM map of `image` against the source, averaged outside the union
    of the masks."""
    from skimage.metrics import structural_similarity

    image = np.asarray(image, np.float64).reshape(masks.shape[1:])
    outside = ~masks.any(axis=0)
    values = [
        structural_similarity(image, s, data_range=1.0, full=True)[1][outside].mean()
        for s in np.asarray(sources, np.float64).reshape(masks.shape)
    ]
    return float(np.mean(values))


def score_all(setup: experiment.Setup, make_overlay) -> dict:
    """{score: [value per overlay in setup.combos]} for one method."""
    result = {name: [] for name in SCORES}
    for combo in setup.combos:
        image, masks, sources = (
            make_overlay(combo),
            setup.masks[list(combo)],
            setup.sources[list(combo)],
        )
        result["fidelity"].append(
            overlay.fidelity(image, masks, setup.background, setup.threshold)["score"]
        )
        result["contrast"].append(contrast_retention(image, sources, masks))
        result["ssim"].append(background_ssim(image, sources, masks))
    return result


def methods(setup: experiment.Setup, trained: dict) -> dict:
    """METHODS -> combo -> overlay image, for one trained model (z_bg of the offset sum: the encoded
    background)."""
    return {
        overlay_methods.METHODS[key].name: experiment.method_overlay(setup, trained, key)
        for key in STUDIED
    }


# ----------------------------------------------------------------------------- one run


def run(config: dict, artifacts_dir: str) -> dict:
    """Train (or load) one Section 4 configuration and measure it: the study row's measurements."""
    folder = Path(artifacts_dir) / "section4"
    setup = experiment.prepare(
        source_paths(config["sources"], folder),
        config["image_size"],
        folder,
        "synthetic",
        epochs=config["epochs"],
        latent_dim=config["latent_dim"],
        n_samples=200,
    )
    trained = experiment.train_and_check(setup, config["variant"], config["seed"], config["copies"])
    report = trained["report"]
    row = {
        "n_clusters": int(report["n_clusters"]),
        "verdict": str(report["verdict"]),
        "min_separation": round(min(float(report["min_ratio"]), 99.0), 4),
        "dead_units": int(report["dead"]),
        "final_reconstruction": round(trained["history"]["reconstruction_loss"][-1], 4),
        "final_kl": round(trained["history"]["kl_loss"][-1], 4),
        "train_seconds": round(trained["seconds"], 2),
    }
    row.update({f"kl_{i + 1}": round(float(v), 4) for i, v in enumerate(report["kl"])})
    for method, make in methods(setup, trained).items():
        for score, values in score_all(setup, make).items():
            for combo, value in zip(setup.combos, values):
                row[f"{score}|{method}|{'+'.join(str(i + 1) for i in combo)}"] = round(
                    float(value), 5
                )
    return row


KIND = study.register(
    "section4",
    study.Kind(
        defaults={
            "sources": "paper-trio",
            "variant": "paper",
            "seed": 0,
            "image_size": 64,
            "latent_dim": paper.LATENT_DIM,
            "copies": paper.COPIES,
            "epochs": paper.OVERLAY_EPOCHS,
        },
        run=run,
        data=data_fingerprint,
        seconds=seconds,
        allowed={"sources": SOURCE_SETS, "variant": tuple(overlay.VARIANTS)},
        text_columns=("sources", "variant"),
    ),
)


# ---------------------------------------------------------------------------- the table, summarized


def summarize(
    rows: list[dict], by=("sources", "variant", "latent_dim"), baseline: str = "pixel mean"
) -> list[dict]:
    """One dict per configuration (`by`) over its finished runs (seeds):

    * `runs`; `separated`, `overlapping`, `collapsed` counts (the latent check's verdict), with the
      95 % Wilson interval of the separated share (`separated_low`, `separated_high`); median dead
      units; the final reconstruction term's mean over the runs with its 95 % t interval
      (`reconstruction_low`, `_high`; NaN for one run);
    * per score (`SCORES`) and method (`METHODS`): `<score>|<method>` the mean over seeds and
      overlays, and for every method but `baseline`, `<score>|<method>|diff` the mean paired
      difference from `baseline` over the seed x overlay pairs with its 95 % t interval (`|low`,
      `|high`; the overlays of one seed share a model, so the interval is narrower than one over
      seeds alone) and `<score>|<method>|seeds_better`, the seeds whose mean over the overlays beats
      the baseline's.
    """
    summary = []
    for values, group in study.grouped(rows, by):
        verdicts = [r["verdict"] for r in group]
        low, high = wilson(verdicts.count("separated"), len(group))
        recon = np.array([r["final_reconstruction"] for r in group], np.float64)
        entry = {
            **values,
            "runs": len(group),
            "separated_low": low,
            "separated_high": high,
            "dead_units_median": float(np.median([r["dead_units"] for r in group])),
            "reconstruction_mean": float(recon.mean()),
        }
        entry.update(zip(("reconstruction_low", "reconstruction_high"), t_interval(recon)))
        entry.update(
            {name: verdicts.count(name) for name in ("separated", "overlapping", "collapsed")}
        )
        for score in SCORES:
            columns = {
                m: sorted(c for c in group[0] if c.startswith(f"{score}|{m}|")) for m in METHODS
            }
            table = {
                m: np.array([[r[c] for c in cols] for r in group], np.float64)
                for m, cols in columns.items()
            }
            for method, values_ in table.items():
                entry[f"{score}|{method}"] = float(np.nanmean(values_))
                if method == baseline:
                    continue
                diff = paired_differences(table[baseline], values_)
                low, high = t_interval(diff)
                entry.update(
                    {
                        f"{score}|{method}|diff": float(diff.mean()) if len(diff) else float("nan"),
                        f"{score}|{method}|low": low,
                        f"{score}|{method}|high": high,
                        f"{score}|{method}|seeds_better": int(
                            (np.nanmean(values_ - table[baseline], axis=1) > 0).sum()
                        ),
                    }
                )
        summary.append(entry)
    return summary


# the methods the notebook tables show
SHOWN = ("latent sum", "offset", "decoded composite", "pixel darkest")


def table_rows(
    summary: list[dict], score: str = "fidelity", methods=SHOWN, keys=("sources", "variant")
) -> list[dict]:
    """Table rows (one dict per configuration, for a DataFrame) of `summarize`'s output: the
    configuration, runs, the latent check's separated / overlapping / collapsed counts, median dead
    units, the pixel mean's score, then per method its mean paired difference from the pixel mean
    with the 95 % interval."""
    rows = []
    for s in summary:
        row = {key: s[key] for key in keys}
        row.update(
            runs=s["runs"],
            latent=f"{s['separated']} / {s['overlapping']} / {s['collapsed']}",
            dead=s["dead_units_median"],
            baseline=s[f"{score}|pixel mean"],
        )
        for method in methods:
            row[method] = "{:+.2f} [{:+.2f}, {:+.2f}]".format(
                *(s[f"{score}|{method}|{end}"] for end in ("diff", "low", "high"))
            )
        rows.append(row)
    return rows


def record(summary: list[dict], keys=("sources", "variant", "latent_dim")) -> dict:
    """What notebook 05 records of a study summary: per configuration the counts and, per score and
    method, the mean, the paired difference from the pixel mean and its interval (rounded)."""
    out = {}
    for s in summary:
        entry = {name: s[name] for name in ("runs", "separated", "overlapping", "collapsed")}
        entry.update(
            {
                name: round(s[name], 4)
                for name in (
                    "separated_low",
                    "separated_high",
                    "dead_units_median",
                    "reconstruction_mean",
                    "reconstruction_low",
                    "reconstruction_high",
                )
            }
        )
        entry.update(
            {
                key: round(value, 4)
                for key, value in s.items()
                if key.count("|") in (1, 2) and not key.endswith("seeds_better")
            }
        )
        out["|".join(str(s[key]) for key in keys)] = entry
    return out


# ----------------------------------------------------------------------- the source set as the unit

# compared with the pixel mean
CLAIM_METHODS = tuple(
    overlay_methods.METHODS[key].name for key in STUDIED if overlay_methods.METHODS[key].needs_model
)


def set_means(
    rows: list[dict], score: str = "contrast", methods=("pixel mean", *CLAIM_METHODS)
) -> list[dict]:
    """One entry per (variant, source set) over its finished runs: `arm`, `seeds`, `separated_share`
    (the seeds whose latent check says separated), and per method `<method>` the mean of `score`
    over seeds and overlays. The overlays of one set are a fixed effect (averaged, never counted as
    replicates) and so are its seeds: the set is the unit."""
    entries = []
    for values, group in study.grouped(rows, ("variant", "sources")):
        entry = {
            **values,
            "arm": arm(values["sources"]),
            "seeds": len(group),
            "separated_share": float(np.mean([r["verdict"] == "separated" for r in group])),
        }
        for method in methods:
            columns = sorted(c for c in group[0] if c.startswith(f"{score}|{method}|"))
            entry[method] = float(np.nanmean([[r[c] for c in columns] for r in group]))
        entries.append(entry)
    return entries


def arm_verdicts(
    rows: list[dict], score: str = "contrast", baseline: str = "pixel mean", methods=CLAIM_METHODS
) -> list[dict]:
    """The Section 4 claims per (variant, arm) with the source set as the unit (`set_means`):

    * "one cluster per source": `sets`, `sets_separated` (sets where every seed separated) with its
      95 % Wilson interval, and the mean separated share over sets;
    * "the overlay keeps the defects": per method, the paired difference from `baseline` over sets
      (`stats.paired_comparison`: mean, 95 % t interval, p, sets improved) and the p-value
      Holm-adjusted over the `methods` compared (`<method>|p_holm`); `<method>|holds` = the sets
      where the method beats the baseline.
    """
    means = set_means(rows, score, (baseline, *methods))
    verdicts = []
    for values, group in study.grouped(means, ("variant", "arm")):
        shares = [g["separated_share"] for g in group]
        separated = sum(share == 1.0 for share in shares)
        low, high = wilson(separated, len(group))
        entry = {
            **values,
            "sets": len(group),
            "sets_separated": separated,
            "separated_low": low,
            "separated_high": high,
            "separated_share_mean": float(np.mean(shares)),
        }
        tests = {}
        for method in methods:
            pairs = [
                (g[baseline], g[method])
                for g in group
                if np.isfinite(g[baseline]) and np.isfinite(g[method])
            ]
            if len(pairs) >= 2:
                tests[method] = paired_comparison(*np.array(pairs).T)
        for method, adjusted in zip(tests, holm([t["p_value"] for t in tests.values()])):
            test = tests[method]
            entry.update(
                {
                    f"{method}|diff": test["mean_difference"],
                    f"{method}|low": test["ci_low"],
                    f"{method}|high": test["ci_high"],
                    f"{method}|p": test["p_value"],
                    f"{method}|p_holm": adjusted,
                    f"{method}|holds": test["improved"],
                }
            )
        verdicts.append(entry)
    return verdicts
