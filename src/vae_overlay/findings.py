"""The findings: each claim of the paper with its verdict over the study tables, and the default run
kept apart.

Every number here is computed from the record: the study tables in `results/studies/*.csv` (many
trainings: the verdicts) and `results/summary.json` (what the notebooks measured on the default run:
one draw). `vae_overlay.report` renders them into REPORT.md and into the README's generated section;
nothing is typed by hand, and a test renders them again and compares.

A verdict is one of `stats.VERDICTS` (worded by `stats.verdict` and `stats.word`); each finding
names its unit of analysis (what one independent value is), the multiplicity correction across the
conditions or configurations it spans, and the rule that turned the numbers into the word. Shares
carry 95 % Wilson intervals, differences 95 % t intervals over the units.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vae_overlay import classifier_experiment as experiment
from vae_overlay import (
    classifier_study,
    datasets,
    overlay_study,
    realism_study,
    section3_study,
    study,
)
from vae_overlay.stats import NOT_SUPPORTED, holm, mean_above, t_interval, verdict, wilson, word

MOSTLY = 0.5  # "mainly" / "most trainings": a share above one half


@dataclass
class Finding:
    """One claim of the paper and what the study tables say about it."""

    claim: str
    paper: str  # what the paper says, in brief
    verdict: str  # one of stats.VERDICTS, with ", interim" while its table is incomplete
    number: str  # the key number with its 95 % interval
    runs: str  # how many runs (and units) it rests on
    figure: str  # a file in results/figures/
    unit: str  # the unit of analysis
    correction: str  # the multiplicity correction, or why none is needed
    rule: str  # how the numbers become the word
    detail: pd.DataFrame = field(default_factory=pd.DataFrame)  # per configuration / condition
    notes: list[str] = field(default_factory=list)


def share(hits: int, n: int) -> str:
    low, high = wilson(hits, n)
    return f"{hits} of {n} [{low:.2f}, {high:.2f}]"


def interval(mean: float, low: float, high: float, scale: float = 1.0, digits: int = 2) -> str:
    return f"{scale * mean:+.{digits}f} [{scale * low:+.{digits}f}, {scale * high:+.{digits}f}]"


def share_word(hits: int, n: int) -> str:
    """holds: most units, by the Wilson interval's lower end; fails: the upper end below one half;
    else undecided."""
    return verdict(*wilson(hits, n), MOSTLY)


def progress(table: dict) -> tuple[str, bool]:
    """'N of M runs' of a `study.load_table` result, and whether the table is complete."""
    done, planned = len(table["done"]), table["planned"]
    complete = bool(planned) and done >= planned
    return f"{done} of {planned or '?'} runs" + ("" if complete else ", interim"), complete


def interim(word: str, complete: bool) -> str:
    return word if complete else f"{word}, interim"


# ----------------------------------------------------------------- Section 3 (the `section3` study)


def latent_spread(results: Path) -> Finding | None:
    table = study.load_table("section3", results)
    if not table["done"]:
        return None
    rows, (runs, complete) = table["done"], progress(table)
    flags = [section3_study.extents(r) for r in rows]
    hits = sum(f["extent_any"] for f in flags)
    detail = pd.DataFrame(
        [
            {
                "data": s["data"],
                "px": s["image_size"],
                "loss": s["loss"],
                "runs": s["runs"],
                "collapsed": s["collapsed"],
                "lenient box": s["box_reached"],
                "paper extent": s["extent_any"],
                "both axes": s["extent_both"],
                "1–99 % at extent": s["extent_any_1_99"],
                "median reach": round(s["reach_median"], 1),
            }
            for s in section3_study.summarize(rows)
        ]
    )
    lenient, (z1, z2) = sum(f["box_reached"] for f in flags), section3_study.PAPER_EXTENT
    return Finding(
        "Latent means spread to about ±15 × ±10 (§3, Fig. 2)",
        "one training; its means fill the box",
        interim(share_word(hits, len(rows)), complete),
        f"{share(hits, len(rows))} runs reach |z₁| ≥ {z1:g} or |z₂| ≥ {z2:g}",
        runs,
        "fig7_study_reach.png",
        "one training run (seeds × image size × loss version × data: what the paper leaves open)",
        "none: one share over all runs",
        "holds if the share's interval lies above ½, fails if below ½",
        detail,
        [
            (
                f"On both axes: {sum(f['extent_both'] for f in flags)} of {len(rows)}; by the"
                f" 1st–99th percentile of the means: {sum(f['extent_any_1_99'] for f in flags)}; by"
                f" the lenient rule the study began with (|z₁| ≥ {section3_study.BOX_REACHED[0]:g}"
                f" or |z₂| ≥ {section3_study.BOX_REACHED[1]:g}): {lenient}."
            ),
            field_of_view(results, rows),
        ],
    )


def field_of_view(results: Path, rows: list[dict]) -> str:
    """Image size against field of view: the `section3-fov` runs (128 px crops shrunk to 64 px)
    beside the 64 px and the 128 px crack patches of `section3` at the same loss."""
    wide = study.load_table("section3-fov", results)["done"]
    if not wide:
        return (
            "At 128 px a patch shows 4× the field of view of a 64 px patch, so image size and"
            " content are confounded here until the `section3-fov` study runs."
        )
    loss = wide[0]["loss"]
    groups = {
        "64 px crops at 64 px": [
            r for r in rows if r["data"] == "elpv-crack-patches" and r["image_size"] == 64
        ],
        "128 px crops at 64 px": wide,
        "128 px crops at 128 px": [
            r for r in rows if r["data"] == "elpv-crack-patches" and r["image_size"] == 128
        ],
    }
    parts = []
    for label, group in groups.items():
        group = [r for r in group if r["loss"] == loss]
        if group:
            flags = [section3_study.extents(r) for r in group]
            parts.append(
                f"{label}: collapsed {sum(r['collapsed'] for r in group)} of {len(group)}, lenient"
                f" box {sum(f['box_reached'] for f in flags)}, paper extent"
                f" {sum(f['extent_any'] for f in flags)}, median reach"
                f" {np.median([section3_study.reach(r) for r in group]):.1f}"
            )
    return (
        f"Field of view apart from image size (loss {loss}; `section3-fov`): "
        + "; ".join(parts)
        + "."
    )


def crack_like(results: Path) -> Finding | None:
    table = study.load_table("section3", results)
    rows = [r for r in table["done"] if r["data"].startswith("elpv")]
    if not rows:
        return None
    runs, complete = progress(table)
    entries = []
    for values, group in study.grouped(rows, ("data", "image_size", "loss")):
        shares = np.array([r["crack_fraction_occupied"] for r in group], np.float64)
        low, high = t_interval(shares)
        p = mean_above(shares, MOSTLY)
        entries.append(
            {
                "data": values["data"],
                "px": values["image_size"],
                "loss": values["loss"],
                "runs": len(group),
                "crack-like share": interval(shares.mean(), low, high),
                "p (> ½)": float(p),
                "mean": shares.mean(),
                "high": high,
            }
        )
    for entry, adjusted in zip(entries, holm([e["p (> ½)"] for e in entries])):
        entry["p Holm"] = round(adjusted, 4)
        entry["p (> ½)"] = round(entry["p (> ½)"], 4)
    held = [e for e in entries if e["p Holm"] < 0.05]
    best = max(entries, key=lambda e: e["mean"])
    collapsed = [r for r in table["done"] if r["data"] == "synthetic" and r["collapsed"]]
    passed = sum(r["crack_fraction_occupied"] >= 0.99 for r in collapsed)
    elpv_collapsed = [r["crack_fraction_occupied"] for r in rows if r["collapsed"]]
    failed = all(e["high"] < MOSTLY for e in entries)
    return Finding(
        "The latent space encodes mainly cracks (§3, Fig. 3)",
        "mainly abrupt transitions in the decoded grid",
        interim(word(bool(held), failed), complete),
        f"{best['crack-like share']} of the occupied region ({best['data']}, {best['px']} px,"
        f" {best['loss']})",
        f"{len(rows)} ELPV runs; above ½ in {len(held)} of {len(entries)} configurations",
        "fig3_latent_grid_occupied.png",
        "one training run; the share of a 21 × 21 grid over the occupied region whose decodes score"
        " like the training cracks",
        f"Holm over the {len(entries)} ELPV configurations (one-sided t-test of share > ½)",
        "holds if some configuration's share is above ½ after Holm; fails if every interval ends"
        " below ½",
        pd.DataFrame(entries).drop(columns=["mean", "high"]),
        [
            "ELPV runs only: on the synthetic set the crack score passes collapsed decodes"
            f" ({passed} of {len(collapsed)} collapsed synthetic runs score at least 0.99), so it"
            f" cannot fail there and is not used. On ELPV it fails them: the {len(elpv_collapsed)}"
            f" collapsed ELPV runs score at most {max(elpv_collapsed, default=float('nan')):.2f}."
        ],
    )


# ------------------------------------------------------------------ Section 4 (the overlay studies)


def section4_rows(results: Path) -> tuple[list[dict], dict, str]:
    """The rows the Section 4 verdicts rest on: the source-set study if it has rows, else the
    one-set-per-arm study."""
    for name in ("section4-sets", "section4"):
        table = study.load_table(name, results)
        if table["done"]:
            return table["done"], table, name
    return [], table, "section4"


def clusters(results: Path) -> list[Finding]:
    """One finding per arm: the word from the paper's recipe, the detail table beside it with every
    variant the study trained (the best variant's share shows whether the recipe is to blame)."""
    rows, table, name = section4_rows(results)
    runs, complete = progress(table)
    verdicts = overlay_study.arm_verdicts(rows)
    found = []
    for entry in (e for e in verdicts if e["variant"] == "paper"):
        sets, hits = entry["sets"], entry["sets_separated"]
        detail = pd.DataFrame(
            {
                "variant": other["variant"],
                "sets": other["sets"],
                "every seed separated": share(other["sets_separated"], other["sets"]),
                "mean separated share": round(other["separated_share_mean"], 2),
            }
            for other in verdicts
            if other["arm"] == entry["arm"]
        )
        found.append(
            Finding(
                "Each source gets its own latent cluster:"
                f" {overlay_study.ARM_TITLES[entry['arm']]} sets (§4, Figs. 4–5)",
                "one cluster per source, far apart",
                interim(share_word(hits, sets), complete),
                f"{share(hits, sets)} source sets separated (the paper's recipe)",
                f"{runs} of study `{name}`",
                "fig5_overlays_paper_recipe.png",
                "one source set (its seeds averaged)",
                "none: one share per arm (the other variants are shown, not tested)",
                "holds if the share of sets whose every seed separates lies above ½, "
                "fails if below ½",
                detail,
            )
        )
    return found


def latent_sum(results: Path) -> Finding | None:
    rows, table, name = section4_rows(results)
    if not rows:
        return None
    runs, complete = progress(table)
    detail = []
    for entry in overlay_study.arm_verdicts(rows):
        for method in overlay_study.CLAIM_METHODS:
            if f"{method}|diff" in entry:
                detail.append(
                    {
                        "variant": entry["variant"],
                        "arm": entry["arm"],
                        "sets": entry["sets"],
                        "method": method,
                        "minus pixel mean": interval(
                            *(entry[f"{method}|{end}"] for end in ("diff", "low", "high"))
                        ),
                        "p Holm": round(entry[f"{method}|p_holm"], 4),
                        "sets better": entry[f"{method}|holds"],
                        "diff": entry[f"{method}|diff"],
                        "high": entry[f"{method}|high"],
                    }
                )
    if not detail:
        return None
    sums = [d for d in detail if d["method"] == "latent sum"]
    better = [d for d in sums if d["p Holm"] < 0.05 and d["diff"] > 0]
    failed = all(d["high"] < 0 or d["p Holm"] < 0.05 for d in sums)
    best = max(sums, key=lambda d: d["diff"])
    return Finding(
        "Decoding the sum of latent vectors overlays the defects (§4, Fig. 5)",
        "decode(sum) holds every defect",
        interim(word(bool(better), failed), complete),
        f"{best['minus pixel mean']} contrast kept vs the pixel mean (best: {best['arm']}, "
        f"{best['variant']})",
        f"{runs} of study `{name}`",
        "fig5b_overlay_methods.png",
        "one source set (seeds and overlays averaged within it; overlays are a fixed effect)",
        "Holm over the methods compared within each variant and arm",
        "holds if the latent sum keeps more contrast than the pixel mean somewhere after Holm;"
        " fails if it keeps significantly less or its interval ends below 0 everywhere",
        pd.DataFrame(detail).drop(columns=["diff", "high"]),
    )


def dimension(results: Path) -> Finding | None:
    table = study.load_table("section4-dims", results)
    summary = sorted(overlay_study.summarize(table["done"]), key=lambda s: s["latent_dim"])
    if len(summary) < 2:
        return None
    runs, complete = progress(table)
    floor = overlay_study.reconstruction_floor("paper-trio")
    detail = pd.DataFrame(
        [
            {
                "dimension": s["latent_dim"],
                "runs": s["runs"],
                "separated": s["separated"],
                "reconstruction above perfect": interval(
                    *(s[f"reconstruction_{e}"] - floor for e in ("mean", "low", "high"))
                ),
                "latent sum − pixel mean (contrast)": interval(
                    *(s[f"contrast|latent sum|{e}"] for e in ("diff", "low", "high"))
                ),
            }
            for s in summary
        ]
    )
    first, last = summary[0], summary[-1]
    better = last["reconstruction_high"] < first["reconstruction_low"]
    worse = last["reconstruction_low"] > first["reconstruction_high"]
    return Finding(
        "A higher latent dimension gives more realistic images (§4)",
        "realism grows with the dimension",
        interim(word(better, worse, NOT_SUPPORTED), complete),
        f"{detail.iloc[-1]['reconstruction above perfect']} nats above a perfect reconstruction at"
        f" {last['latent_dim']}, {detail.iloc[0]['reconstruction above perfect']} at"
        f" {first['latent_dim']}",
        f"{runs} of study `section4-dims`",
        "fig5e_latent_dimension_study.png",
        "one training run (seed)",
        "none: two dimensions' intervals compared",
        "holds if the highest dimension's interval lies below the lowest's,"
        " fails if above, not supported if they overlap",
        detail,
        [
            "Three training images leave nothing for more dimensions to capture: this neither"
            " supports nor refutes the claim."
        ],
    )


def dimension_realism(results: Path, name: str = "latent-realism") -> Finding | None:
    """The latent-dimension claim where it can show: samples of VAEs trained on the 80 crack
    patches, judged against held-out patches (realism_study.py), each dimension paired seed by seed
    with the lowest."""
    table = study.load_table(name, results)
    summary = realism_study.summarize(table["done"])
    compared = [s for s in summary if "diff" in s]
    if not compared:
        return None
    runs, complete = progress(table)
    lowest = summary[0]
    more = [s for s in compared if s["p_holm"] < 0.05 and s["diff"] > 0]
    less = [s for s in compared if s["p_holm"] < 0.05 and s["diff"] < 0]
    failed = bool(less) or all(s["diff_high"] < 0 for s in compared)
    best = max(compared, key=lambda s: s["diff"])
    detail = pd.DataFrame(
        [
            {
                "dimension": s["latent_dim"],
                "runs": s["runs"],
                "collapsed": s["collapsed"],
                "realism (1 = real cracks, 0 = pixel mean)": interval(
                    s["realism"], s["realism_low"], s["realism_high"]
                ),
                f"− dimension {lowest['latent_dim']}": (
                    interval(s["diff"], s["diff_low"], s["diff_high"]) if "diff" in s else "—"
                ),
                "p Holm": round(s["p_holm"], 3) if "diff" in s else None,
                "sharpness vs real": f"{s['sharpness']:.2f}",
                "crack-like samples": f"{s['crack_like']:.2f}",
            }
            for s in summary
        ]
    )
    return Finding(
        "A higher latent dimension gives more realistic samples (§4, tested on 80 crack patches)",
        "realism grows with the dimension",
        interim(word(bool(more), failed, NOT_SUPPORTED), complete),
        f"{interval(best['diff'], best['diff_low'], best['diff_high'])} realism at"
        f" {best['latent_dim']} dimensions vs {lowest['latent_dim']}",
        f"{runs} of study `{name}`",
        "fig5f_latent_realism.png",
        "one training run (seed), paired with the lowest dimension's run of the same seed",
        f"Holm over the {len(compared)} dimensions compared with {lowest['latent_dim']}",
        "holds if some higher dimension's samples are more realistic after Holm; fails if some are"
        " less realistic after Holm and none more, or every difference's interval ends below 0; not"
        " supported otherwise",
        detail,
        [
            f"Realism: {realism_study.SAMPLES} samples per run against {realism_study.HELD_OUT}"
            " crack patches the model never saw (kernel distance, rescaled so that the training"
            " patches score 1 and copies of their pixel mean 0); sharpness is the samples'"
            " gradient over the real patches'."
        ],
    )


# --------------------------------------------------------------- the proposed classifier experiment

RULE_HISTORY = (
    "The rule changed twice while the table filled. Before 21 of 60 runs: 'holds' if any condition"
    " was better, 'fails' if every one was equivalent or worse. From 21 of 60 (commit 42667ff): the"
    " same, over the conditions with VAE images only. From 60 of 60 (commit c68916c): 'fails' when"
    " every VAE condition's interval ends below the margin, so an undecided equivalence no longer"
    " hides that no gain of the margin is possible."
)


def classifier_gain(results: Path, name: str = "classifier") -> Finding | None:
    table = classifier_study.read_study(name, results)
    rows = table["done"]
    if not rows:
        return None
    runs, complete = progress(table)
    margin = classifier_study.EQUIVALENCE_MARGIN
    primary = classifier_study.summarize(rows)
    auc = {(e["n_train"], e["condition"]): e for e in classifier_study.summarize(rows, "roc_auc")}
    uses_vae = {
        c
        for c, (_, sets) in experiment.STUDY_CONDITIONS.items()
        if set(sets) & set(experiment.VAE_SETS)
    }
    vae = [e for e in primary if e["condition"] in uses_vae and "mean" in e]
    adjusted = dict(zip([id(e) for e in vae], holm([e["p"] for e in vae])))
    detail = []
    for e in primary:
        other, measured = auc[(e["n_train"], e["condition"])], "mean" in e
        detail.append(
            {
                "cells": e["n_train"],
                "condition": e["condition"],
                "runs": f"{e['runs']} ({e['dropped']})",
                "balanced accuracy, pp": (
                    interval(e["mean"], e["ci_low"], e["ci_high"], 100, 1) if measured else "—"
                ),
                "90 % (TOST)": (
                    f"[{100 * e['tost_low']:+.1f}, {100 * e['tost_high']:+.1f}]"
                    if measured
                    else "—"
                ),
                "MDE pp": round(100 * e["mde"], 1) if measured else None,
                "better in": f"{e['improved']} of {e['runs']}" if measured else "—",
                "word": e["verdict"],
                "p Holm (VAE)": round(adjusted[id(e)], 3) if id(e) in adjusted else None,
                "ROC AUC, pp": (
                    interval(other["mean"], other["ci_low"], other["ci_high"], 100, 1)
                    if "mean" in other
                    else "—"
                ),
            }
        )
    if not vae:
        return None
    highest = max(vae, key=lambda e: e["ci_high"])
    held = any(adjusted[id(e)] < 0.05 and e["mean"] > 0 for e in vae)
    failed = all(e["ci_high"] < margin for e in vae)
    return Finding(
        "A training set extended with VAE images gives a better classifier (§4, proposed)",
        "several percent (cites +8 %)",
        interim(word(held, failed), complete),
        f"highest upper end {100 * highest['ci_high']:+.1f} pp balanced accuracy"
        f" ({highest['condition']}, {highest['n_train']} cells)",
        f"{runs} of study `{name}`",
        "fig6_study_forest.png",
        "one run (its own split and seed; every condition paired with the original set on it)",
        f"Holm over the {len(vae)} VAE conditions × sizes (p Holm); TOST against ±{100 * margin:g}"
        " pp as a 90 % interval",
        "holds if a VAE condition is better after Holm; fails if every VAE condition's 95 %"
        f" interval ends below +{100 * margin:g} pp. {RULE_HISTORY}",
        pd.DataFrame(detail),
        balance_notes(results),
    )


def points(entry: dict) -> str:
    """A `classifier_study.summarize` entry's mean difference and 95 % interval in percentage
    points."""
    return (
        interval(entry["mean"], entry["ci_low"], entry["ci_high"], 100, 1)
        if "mean" in entry
        else "—"
    )


def balance_notes(results: Path, name: str = "classifier-balance") -> list[str]:
    """What copy-paste cracks do without the class shift (study `classifier-balance`): per size, the
    balanced variant and the unbalanced one against the original set, and the balanced minus the
    unbalanced, on balanced accuracy with 95 % intervals over runs (Holm over the sizes for the
    last)."""
    table = study.load_table(name, results)
    if not table["done"]:
        return []
    cracks, balanced = list(experiment.BALANCE_CONDITIONS)[1:]
    against_original = {
        (e["n_train"], e["condition"]): e
        for e in classifier_study.summarize(
            table["done"], conditions=tuple(experiment.BALANCE_CONDITIONS)
        )
    }
    between = [
        e
        for e in classifier_study.summarize(table["done"], conditions=(cracks, balanced))
        if "mean" in e
    ]
    adjusted = holm([e["p"] for e in between])
    parts = []
    for e, p in zip(between, adjusted):
        alone, even = (
            against_original[(e["n_train"], condition)] for condition in (cracks, balanced)
        )
        parts.append(
            f"{e['n_train']} cells: cracks alone {points(alone)}, balanced {points(even)}, "
            f"balanced − alone {points(e)} (p Holm {p:.3f})"
        )
    runs, _ = progress(table)
    return [
        f"Copy-paste without the class shift (study `{name}`, {runs}; pp of balanced accuracy"
        f" against the original set): {'; '.join(parts)}."
    ]


def all_findings(results: str | Path = "results") -> list[Finding]:
    results = Path(results)
    found = [
        latent_spread(results),
        crack_like(results),
        *clusters(results),
        latent_sum(results),
        dimension(results),
        dimension_realism(results),
        classifier_gain(results),
    ]
    return [f for f in found if f is not None]


# ------------------------------------------------------------------------ the default run: one draw


def read_summary(results: str | Path = "results") -> dict:
    path = Path(results) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def default_run(summary: dict) -> pd.DataFrame:
    """What the notebooks measured on the default run, one row per measurement: one training, so one
    draw from the distributions the studies measure."""
    s01, s02, s03, s04 = (
        summary.get(k, {})
        for k in (
            "01_prepare_dataset",
            "02_train_vae",
            "03_latent_distribution",
            "04_sample_latent_space",
        )
    )
    paper = summary.get("05_overlay_defects", {}).get("paper_recipe", {})
    rows = []
    if s02:
        lo, hi = s02["latent_min"], s02["latent_max"]
        dataset = datasets.dataset_label(s01.get("dataset", "?"))
        size = s01.get("image_size")
        rows += [
            ("training set", f"{s01.get('images')} images of {dataset} at {size} px"),
            (
                f"training ({s02.get('epochs')} epochs)",
                (
                    f"{s02['train_seconds']:.0f} s; final loss {s02['final_loss']:.1f} = "
                    f"reconstruction {s02['final_reconstruction']:.1f} + KL {s02['final_kl']:.2f}"
                ),
            ),
            ("latent means", f"z₁ ∈ [{lo[0]:.1f}, {hi[0]:.1f}], z₂ ∈ [{lo[1]:.1f}, {hi[1]:.1f}]"),
            ("dead Dense(16) units", f"{s02['dead_dense_units']} of 16"),
        ]
    if s03:
        rows += [
            (
                "distribution of the means",
                (
                    f"mean ({s03['mean'][0]:.2f}, {s03['mean'][1]:.2f}), std ({s03['std'][0]:.2f},"
                    f" {s03['std'][1]:.2f}), Shapiro–Wilk p ({s03['shapiro_p'][0]:.3f},"
                    f" {s03['shapiro_p'][1]:.3f}); {100 * s03['hull_fraction_of_paper_box']:.1f} %"
                    " of the paper's box"
                ),
            )
        ]
    if s04:
        rows += [
            (
                "crack-like decodes",
                f"{100 * s04['crack_fraction_occupied']:.0f} % of the occupied region",
            ),
            (
                "continuity",
                f"largest / mean step along a latent path {s04['smoothness']:.2f} (1 = even)",
            ),
        ]
        if s04.get("sweep_images"):  # None when FULL_SWEEP = False
            rows += [
                (
                    "full sweep",
                    f"{s04['sweep_images']:,} images decoded in {s04['sweep_seconds']:.0f} s",
                )
            ]
    if paper:
        rows += [
            (
                "overlay, paper's recipe",
                (
                    f"{paper['verdict']}: {paper['n_clusters']} cluster(s), separation"
                    f" {paper['min_separation']:.2f} sd, {paper['dead_units']} of 16 dead units;"
                    f" trained in {paper['training_seconds']:.0f} s"
                ),
            )
        ]
    if timings := summary.get("reproduce", {}).get("notebook_seconds"):
        rows += [
            (
                "make reproduce",
                f"{sum(timings.values()) / 60:.1f} min of notebooks: "
                + " · ".join(
                    f"{name} {seconds // 60:.0f}:{seconds % 60:02.0f}"
                    for name, seconds in sorted(timings.items())
                ),
            )
        ]
    return pd.DataFrame(rows, columns=["measurement", "default run (one draw)"])


def studies(results: str | Path = "results") -> pd.DataFrame:
    """Every committed study table: its runs (finished of planned, failed) and summed run time (each
    run's own wall-clock seconds, so two workers sharing two cores count each run in full)."""
    entries = []
    for path in sorted((Path(results) / "studies").glob("*.csv")):
        table = study.load_table(path.stem, results)
        done, complete = progress(table)
        hours = sum(r.get("wall_seconds", 0.0) for r in table["done"]) / 3600
        entries.append(
            {
                "study": f"`{path.stem}`",
                "kind": table["kind"],
                "runs": done,
                "failed": len(table["failed"]),
                "summed run time": f"{hours:.1f} h",
            }
        )
    return pd.DataFrame(entries)
