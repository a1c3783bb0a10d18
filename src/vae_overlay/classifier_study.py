"""The classifier stage as a study: does extending a small training set with generated images help a classifier?

One run (`run`) is one repetition of notebook 06's experiment with its own stratified test split (seeded by the
run's seed, so the repetitions are repeated splits, not one fixed test set), `n_train` real training cells per
class, and the study's seven conditions (`classifier_experiment.STUDY_CONDITIONS`): original; classical
augmentation; + VAE samples; + VAE overlays by the paper's latent sum; classical + those overlays; + VAE overlays by
decoded compositing (the method notebook 05 found best); + copy-paste cracks (no VAE: the non-generative
baseline). A class VAE that collapses is trained again with another seed (3 attempts); if it still collapses, the
conditions that need it are dropped from that run (NaN, `dropped`), never trained on 80 identical images.

The primary metric, stated before the study ran, is the **balanced accuracy** on the run's test cells (the test set
is imbalanced, so plain accuracy depends on the threshold); ROC AUC is the threshold-free second. `summarize` pairs
every condition with the original set over the runs of one `n_train`: mean difference with its 95 % CI, the
minimum detectable effect (80 % power, two-sided 5 %) and a TOST equivalence test against +-2 points.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vae_overlay import runs
from vae_overlay import classifier_experiment as experiment

PRIMARY = "balanced_accuracy"
EQUIVALENCE_MARGIN = 0.02  # +-2 percentage points
SECONDS = {"vae_per_image": 0.5, "classifier": 25.0}  # measured on 2 shared cores: 100-epoch VAE of 80 cells ~40 s


def data_fingerprint(config: dict) -> str:
    """The ELPV labels the task is drawn from (the cells themselves come from the pinned elpv-dataset package)."""
    from vae_overlay.data import elpv_labels

    return runs.fingerprint([list(row) for row in elpv_labels()])


def seconds(config: dict) -> float:
    return (2 * config["n_train"] * SECONDS["vae_per_image"] * config["epochs"] / 100
            + len(experiment.STUDY_CONDITIONS) * SECONDS["classifier"] * config["classifier_steps"] / 500)


def run(config: dict, artifacts_dir: str) -> dict:
    """One repetition: its split, VAEs, generated sets and seven classifiers; the metrics per condition."""
    task = experiment.load_task(config["module_type"], config["image_size"], config["test_fraction"], config["seed"])
    settings = experiment.Settings(n_train_per_class=config["n_train"], n_val_per_class=config["n_val"],
                                   n_generated_per_class=config["n_train"], epochs=config["epochs"],
                                   classifier_steps=config["classifier_steps"])
    folder = Path(artifacts_dir) / "classifier" / f"{config['module_type']}-{config['image_size']}px-split{config['seed']}"
    result = experiment.run_seed(task, config["seed"], folder, settings, conditions=experiment.STUDY_CONDITIONS,
                                 drop_collapsed=True)
    row = {"n_test": len(task.test_names), "n_test_defective": int(task.labels(task.test_names).sum()),
           "closest_rms": round(result["closest_rms"], 5), "seconds_total": round(result["timing"]["seconds"], 1)}
    for run_ in result["vae_runs"]:
        row[f"vae_{run_['class']}_restarts"], row[f"vae_{run_['class']}_collapsed"] = run_["restarts"], run_["collapsed"]
    for result_row in result["rows"]:
        for metric in experiment.METRICS:
            row[f"{metric}|{result_row['condition']}"] = round(float(result_row[metric]), 5)
    return row


def summarize(rows: list[dict], metric: str = PRIMARY, margin: float = EQUIVALENCE_MARGIN) -> list[dict]:
    """Per n_train and condition: the paired difference from "(1) original" over the runs that have both (mean,
    95 % CI, p), the minimum detectable effect and the TOST equivalence p-value against +-`margin`."""
    from scipy import stats

    baseline = next(iter(experiment.STUDY_CONDITIONS))
    out = []
    for n_train in sorted({row["n_train"] for row in rows if not row.get("error")}):
        group = [row for row in rows if row["n_train"] == n_train and not row.get("error")]
        for condition in list(experiment.STUDY_CONDITIONS)[1:]:
            pairs = np.array([(r[f"{metric}|{baseline}"], r[f"{metric}|{condition}"]) for r in group
                              if np.isfinite(r.get(f"{metric}|{condition}", np.nan))])
            entry = {"n_train": n_train, "condition": condition, "runs": len(pairs), "dropped": len(group) - len(pairs)}
            if len(pairs) >= 2:
                diff = pairs[:, 1] - pairs[:, 0]
                sd, n = float(diff.std(ddof=1)), len(diff)
                test = stats.ttest_1samp(diff, 0.0)
                ci = test.confidence_interval(0.95)
                lower = stats.ttest_1samp(diff, -margin, alternative="greater").pvalue
                upper = stats.ttest_1samp(diff, margin, alternative="less").pvalue
                entry.update(mean=float(diff.mean()), ci_low=float(ci.low), ci_high=float(ci.high),
                             p=float(test.pvalue), improved=int((diff > 0).sum()),
                             mde=float((stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * sd / np.sqrt(n)),
                             tost_p=float(max(lower, upper)))
            out.append(entry)
    return out
