"""The classifier stage as a study: does extending a small training set with generated images help a
classifier?

One run (`run`) is one repetition of notebook 06's experiment with its own stratified test split
(seeded by the run's seed, so the repetitions are repeated splits, not one fixed test set),
`n_train` real training cells per class, and the study's seven conditions
(`classifier_experiment.STUDY_CONDITIONS`): original; classical augmentation; + VAE samples; + VAE
overlays by the paper's latent sum; classical + those overlays; + VAE overlays by decoded
compositing (the method notebook 05 found best); + copy-paste cracks (no VAE: the non-generative
baseline). A class VAE that collapses is trained again with another seed (3 attempts); if it still
collapses, the conditions that need it are dropped from that run (NaN, `dropped`), never trained on
80 identical images.

The primary metric, stated before the study ran, is the **balanced accuracy** on the run's test
cells (the test set is imbalanced, so plain accuracy depends on the threshold); ROC AUC is the
threshold-free second. `summarize` pairs every condition with the original set over the runs of one
`n_train`: mean difference with its 95 % CI, the minimum detectable effect (80 % power, two-sided
5 %) and a TOST equivalence test against +-2 points, and names the verdict (`verdict`). Notebook 06
reads the table with `read_study` (missing, partial or complete), shows `findings.classifier_gain`'s
table of it and plots `condition_means`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vae_overlay import classifier, runs, stats, study
from vae_overlay import classifier_experiment as experiment

PRIMARY = "balanced_accuracy"
EQUIVALENCE_MARGIN = 0.02  # +-2 percentage points
# measured on 2 shared cores: 100-epoch VAE of 80 cells ~40 s
SECONDS = {"vae_per_image": 0.5, "classifier": 25.0}


def data_fingerprint(config: dict) -> str:
    """The ELPV labels the task is drawn from (the cells themselves come from the pinned
    elpv-dataset package)."""
    from vae_overlay.elpv import elpv_labels

    return runs.fingerprint([list(row) for row in elpv_labels()])


def seconds(config: dict, conditions: dict = experiment.STUDY_CONDITIONS) -> float:
    vae = any(set(sets) & set(experiment.VAE_SETS) for _, sets in conditions.values())
    return (
        vae * 2 * config["n_train"] * SECONDS["vae_per_image"] * config.get("epochs", 0) / 100
        + len(conditions) * SECONDS["classifier"] * config["classifier_steps"] / 500
    )


def balance_seconds(config: dict) -> float:
    return seconds(config, experiment.BALANCE_CONDITIONS)


def run(config: dict, artifacts_dir: str, conditions: dict = experiment.STUDY_CONDITIONS) -> dict:
    """One repetition: its split, VAEs, generated sets and a classifier per condition; the metrics
    per condition."""
    task = experiment.load_task(
        config["module_type"], config["image_size"], config["test_fraction"], config["seed"]
    )
    settings = experiment.Settings(
        n_train_per_class=config["n_train"],
        n_val_per_class=config["n_val"],
        n_generated_per_class=config["n_train"],
        epochs=config.get("epochs", 100),
        classifier_steps=config["classifier_steps"],
    )
    label = f"{config['module_type']}-{config['image_size']}px-split{config['seed']}"
    folder = runs.named_folder(Path(artifacts_dir) / "classifier", label)
    result = experiment.run_seed(
        task, config["seed"], folder, settings, conditions=conditions, drop_collapsed=True
    )
    row = {
        "n_test": len(task.test_names),
        "n_test_defective": int(task.labels(task.test_names).sum()),
        "closest_rms": round(result["closest_rms"], 5),
        "seconds_total": round(result["timing"]["seconds"], 1),
    }
    for run_ in result["vae_runs"]:
        row[f"vae_{run_['class']}_restarts"], row[f"vae_{run_['class']}_collapsed"] = (
            run_["restarts"],
            run_["collapsed"],
        )
    for result_row in result["rows"]:
        for metric in experiment.METRICS:
            row[f"{metric}|{result_row['condition']}"] = round(float(result_row[metric]), 5)
    return row


def run_balance(config: dict, artifacts_dir: str) -> dict:
    """One repetition of the `classifier-balance` kind: the original set, + copy-paste cracks and
    its balanced variant (`classifier_experiment.BALANCE_CONDITIONS`), no VAE."""
    return run(config, artifacts_dir, experiment.BALANCE_CONDITIONS)


DEFAULTS = {
    "seed": 0,
    "n_train": 80,
    "n_val": 20,
    "module_type": "mono",
    "image_size": 64,
    "test_fraction": 0.5,
    "epochs": 100,
    "classifier_steps": 500,
}
KIND = study.register(
    "classifier",
    study.Kind(
        defaults=DEFAULTS,
        run=run,
        data=data_fingerprint,
        seconds=seconds,
        allowed={"module_type": classifier.MODULE_TYPES},
        text_columns=("module_type",),
    ),
)
BALANCE_KIND = study.register(
    "classifier-balance",
    study.Kind(
        defaults={key: value for key, value in DEFAULTS.items() if key != "epochs"},  # no VAE
        run=run_balance,
        data=data_fingerprint,
        seconds=balance_seconds,
        allowed={"module_type": classifier.MODULE_TYPES},
        text_columns=("module_type",),
    ),
)


def summarize(
    rows: list[dict],
    metric: str = PRIMARY,
    margin: float = EQUIVALENCE_MARGIN,
    conditions=tuple(experiment.STUDY_CONDITIONS),
) -> list[dict]:
    """Per n_train and condition of `conditions`: the paired difference from the first of them ("(1)
    original" unless given) over the runs that have both (mean, 95 % CI, p), the minimum detectable
    effect, and the TOST equivalence p-value against +-`margin` with its 90 % interval (`tost_low`,
    `tost_high`)."""
    baseline, *others = conditions
    out = []
    for values, group in study.grouped(rows, ("n_train",)):
        n_train = values["n_train"]
        for condition in others:
            pairs = np.array(
                [
                    (r[f"{metric}|{baseline}"], r[f"{metric}|{condition}"])
                    for r in group
                    if np.isfinite(r.get(f"{metric}|{condition}", np.nan))
                ]
            )
            entry = {
                "n_train": n_train,
                "condition": condition,
                "runs": len(pairs),
                "dropped": len(group) - len(pairs),
                "margin": margin,
            }
            if len(pairs) >= 2:
                # mean, 95 % CI, p and runs improved; TOST against the margin
                paired = stats.paired_comparison(pairs[:, 0], pairs[:, 1])
                tost = stats.equivalence(stats.paired_differences(pairs[:, 0], pairs[:, 1]), margin)
                mde = stats.minimum_detectable_effect(paired["n"], paired["std_difference"])
                entry.update(
                    mean=paired["mean_difference"],
                    ci_low=paired["ci_low"],
                    ci_high=paired["ci_high"],
                    p=paired["p_value"],
                    improved=paired["improved"],
                    tost_p=tost["p"],
                    tost_low=tost["low"],
                    tost_high=tost["high"],
                    mde=mde,
                )
            entry["verdict"] = verdict(entry)
            out.append(entry)
    return out


def verdict(entry: dict, alpha: float = 0.05) -> str:
    """The word for one `summarize` entry (`stats.verdict` of its 95 % CI against 0): "better"
    (above 0), "worse" (below 0), "equivalent within +-m pp" (TOST p < `alpha` against the entry's
    margin m; a CI off zero that is also inside the margin says so), "undecided" otherwise, "too
    few runs" (fewer than two pairs)."""
    if "mean" not in entry:
        return stats.TOO_FEW
    within = f"within ±{100 * entry.get('margin', EQUIVALENCE_MARGIN):g} pp"
    return stats.verdict(
        entry["ci_low"],
        entry["ci_high"],
        words=(stats.BETTER, stats.WORSE),
        equivalent_within=within if entry["tost_p"] < alpha else None,
    )


def condition_means(
    rows: list[dict], metric: str = PRIMARY, conditions=tuple(experiment.STUDY_CONDITIONS)
) -> list[dict]:
    """Per n_train and condition (the original set too): the runs that trained it, the mean of
    `metric` over them and its 95 % t interval (NaN with fewer than two runs). Unpaired: for a
    figure, not for a verdict."""
    out = []
    for values, group in study.grouped(rows, ("n_train",)):
        n_train = values["n_train"]
        for condition in conditions:
            values = np.array(
                [row.get(f"{metric}|{condition}", np.nan) for row in group], np.float64
            )
            values = values[np.isfinite(values)]
            low, high = stats.t_interval(values)
            out.append(
                {
                    "n_train": n_train,
                    "condition": condition,
                    "runs": len(values),
                    "mean": float(values.mean()) if len(values) else float("nan"),
                    "ci_low": float(low),
                    "ci_high": float(high),
                }
            )
    return out


def read_study(name: str, results_dir) -> dict:
    """A classifier study's table `results_dir/studies/<name>.csv`, missing, partial or complete:
    `study.load_table`'s {"path", "done" (finished runs), "failed" (runs with an error), "planned"
    (runs in its grid)} and "hours" (expected training hours of the whole grid on one idle 2-core
    machine). A missing table has no runs; another kind of study is refused, naming the classifier
    studies."""
    table = study.load_table(name, results_dir)
    known = sorted(n for n, (k, _) in study.GRIDS.items() if k == "classifier")
    if (kind := table["kind"]) != "classifier":
        raise study.StudyError(
            f"{name!r} is not a classifier study ({'kind ' + repr(kind) if kind else 'unknown'}):"
            f" notebook 06 reads one of {known} (STUDY = ...)"
        )
    configs = study.configurations(table["grid"], "classifier")
    return {**table, "hours": study.estimated_seconds(configs, "classifier") / 3600}
