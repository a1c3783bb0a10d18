"""Notebook 06's experiment: one seed's run of the five training-set conditions, and the summary
over seeds.

`load_task` reads the ELPV cells once (64-px images, full-resolution pixel hashes, the fixed test
split). `run_seed` does one repetition: draw the training and validation cells, train or load one
VAE per class (again with another seed if it collapsed), generate the extra images, run the leakage
guard, train and test one classifier per condition. `summarise` turns the seeds' results into the
numbers notebook 06 records; `results_frame` and the two figures show them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from vae_overlay import classifier, diagnostics, overlay, paper, runs, train
from vae_overlay.stats import paired_comparison

CONDITIONS = {  # name: (classical augmentation?, generated sets added to the training set)
    "(1) original": (False, ()),
    "(2) classical augmentation": (True, ()),
    "(3) + VAE samples": (False, ("defective samples", "functional samples")),
    "(4) + VAE overlays": (False, ("defective overlays", "functional samples")),
    "(5) classical + overlays": (True, ("defective overlays", "functional samples")),
}
# The classifier study adds the overlays notebook 05 found best (decoded compositing) and a baseline
# without a VAE.
STUDY_CONDITIONS = {
    **CONDITIONS,
    "(6) + VAE composites": (False, ("defective composites", "functional samples")),
    "(7) + copy-paste cracks": (False, ("copy-paste cracks",)),
}
# Copy-paste cracks add defective cells only, so they shift the class balance as well as adding
# cracks. The balanced variant also adds the functional cell under each pasted crack (as many
# functional cells as cracked ones, the same backgrounds without the crack), so the two effects
# separate. No VAE: the `classifier-balance` kind runs these three alone.
BALANCE_CONDITIONS = {
    name: STUDY_CONDITIONS[name] for name in ("(1) original", "(7) + copy-paste cracks")
}
BALANCE_CONDITIONS["(8) + copy-paste, balanced"] = (
    False,
    ("copy-paste cracks", "copy-paste backgrounds"),
)
GENERATED_LABEL = {
    "defective samples": classifier.DEFECTIVE,
    "defective overlays": classifier.DEFECTIVE,
    "functional samples": classifier.FUNCTIONAL,
    "defective composites": classifier.DEFECTIVE,
    "copy-paste cracks": classifier.DEFECTIVE,
    "copy-paste backgrounds": classifier.FUNCTIONAL,
}
VAE_SETS = ("defective samples", "defective overlays", "functional samples", "defective composites")
CLASSES = {"defective": classifier.DEFECTIVE, "functional": classifier.FUNCTIONAL}
METRICS = {"accuracy": "accuracy", "balanced_accuracy": "balanced acc.", "roc_auc": "ROC AUC"}


@dataclass
class Settings:
    """The parameters of one repetition (notebook 06's parameters cell; defaults: the
    notebook's)."""

    n_train_per_class: int = 80
    n_val_per_class: int = 20
    n_generated_per_class: int = 80
    latent_dim: int = paper.LATENT_DIM
    epochs: int = paper.EPOCHS
    batch_size: int = paper.BATCH_SIZE
    learning_rate: float = paper.LEARNING_RATE
    vae_attempts: int = 3
    retrain: bool = False
    overlay_method: str = "sum"
    classifier_steps: int = 500
    classifier_batch_size: int = 32
    classifier_learning_rate: float = 1e-3
    check_every: int = 25


@dataclass
class Task:
    """Labelled cells read once: label, 64-px image (s, s, 1) and full-resolution pixel hash by
    name, the fixed test cells and the pool the training and validation cells are drawn from."""

    label_of: dict
    image_of: dict
    full_hash: dict
    test_names: list
    pool: list
    test_images: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.test_images = self.images(self.test_names)

    def images(self, names) -> np.ndarray:
        return np.stack([self.image_of[name] for name in names]).astype(np.float32)

    def labels(self, names) -> np.ndarray:
        return np.array([self.label_of[name] for name in names], np.float32)


def load_task(module_type: str, image_size: int, test_fraction: float, seed: int) -> Task:
    """The ELPV defective/functional task (`classifier.elpv_task`) and its fixed test split; every
    cell is read once (`classifier.read_cells`): hashed at full resolution, resized to
    `image_size`."""
    names, labels = classifier.elpv_task(module_type)
    test_names, pool = classifier.split_test(names, labels, test_fraction, seed)
    images, hashes = classifier.read_cells(names, image_size)
    return Task(
        dict(zip(names, labels.tolist())),
        dict(zip(names, images)),
        dict(zip(names, hashes)),
        test_names,
        pool,
    )


def train_class_vae(task: Task, names, folder: Path, seed: int, settings: Settings):
    """The VAE of one class, trained on `names` in `folder` (cached by train.train_vae). A collapsed
    VAE (`diagnostics.latent_collapsed`) is trained again with seed + 1000 in `<folder>-restart1`,
    and so on, up to `settings.vae_attempts` trainings. Returns (vae, restarts, collapsed):
    collapsed is True when every attempt collapsed (the last one is returned)."""
    images = task.images(names)
    for attempt in range(settings.vae_attempts):
        restart = f"{folder.name}-restart{attempt}"
        attempt_folder = folder if attempt == 0 else runs.named_folder(folder.parent, restart)
        classifier.write_cell_list(
            attempt_folder / "vae_training_cells.csv", names, task.label_of, "vae training"
        )
        vae, _ = train.train_vae(
            images,
            attempt_folder,
            latent_dim=settings.latent_dim,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            seed=seed + 1000 * attempt,
            retrain=settings.retrain,
            verbose=0,
        )
        collapsed = diagnostics.latent_collapsed(vae.encoder, images)
        if not collapsed:
            break
    return vae, attempt, collapsed


def generate(vaes: dict, images: dict, n: int, seed: int, method: str = "sum", needed=None) -> dict:
    """The extra images the conditions add, n of each (`needed`: the set names; default all): VAE
    samples of each class, overlays (`overlay.generate_overlays` with `method`) and decoded
    composites of pairs of defective cells, copy-paste cracks and the functional cells under them
    (`classifier.copy_paste_pairs`). `vaes` (only needed for the VAE sets) and `images` by class
    name."""
    needed = set(GENERATED_LABEL) if needed is None else set(needed)
    defect, functional = vaes.get("defective"), vaes.get("functional")
    makers = {  # in this order, each from its own seed
        "defective samples": lambda: classifier.sample_vae(
            defect.encoder, defect.decoder, images["defective"], n, seed
        ),
        "functional samples": lambda: classifier.sample_vae(
            functional.encoder, functional.decoder, images["functional"], n, seed
        ),
        "defective overlays": lambda: overlay.generate_overlays(
            defect.encoder, defect.decoder, images["defective"], n, seed=seed, method=method
        )[0],
        "defective composites": lambda: overlay.generate_overlays(
            defect.encoder, defect.decoder, images["defective"], n, seed=seed, method="composite"
        )[0],
    }
    sets = {name: make() for name, make in makers.items() if name in needed}
    if needed & {"copy-paste cracks", "copy-paste backgrounds"}:
        pasted = classifier.copy_paste_pairs(images["defective"], images["functional"], n, seed)
        names = ("copy-paste cracks", "copy-paste backgrounds")
        sets.update({name: pasted_set for name, pasted_set in zip(names, pasted) if name in needed})
    return sets


def check_leakage(task: Task, train_names, val_names, vae_names: dict, generated: dict) -> float:
    """Raise classifier.LeakageError if a test cell reaches the classifier's training or validation
    set, a VAE's training set or the generated images: by name, by 64-px pixel hash, as a near copy
    (RMS below 1/255), or by full-resolution pixel hash. Returns the smallest RMS difference between
    a test cell and a real cell used for training or validation."""
    training_sets = {
        "classifier training": (train_names, task.images(train_names)),
        "validation": (val_names, task.images(val_names)),
    }
    for class_name, names in vae_names.items():
        training_sets[f"VAE ({class_name})"] = (names, task.images(names))
    for kind, images in generated.items():
        training_sets[f"generated {kind}"] = ([f"{kind} {i}" for i in range(len(images))], images)
    classifier.assert_no_leakage(task.test_names, task.test_images, training_sets)
    used = (
        set(train_names) | set(val_names) | {name for names in vae_names.values() for name in names}
    )
    shared = {task.full_hash[n] for n in used} & {task.full_hash[n] for n in task.test_names}
    if shared:
        raise classifier.LeakageError(
            f"{len(shared)} full-resolution pixel hash(es) shared with the test set"
        )
    return float(classifier.rms_distances(task.test_images, task.images(sorted(used))).min())


def training_set(
    condition: str, train_images, train_labels, generated: dict, conditions: dict = CONDITIONS
):
    """(images, labels, augment?) of one condition: the real training cells plus its generated
    sets."""
    augment, extra = conditions[condition]
    images = np.concatenate([train_images] + [generated[kind] for kind in extra])
    labels = np.concatenate(
        [train_labels]
        + [np.full(len(generated[kind]), GENERATED_LABEL[kind], np.float32) for kind in extra]
    )
    return images, labels, augment


def generated_checks(
    net, seed: int, train_images, train_labels, test_images, test_labels, generated
) -> list:
    """How varied each set is (mean pairwise RMS) and which share of it the classifier `net`
    (condition 1) calls defective; for real cells, variety among the training cells and the share
    among the test cells."""
    sets = {
        "real defective": (train_images[train_labels == 1], test_images[test_labels == 1]),
        "real functional": (train_images[train_labels == 0], test_images[test_labels == 0]),
        **{kind: (images, images) for kind, images in generated.items()},
    }
    return [
        {
            "seed": seed,
            "set": kind,
            "diversity": classifier.mean_pairwise_rms(varied),
            "called_defective": float((classifier.predict_scores(net, scored) >= 0.5).mean()),
        }
        for kind, (varied, scored) in sets.items()
    ]


def run_seed(
    task: Task,
    seed: int,
    experiment_dir,
    settings: Settings | None = None,
    progress=None,
    conditions: dict = CONDITIONS,
    drop_collapsed: bool = False,
) -> dict:
    """One repetition in `experiment_dir/seed<seed>-train<n>-val<n>/` (cell lists and VAEs saved
    there).

    Returns {"rows": one dict per condition (seed, condition, n_train, best_step, validation_loss,
    seconds, accuracy, balanced_accuracy, roc_auc), "vae_runs": [{seed, class, restarts,
    collapsed}], "generated_checks": [...], "closest_rms": float, "timing": {seed, vae_seconds,
    seconds}, "examples": {train_images, train_labels, generated}}. `progress` (e.g. a tqdm bar)
    gets set_postfix_str(what runs) and update() after each condition. `conditions`: CONDITIONS
    (notebook 06) or STUDY_CONDITIONS. `drop_collapsed`: a condition that needs a VAE whose every
    attempt collapsed is not trained; its row holds NaN metrics and `dropped` True (notebook 06
    keeps such a VAE and says so).
    """
    started = time.perf_counter()
    say = progress.set_postfix_str if progress is not None else (lambda text: None)
    s = settings or Settings()
    seed_label = f"seed{seed}-train{s.n_train_per_class}-val{s.n_val_per_class}"
    seed_dir = runs.named_folder(experiment_dir, seed_label)
    train_names, val_names = classifier.draw_train_val(
        task.pool, task.label_of, s.n_train_per_class, s.n_val_per_class, seed
    )
    classifier.write_cell_list(seed_dir / "train_cells.csv", train_names, task.label_of, "train")
    classifier.write_cell_list(
        seed_dir / "validation_cells.csv", val_names, task.label_of, "validation"
    )
    train_images, train_labels = task.images(train_names), task.labels(train_names)
    val_images, val_labels = task.images(val_names), task.labels(val_names)
    test_labels = task.labels(task.test_names)

    vae_names = {
        name: [n for n in train_names if task.label_of[n] == label]
        for name, label in CLASSES.items()
    }
    needed = {name for _, sets in conditions.values() for name in sets}
    vaes, vae_runs = {}, []
    for class_name, names in vae_names.items() if needed & set(VAE_SETS) else ():
        say(f"seed {seed}: VAE {class_name}")
        vaes[class_name], restarts, collapsed = train_class_vae(
            task, names, seed_dir / f"vae-{class_name}", seed, s
        )
        vae_runs.append(
            {"seed": seed, "class": class_name, "restarts": restarts, "collapsed": collapsed}
        )
    vae_seconds = time.perf_counter() - started
    generated = generate(
        vaes,
        {name: task.images(names) for name, names in vae_names.items()},
        s.n_generated_per_class,
        seed,
        s.overlay_method,
        needed,
    )
    closest = check_leakage(task, train_names, val_names, vae_names, generated)
    collapsed = drop_collapsed and any(run["collapsed"] for run in vae_runs)

    rows, checks = [], []
    for condition, (_, sets) in conditions.items():
        say(f"seed {seed}: {condition}")
        if collapsed and set(sets) & set(VAE_SETS):
            rows.append(
                {
                    "seed": seed,
                    "condition": condition,
                    "dropped": True,
                    **{metric: float("nan") for metric in METRICS},
                }
            )
            continue
        images, labels, augment = training_set(
            condition, train_images, train_labels, generated, conditions
        )
        condition_started = time.perf_counter()
        net, record = classifier.train_classifier(
            images,
            labels,
            val_images,
            val_labels,
            steps=s.classifier_steps,
            batch_size=s.classifier_batch_size,
            learning_rate=s.classifier_learning_rate,
            check_every=s.check_every,
            augment=augment,
            seed=seed,
        )
        metrics = classifier.evaluate(test_labels, classifier.predict_scores(net, task.test_images))
        rows.append(
            {
                "seed": seed,
                "condition": condition,
                "dropped": False,
                "n_train": len(images),
                "best_step": record.best_step,
                "validation_loss": record.best_validation_loss,
                "seconds": time.perf_counter() - condition_started,
                **metrics,
            }
        )
        if condition == "(1) original":
            checks = generated_checks(
                net, seed, train_images, train_labels, task.test_images, test_labels, generated
            )
        if progress is not None:
            progress.update()
    return {
        "rows": rows,
        "vae_runs": vae_runs,
        "generated_checks": checks,
        "closest_rms": closest,
        "timing": {
            "seed": seed,
            "vae_seconds": vae_seconds,
            "seconds": time.perf_counter() - started,
        },
        "examples": {
            "train_images": train_images,
            "train_labels": train_labels,
            "generated": generated,
        },
    }


def describe_seed(result: dict) -> str:
    """One line per seed: VAE time and restarts, total time, test accuracy per condition."""
    timing = result["timing"]
    restarts = ", ".join(
        f"{run['class']} {run['restarts']}" + (" (collapsed)" if run["collapsed"] else "")
        for run in result["vae_runs"]
    )
    accuracies = "  ".join(f"{row['accuracy']:.3f}" for row in result["rows"])
    return (
        f"seed {timing['seed']}: VAEs {timing['vae_seconds']:5.1f} s (restarts: {restarts}), all "
        f"{timing['seconds']:5.1f} s; test accuracy per condition: {accuracies}"
    )


def summarise(results: list) -> dict:
    """The seeds' results -> {"conditions": {condition: {metric: {mean, std, per_seed}}},
    "paired_vs_original": {condition: {metric: stats.paired_comparison}}, "vae_restarts",
    "generated_image_checks", "timings"}. The seeds pair up in the order of `results`."""
    rows = [row for result in results for row in result["rows"]]
    values = {
        c: {m: np.array([row[m] for row in rows if row["condition"] == c]) for m in METRICS}
        for c in CONDITIONS
    }
    baseline = next(iter(CONDITIONS))
    return {
        "conditions": {
            c: {
                m: {
                    "mean": float(v.mean()),
                    "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                    "per_seed": v.tolist(),
                }
                for m, v in values[c].items()
            }
            for c in CONDITIONS
        },
        "paired_vs_original": {
            c: {m: paired_comparison(values[baseline][m], values[c][m]) for m in METRICS}
            for c in CONDITIONS
            if c != baseline
        },
        "vae_restarts": [run for result in results for run in result["vae_runs"]],
        "generated_image_checks": [
            check for result in results for check in result["generated_checks"]
        ],
        "timings": [result["timing"] for result in results],
    }


def results_frame(summary: dict, n_train: dict) -> pd.DataFrame:
    """One row per condition: its training-set size, mean ± sd of each metric over the seeds, and
    the paired differences of accuracy and ROC AUC from condition 1 with their 95 % intervals,
    p-values and seeds improved."""
    rows = []
    for condition, metrics in summary["conditions"].items():
        row = {
            "condition": condition,
            "train": n_train[condition],
            **{
                label: f"{metrics[m]['mean']:.3f} ± {metrics[m]['std']:.3f}"
                for m, label in METRICS.items()
            },
        }
        for metric, label in (("accuracy", "accuracy"), ("roc_auc", "ROC AUC")):
            c = summary["paired_vs_original"].get(condition, {}).get(metric)
            row[f"Δ {label} vs (1), pp [95 % CI]"] = (
                "—"
                if c is None
                else (
                    f"{100 * c['mean_difference']:+.1f} [{100 * c['ci_low']:+.1f},"
                    f" {100 * c['ci_high']:+.1f}]"
                )
            )
            row[f"p ({label})"] = None if c is None else round(c["p_value"], 3)
        c = summary["paired_vs_original"].get(condition, {}).get("accuracy")
        row["accuracy better in"] = "—" if c is None else f"{c['improved']} of {c['n']} seeds"
        rows.append(row)
    return pd.DataFrame(rows)


def plot_conditions(summary: dict):
    """Per metric: every seed's line across the conditions (paired), and mean ± sd."""
    conditions = summary["conditions"]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.4 * len(METRICS), 4.2))
    positions = np.arange(len(conditions))
    for ax, (metric, label) in zip(axes, METRICS.items()):
        # (conditions, seeds)
        per_seed = np.array([conditions[c][metric]["per_seed"] for c in conditions])
        for k in range(per_seed.shape[1]):
            ax.plot(
                positions,
                per_seed[:, k],
                "-o",
                color="0.75",
                lw=0.8,
                ms=3,
                zorder=1,
                label="one seed (paired)" if k == 0 else None,
            )
        ax.errorbar(
            positions,
            per_seed.mean(axis=1),
            yerr=per_seed.std(axis=1, ddof=1) if per_seed.shape[1] > 1 else None,
            fmt="s",
            color="tab:red",
            capsize=4,
            zorder=2,
            label="mean ± sd",
        )
        ax.axhline(per_seed[0].mean(), color="tab:red", lw=0.6, ls=":")
        ax.set_xticks(positions, [condition.split(" ", 1)[0] for condition in conditions])
        ax.set_title(f"test {label}")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("  ".join(conditions), fontsize=8)
    fig.tight_layout()
    return fig


def plot_training_examples(example_rows: dict, title: str, per_row: int = 8):
    """A grid of images: one row per entry of {row title: images (n, s, s, 1)}, `per_row` images
    each."""
    fig, axes = plt.subplots(
        len(example_rows), per_row, figsize=(per_row * 1.1, len(example_rows) * 1.2), squeeze=False
    )
    for axis_row, (row_title, images) in zip(axes, example_rows.items()):
        for ax, image in zip(axis_row, images[:per_row]):
            ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
        for ax in axis_row:
            ax.set_xticks([])
            ax.set_yticks([])
        axis_row[0].set_ylabel(row_title, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
